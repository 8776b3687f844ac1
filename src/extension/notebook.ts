// Building a Jupyter notebook (nbformat 4.5 JSON) from a conversation: one markdown cell naming the image and model,
// then per turn a `%%segment` code cell whose display_data output carries the result MIME type (rendered by this
// extension's notebook renderer), an `image/png` overlay and `text/plain` explanation (what plain Jupyter shows).
// Pure: no vscode import, unit-tested in Node.
import { RESULT_MIME, type SegmentResult } from '../protocol/result';

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

/** `%%segment` cell source: the magic line names the image, the cell body is the instruction. */
export function segmentCellSource(image: string, prompt: string): string {
  const quoted = /[\s"']/.test(image) ? JSON.stringify(image) : image;
  return `%%segment ${quoted}\n${prompt}`;
}

/** The display_data output of one result: the MIME bundle every surface shares. */
export function resultOutput(result: SegmentResult): Cell {
  const data: Record<string, unknown> = {
    [RESULT_MIME]: result,
    'text/plain': sourceLines(result.text || result.answer || ''),
  };
  if (result.overlayPng) data['image/png'] = result.overlayPng;
  return { output_type: 'display_data', data, metadata: {} };
}

export function buildNotebook(source: NotebookSource, turns: readonly NotebookTurn[]): Record<string, unknown> {
  const cells: Cell[] = [];
  const header = [`# ${source.title ?? 'Reason Segment conversation'}`, '', `Image: \`${source.image}\``];
  if (source.model) header.push('', `Model: \`${source.model}\``);
  cells.push({ cell_type: 'markdown', id: cellId(), metadata: {}, source: sourceLines(header.join('\n')) });
  let count = 0;
  for (const t of turns) {
    count++;
    const outputs: Cell[] = [];
    if (t.result) outputs.push(resultOutput(t.result));
    else outputs.push({ output_type: 'stream', name: 'stderr', text: sourceLines(t.error ?? 'No result.') });
    cells.push({
      cell_type: 'code', id: cellId(), execution_count: count, metadata: {},
      source: sourceLines(segmentCellSource(source.image, t.prompt)), outputs,
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
