// Building a Jupyter notebook (nbformat 4.5 JSON) from a conversation that runs as is in a fresh kernel: a markdown
// cell naming the image and model, a cell loading the magic and configuring the model, then the first answered turn
// as a `%%segment` cell and each later one as `%%segment_followup` (the magic re-feeds the earlier turns, as the chat
// did), with the turn's options (assistant prefix, answer length). Each cell's display_data output is what the
// magic displays: the result MIME type (rendered by this extension's notebook renderer; the photo once, no full-size
// overlay), a small `image/png` overlay and `text/plain` explanation (what plain Jupyter shows). Turns without a
// result become notes, so re-running gives the conversation the chat had. Pure: no vscode import, tested in Node.
import * as path from 'node:path';
import { RESULT_MIME, type SegmentResult } from '../protocol/result';
import { notebookPng } from './notebookPng';

export interface NotebookTurn {
  prompt: string;
  /** The host's result; a turn without one (failed, stopped) becomes a cell with a stream output saying why. */
  result?: SegmentResult;
  error?: string;
}

export interface NotebookSource {
  /** Path or name of the image, as the `%%segment` magic takes it. */
  image: string;
  model?: string;
  title?: string;
  /** Folder the notebook is written to: the image path is written relative to it when it is on the same drive. */
  notebookDir?: string;
  /** The options the conversation's turns ran with (the extension's settings), repeated on each cell. */
  assistantPrefix?: string;
  maxNewTokens?: number;
}

/** A path as the notebook should name it: relative to the notebook's folder where possible. */
export function notebookPath(p: string, notebookDir?: string): string {
  if (!notebookDir || !path.isAbsolute(p)) return p;
  const rel = path.relative(notebookDir, p);
  return rel && !path.isAbsolute(rel) ? rel.split(path.sep).join('/') : p;
}

function quoteArg(p: string): string {
  return /[\s"']/.test(p) ? JSON.stringify(p) : p;
}

/** A magic-line argument taken literally: quoted, with IPython's $var and {expr} expansion escaped. */
function literalArg(s: string): string {
  return quoteArg(s.replace(/\$/g, '$$$$').replace(/\{/g, '{{').replace(/\}/g, '}}'));
}

function optionArgs(source: NotebookSource): string {
  let args = '';
  if (source.maxNewTokens) args += ` -n ${source.maxNewTokens}`;
  if (source.assistantPrefix) args += ` --assistant-prefix ${literalArg(source.assistantPrefix)}`;
  return args;
}

type Cell = Record<string, unknown>;

let cellCounter = 0;
function cellId(): string {
  cellCounter = (cellCounter + 1) % 1e9;
  return `rs-${Date.now().toString(36)}-${cellCounter.toString(36)}`;
}

/** Splits text into the line array nbformat uses (each line keeps its newline except the last). */
export function sourceLines(text: string): string[] {
  if (!text) return [];
  const parts = text.split('\n');
  return parts.map((p, i) => (i < parts.length - 1 ? `${p}\n` : p)).filter((p) => p !== '');
}

/** `%%segment` cell source: the magic line names the image (and options), the cell body is the instruction. */
export function segmentCellSource(image: string, prompt: string, options = ''): string {
  return `%%segment ${quoteArg(image)}${options}\n${prompt}`;
}

/** The display_data output of one result: the MIME bundle every surface shares. */
export function resultOutput(result: SegmentResult): Cell {
  const { overlayPng, ...payload } = result;
  const data: Record<string, unknown> = {
    [RESULT_MIME]: payload,
    'text/plain': sourceLines(result.text || result.answer || ''),
  };
  if (overlayPng) data['image/png'] = notebookPng(overlayPng, result.masks.length === 0);
  return { output_type: 'display_data', data, metadata: {} };
}

export function buildNotebook(source: NotebookSource, turns: readonly NotebookTurn[]): Record<string, unknown> {
  const cells: Cell[] = [];
  const image = notebookPath(source.image, source.notebookDir);
  // A model inside the notebook's folder is named relative to it (they move together); one elsewhere keeps its path.
  const modelRel = source.model ? notebookPath(source.model, source.notebookDir) : undefined;
  const model = modelRel?.startsWith('../') ? source.model : modelRel;
  const header = [`# ${source.title ?? 'Reason Segment conversation'}`, '', `Image: \`${image}\``];
  if (model) header.push('', `Model: \`${model}\``);
  cells.push({ cell_type: 'markdown', id: cellId(), metadata: {}, source: sourceLines(header.join('\n')) });
  const setup = ['%load_ext reason_segment'];
  if (model) setup.push(`%segment_config --model ${quoteArg(model)}`);
  cells.push({
    cell_type: 'code',
    id: cellId(),
    execution_count: null,
    metadata: {},
    source: sourceLines(setup.join('\n')),
    outputs: [],
  });
  let count = 0;
  for (const t of turns) {
    if (!t.result) {
      const note = `*Not answered:* ${t.error ?? 'no result.'}\n\n> ${t.prompt.split('\n').join('\n> ')}`;
      cells.push({ cell_type: 'markdown', id: cellId(), metadata: {}, source: sourceLines(note) });
      continue;
    }
    const src =
      count === 0
        ? segmentCellSource(image, t.prompt, optionArgs(source))
        : `%%segment_followup${optionArgs(source)}\n${t.prompt}`;
    count++;
    cells.push({
      cell_type: 'code',
      id: cellId(),
      execution_count: count,
      metadata: {},
      source: sourceLines(src),
      outputs: [resultOutput(t.result)],
    });
  }
  return {
    cells,
    metadata: {
      kernelspec: { display_name: 'Python 3', language: 'python', name: 'python3' },
      language_info: { name: 'python' },
    },
    nbformat: 4,
    nbformat_minor: 5,
  };
}
