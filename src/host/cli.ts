#!/usr/bin/env node
// reason-segment: the inference host from a terminal. segment (one question), chat (a conversation about one image,
// the image encoded once), batch (a folder, COCO results, resumable). Errors are one line; --verbose adds the stack.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { parseArgs } from 'node:util';
import type { ChatTurn, SegmentResult } from '../protocol/result';
import { isHostError } from './errors';
import { LisaPipeline, type SegmentRequest } from './pipeline';
import type { Device } from './sessions';

const USAGE = `usage:
  reason-segment segment --model <bundle> --image <file> --prompt <text> [--history <file.json>] [--out <dir>]
                         [--json] [--device cpu|cuda|webgpu] [--allow-fallback] [--max-new-tokens N]
  reason-segment chat    --model <bundle> --image <file> [--out <dir>] [--device ...] [--max-new-tokens N]
  reason-segment batch   --model <bundle> --images <dir> --prompt <text> --out <file.json> [--device ...]
  common: --verbose (stack traces), --help`;

const OPTIONS = {
  model: { type: 'string' },
  image: { type: 'string' },
  images: { type: 'string' },
  prompt: { type: 'string' },
  history: { type: 'string' },
  out: { type: 'string' },
  json: { type: 'boolean', default: false },
  device: { type: 'string', default: 'cpu' },
  'allow-fallback': { type: 'boolean', default: false },
  'max-new-tokens': { type: 'string' },
  'assistant-prefix': { type: 'string' },
  verbose: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
} as const;

type Args = ReturnType<typeof parse>['values'];
const parse = (argv: string[]) => parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });

class UsageError extends Error {}

const IMAGE_EXTENSIONS = new Set(['.png', '.jpg', '.jpeg', '.webp', '.bmp', '.gif', '.tif', '.tiff']);

export async function main(argv: string[]): Promise<number> {
  let args: Args;
  let command: string | undefined;
  try {
    const parsed = parse(argv);
    args = parsed.values;
    command = parsed.positionals[0];
  } catch (e) {
    process.stderr.write(`reason-segment: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (args.help || !command) {
    process.stdout.write(`${USAGE}\n`);
    return args.help ? 0 : 2;
  }
  try {
    switch (command) {
      case 'segment': return await segmentCommand(args);
      case 'chat': return await chatCommand(args);
      case 'batch': return await batchCommand(args);
      default: throw new UsageError(`unknown command ${command}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`reason-segment: ${e.message}\n${USAGE}\n`);
      return 2;
    }
    const message = isHostError(e) ? e.message : `internal error: ${(e as Error).message}${args.verbose ? '' : ' (run with --verbose for details)'}`;
    process.stderr.write(`reason-segment: ${message}\n`);
    if (args.verbose) process.stderr.write(`${(e as Error).stack}\n`);
    return 1;
  }
}

function required(args: Args, name: keyof Args): string {
  const v = args[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

function maxNewTokens(args: Args): number | undefined {
  if (args['max-new-tokens'] === undefined) return undefined;
  const n = Number(args['max-new-tokens']);
  if (!Number.isInteger(n) || n < 1) throw new UsageError('--max-new-tokens takes a positive whole number');
  return n;
}

async function loadModel(args: Args, quiet: boolean): Promise<LisaPipeline> {
  const device = args.device as Device;
  if (!['cpu', 'cuda', 'webgpu'].includes(device)) throw new UsageError('--device is cpu, cuda or webgpu');
  const pipeline = await LisaPipeline.load(required(args, 'model'), {
    device,
    allowFallback: args['allow-fallback'],
    // Progress redraws one line, which only makes sense on a terminal.
    onProgress: quiet || !process.stderr.isTTY ? undefined : (msg, loaded, total) =>
      process.stderr.write(`\r\x1b[Kloading model: ${msg}${total ? ` (${Math.round((100 * (loaded ?? 0)) / total)}%)` : ''}`),
  });
  if (!quiet) process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}loaded ${pipeline.bundle.manifest.variant} on ${pipeline.provider}${pipeline.sessions.provider.fallbackReason ? ` (${pipeline.sessions.provider.fallbackReason})` : ''} in ${(pipeline.loadMs / 1000).toFixed(1)} s\n`);
  return pipeline;
}

async function readHistory(file: string | undefined): Promise<ChatTurn[]> {
  if (!file) return [];
  let raw: unknown;
  try {
    raw = JSON.parse(await fs.readFile(file, 'utf8'));
  } catch (e) {
    throw new UsageError(`--history ${file}: ${(e as Error).message}`);
  }
  const turns = Array.isArray(raw) ? raw : [];
  const ok = turns.every((t) => (Array.isArray(t) && t.length === 2 && t.every((x) => typeof x === 'string'))
    || (t && typeof t.user === 'string' && typeof t.assistant === 'string'));
  if (!Array.isArray(raw) || !ok) throw new UsageError(`--history ${file} must be a JSON array of {"user", "assistant"} objects or [user, assistant] pairs`);
  return turns.map((t) => (Array.isArray(t) ? { user: t[0], assistant: t[1] } : { user: t.user, assistant: t.assistant }));
}

/** Writes result.json, overlay.png and one PNG per mask; the JSON keeps RLE only (PNGs are files beside it). */
async function writeOutputs(dir: string, result: SegmentResult, stem = ''): Promise<string[]> {
  await fs.mkdir(dir, { recursive: true });
  const written: string[] = [];
  const write = async (name: string, data: string | Buffer) => {
    const file = path.join(dir, stem + name);
    await fs.writeFile(file, data);
    written.push(file);
  };
  if (result.overlayPng) await write('overlay.png', Buffer.from(result.overlayPng, 'base64'));
  for (const [i, m] of result.masks.entries()) if (m.png) await write(`mask-${i}.png`, Buffer.from(m.png, 'base64'));
  const slim = { ...result, overlayPng: undefined, masks: result.masks.map((m) => ({ ...m, png: undefined })) };
  await write('result.json', `${JSON.stringify(slim, null, 2)}\n`);
  return written;
}

async function segmentCommand(args: Args): Promise<number> {
  const image = required(args, 'image');
  const prompt = required(args, 'prompt');
  const history = await readHistory(args.history);
  const pipeline = await loadModel(args, args.json);
  try {
    const streaming = !args.json;
    const result = await pipeline.segment({
      image: { path: image },
      prompt,
      history,
      assistantPrefix: args['assistant-prefix'],
      maxNewTokens: maxNewTokens(args),
      includePng: true,
      includeOverlay: true,
      onText: streaming ? (delta) => process.stdout.write(delta) : undefined,
    });
    if (args.json) {
      process.stdout.write(`${JSON.stringify({ ...result, overlayPng: undefined, masks: result.masks.map((m) => ({ ...m, png: undefined })) })}\n`);
    } else {
      process.stdout.write('\n');
      process.stderr.write(`${result.masks.length} mask(s), ${result.timings.newTokens} tokens in ${(result.timings.totalMs / 1000).toFixed(2)} s\n`);
    }
    if (args.out) {
      const files = await writeOutputs(args.out, result);
      if (!args.json) process.stderr.write(`wrote ${files.join(', ')}\n`);
    }
    return 0;
  } finally {
    await pipeline.dispose();
  }
}

async function chatCommand(args: Args): Promise<number> {
  const image = required(args, 'image');
  const pipeline = await loadModel(args, false);
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: process.stdin.isTTY });
  const history: ChatTurn[] = [];
  let cancel = false;
  rl.on('SIGINT', () => {
    cancel = true;
  });
  process.stderr.write(`Chatting about ${image}. /reset starts over, /quit (or Ctrl-D) leaves.\n`);
  try {
    for await (const line of rl) {
      const text = line.trim();
      if (!text) continue;
      if (text === '/quit') break;
      if (text === '/reset') {
        history.length = 0;
        process.stderr.write('(new conversation, same image)\n');
        continue;
      }
      cancel = false;
      const req: SegmentRequest = {
        image: { path: image }, prompt: text, history: [...history], maxNewTokens: maxNewTokens(args),
        includePng: true, includeOverlay: Boolean(args.out), isCancelled: () => cancel,
        onText: (delta) => process.stdout.write(delta),
      };
      try {
        const result = await pipeline.segment(req);
        process.stdout.write('\n');
        history.push({ user: text, assistant: result.answer });
        const note = result.timings.cacheHit ? ', image encoders skipped' : '';
        process.stderr.write(`(${result.masks.length} mask(s)${note})\n`);
        if (args.out) await writeOutputs(args.out, result, `turn-${history.length}-`);
      } catch (e) {
        if (!isHostError(e)) throw e;
        process.stderr.write(`\n${e.message}\n`);
      }
    }
  } finally {
    rl.close();
    await pipeline.dispose();
  }
  return 0;
}

interface CocoOutput {
  info: { prompt: string; model: string; description: string };
  images: Array<{ id: number; file_name: string; width: number; height: number; text: string }>;
  annotations: Array<{ id: number; image_id: number; category_id: number; segmentation: unknown; area: number; bbox: number[]; score: number }>;
  categories: Array<{ id: number; name: string }>;
  failures: Array<{ file_name: string; error: string }>;
}

async function batchCommand(args: Args): Promise<number> {
  const dir = required(args, 'images');
  const prompt = required(args, 'prompt');
  const outFile = required(args, 'out');
  const files = (await fs.readdir(dir)).filter((f) => IMAGE_EXTENSIONS.has(path.extname(f).toLowerCase())).sort();
  if (files.length === 0) throw new UsageError(`${dir} holds no images (${[...IMAGE_EXTENSIONS].join(' ')})`);

  let coco: CocoOutput;
  try {
    coco = JSON.parse(await fs.readFile(outFile, 'utf8'));
    if (coco.info?.prompt !== prompt) throw new UsageError(`${outFile} holds results for another prompt; choose another --out or delete it`);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    coco = { info: { prompt, model: '', description: 'Reason Segment batch results' }, images: [], annotations: [], categories: [{ id: 1, name: 'lisa' }], failures: [] };
  }
  const done = new Set([...coco.images.map((i) => i.file_name), ...coco.failures.map((f) => f.file_name)]);
  const todo = files.filter((f) => !done.has(f));
  if (done.size) process.stderr.write(`resuming: ${done.size} of ${files.length} already in ${outFile}\n`);

  const pipeline = await loadModel(args, false);
  coco.info.model = pipeline.bundle.manifest.variant;
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.on('SIGINT', onSigint);
  try {
    for (const [i, file] of todo.entries()) {
      if (interrupted) break;
      progressBar(done.size + i, files.length, file);
      try {
        const result = await pipeline.segment({ image: { path: path.join(dir, file) }, prompt, maxNewTokens: maxNewTokens(args), includePng: false, isCancelled: () => interrupted });
        const imageId = coco.images.length + coco.failures.length + 1;
        coco.images.push({ id: imageId, file_name: file, width: result.image.width, height: result.image.height, text: result.text });
        for (const m of result.masks) {
          coco.annotations.push({ id: coco.annotations.length + 1, image_id: imageId, category_id: 1, segmentation: m.rle, area: m.area, bbox: m.bbox, score: m.score });
        }
      } catch (e) {
        if (isHostError(e, 'Cancelled')) break;
        if (!isHostError(e)) throw e;
        coco.failures.push({ file_name: file, error: e.message });
      }
      await writeJsonAtomic(outFile, coco);
    }
  } finally {
    process.off('SIGINT', onSigint);
    await pipeline.dispose();
  }
  await writeJsonAtomic(outFile, coco);
  const finished = coco.images.length + coco.failures.length;
  progressBar(finished, files.length, '');
  process.stderr.write(`\n${coco.images.length} image(s) segmented, ${coco.failures.length} failed, ${coco.annotations.length} mask(s) -> ${outFile}\n`);
  if (interrupted) process.stderr.write('interrupted: run the same command again to resume\n');
  return interrupted ? 130 : 0;
}

function progressBar(done: number, total: number, label: string): void {
  const width = 30;
  const filled = Math.round((width * done) / total);
  process.stderr.write(`\r\x1b[K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${label}`);
}

async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(value));
  await fs.rename(tmp, file);
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
