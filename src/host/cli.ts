#!/usr/bin/env node
// reason-segment: the inference host from a terminal. segment (one question), chat (a conversation about one image,
// the image encoded once), batch (a folder, COCO results, resumable). Errors are one line; --verbose adds the stack.
import { spawn } from 'node:child_process';
import { promises as fs, constants as fsConstants } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { parseArgs } from 'node:util';
import type { ChatTurn, SegmentResult } from '../protocol/result';
import type { DeviceChoice } from '../protocol/wire-types';
import { isHostError } from './errors';
import { evalMain } from './eval';
import { LisaPipeline, type SegmentRequest } from './pipeline';
import { RemoteModel } from './serve/client';
import { serve, serveOptions } from './serve/http';
import { fallbackLine } from './sessions';
import {
  BATCH_DESCRIPTION,
  type CocoOutput,
  claimShard,
  listImages,
  mergeShardFiles,
  parseShard,
  shardOf,
} from './shards';

const USAGE = `usage:
  reason-segment segment --model <bundle> --image <file> --prompt <text> [--history <file.json>] [--out <dir>]
                         [--json] [--device auto|cpu|cuda|webgpu] [--allow-fallback] [--max-new-tokens N]
  reason-segment chat    --model <bundle> --image <file> [--out <dir>] [--device ...] [--max-new-tokens N]
  reason-segment batch   --model <bundle> --images <dir|list.txt> --prompt <text> --out <file.json> [--device ...]
                         [--shard i/N]   (every N-th image from the i-th, i from 0; resumable like any batch)
                         [--server URL [--token-file F]]   (a reason-segment serve does the work, instead of --model)
  reason-segment merge   --out <file.json> <shard.json>...   (joins all N shards into one run's COCO file)
  reason-segment eval    --model <bundle> --data <folder> [--split val] [--out report.json]   (gIoU/cIoU as LISA's
                         validate(); resumable; eval --help for its options)
  reason-segment serve   --model <bundle> [--host 127.0.0.1] [--port 8000] [--token-file F] [--device ...]
                         [--request-timeout S] [--max-request-mb MB] [--max-queue N]   (Open Inference Protocol v2)
  --prompt-file <file> reads the prompt from a file instead (- for stdin), for long prompts
  common: --verbose (stack traces), --help`;

const OPTIONS = {
  model: { type: 'string' },
  image: { type: 'string' },
  images: { type: 'string' },
  prompt: { type: 'string' },
  'prompt-file': { type: 'string' },
  history: { type: 'string' },
  out: { type: 'string' },
  json: { type: 'boolean', default: false },
  device: { type: 'string', default: 'cpu' },
  'allow-fallback': { type: 'boolean', default: false },
  'max-new-tokens': { type: 'string' },
  'assistant-prefix': { type: 'string' },
  verbose: { type: 'boolean', default: false },
  help: { type: 'boolean', default: false },
  host: { type: 'string' },
  port: { type: 'string' },
  'token-file': { type: 'string' },
  'request-timeout': { type: 'string' },
  'max-request-mb': { type: 'string' },
  'max-queue': { type: 'string' },
  shard: { type: 'string' },
  server: { type: 'string' },
} as const;

type Args = ReturnType<typeof parse>['values'];
const parse = (argv: string[]) => parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });

class UsageError extends Error {}

export async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'eval') return evalMain(argv.slice(1)); // its own options (src/host/eval.ts)
  let args: Args;
  let command: string | undefined;
  let operands: string[] = [];
  try {
    const parsed = parse(argv);
    args = parsed.values;
    command = parsed.positionals[0];
    operands = parsed.positionals.slice(1);
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
      case 'segment':
        return await segmentCommand(args);
      case 'chat':
        return await chatCommand(args);
      case 'batch':
        return await batchCommand(args);
      case 'serve':
        return await serveCommand(args);
      case 'merge':
        return await mergeCommand(args, operands);
      default:
        throw new UsageError(`unknown command ${command}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`reason-segment: ${e.message}\n${USAGE}\n`);
      return 2;
    }
    const message = isHostError(e)
      ? e.message
      : `internal error: ${(e as Error).message}${args.verbose ? '' : ' (run with --verbose for details)'}`;
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

/** --prompt, or the text of --prompt-file (- reads stdin) without its final newline; never blank. */
async function promptOf(args: Args): Promise<string> {
  const file = args['prompt-file'];
  if (file !== undefined && args.prompt !== undefined) throw new UsageError('give --prompt or --prompt-file, not both');
  let prompt: string;
  if (file !== undefined) {
    try {
      prompt = (file === '-' ? await readStdin() : await fs.readFile(file, 'utf8')).replace(/\r?\n$/, '');
    } catch (e) {
      throw new UsageError(
        `--prompt-file ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      );
    }
  } else {
    prompt = required(args, 'prompt');
  }
  if (prompt.trim() === '')
    throw new UsageError(
      `the prompt${file !== undefined ? ` in ${file}` : ''} is blank; write a question or an instruction`,
    );
  return prompt;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function maxNewTokens(args: Args): number | undefined {
  if (args['max-new-tokens'] === undefined) return undefined;
  const n = Number(args['max-new-tokens']);
  if (!Number.isInteger(n) || n < 1) throw new UsageError('--max-new-tokens takes a positive whole number');
  return n;
}

async function loadModel(args: Args, quiet: boolean): Promise<LisaPipeline> {
  const device = args.device as DeviceChoice;
  if (!['auto', 'cpu', 'cuda', 'webgpu'].includes(device))
    throw new UsageError('--device is auto, cpu, cuda or webgpu');
  const pipeline = await LisaPipeline.load(required(args, 'model'), {
    device,
    allowFallback: args['allow-fallback'],
    // Progress redraws one line, which only makes sense on a terminal.
    onProgress:
      quiet || !process.stderr.isTTY
        ? undefined
        : (msg, loaded, total) =>
            process.stderr.write(
              `\r\x1b[Kloading model: ${msg}${total ? ` (${Math.round((100 * (loaded ?? 0)) / total)}%)` : ''}`,
            ),
  });
  const fallback = pipeline.sessions.provider.fallback;
  if (!quiet)
    process.stderr.write(
      `${process.stderr.isTTY ? '\r\x1b[K' : ''}loaded ${pipeline.bundle.manifest.variant} on ${pipeline.provider}${fallback ? ` (${fallbackLine(fallback)})` : ''} in ${(pipeline.loadMs / 1000).toFixed(1)} s\n`,
    );
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
  const ok = turns.every(
    (t) =>
      (Array.isArray(t) && t.length === 2 && t.every((x) => typeof x === 'string')) ||
      (t && typeof t.user === 'string' && typeof t.assistant === 'string'),
  );
  if (!Array.isArray(raw) || !ok)
    throw new UsageError(
      `--history ${file} must be a JSON array of {"user", "assistant"} objects or [user, assistant] pairs`,
    );
  return turns.map((t) =>
    Array.isArray(t) ? { user: t[0], assistant: t[1] } : { user: t.user, assistant: t.assistant },
  );
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
  const prompt = await promptOf(args);
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
      process.stdout.write(
        `${JSON.stringify({ ...result, overlayPng: undefined, masks: result.masks.map((m) => ({ ...m, png: undefined })) })}\n`,
      );
    } else {
      process.stdout.write('\n');
      process.stderr.write(
        `${result.masks.length} mask(s), ${result.timings.newTokens} tokens in ${(result.timings.totalMs / 1000).toFixed(2)} s\n`,
      );
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
  let turn = new AbortController();
  rl.on('SIGINT', () => turn.abort());
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
      turn = new AbortController();
      const req: SegmentRequest = {
        image: { path: image },
        prompt: text,
        history: [...history],
        maxNewTokens: maxNewTokens(args),
        includePng: true,
        includeOverlay: Boolean(args.out),
        signal: turn.signal,
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

async function batchCommand(args: Args): Promise<number> {
  const dir = required(args, 'images');
  const prompt = await promptOf(args);
  const outFile = required(args, 'out');
  const shard = args.shard === undefined ? undefined : parseShard(args.shard);
  const { root, files: all } = await listImages(dir);
  const files = shardOf(all, shard);
  const coco = await openBatchOut(outFile, prompt);
  claimShard(coco, shard, files.length, outFile);
  const done = new Set([...coco.images.map((i) => i.file_name), ...coco.failures.map((f) => f.file_name)]);
  const todo = files.filter((f) => !done.has(f));
  if (done.size) process.stderr.write(`resuming: ${done.size} of ${files.length} already in ${outFile}\n`);

  const pipeline = args.server
    ? await RemoteModel.connect(args.server, args['token-file'])
    : await loadModel(args, false);
  if (pipeline instanceof LisaPipeline) coco.info.model = pipeline.bundle.manifest.variant;
  const interrupt = new AbortController();
  const onSigint = () => interrupt.abort();
  process.on('SIGINT', onSigint);
  try {
    for (const [i, file] of todo.entries()) {
      if (interrupt.signal.aborted) break;
      progressBar(done.size + i, files.length, file);
      try {
        const result = await pipeline.segment({
          image: { path: path.resolve(root, file) },
          prompt,
          assistantPrefix: args['assistant-prefix'],
          maxNewTokens: maxNewTokens(args),
          includePng: false,
          signal: interrupt.signal,
        });
        coco.info.model ||= result.model.variant;
        const imageId = coco.images.length + coco.failures.length + 1;
        coco.images.push({
          id: imageId,
          file_name: file,
          width: result.image.width,
          height: result.image.height,
          text: result.text,
        });
        for (const m of result.masks) {
          coco.annotations.push({
            id: coco.annotations.length + 1,
            image_id: imageId,
            category_id: 1,
            segmentation: m.rle,
            area: m.area,
            bbox: m.bbox,
            score: m.score,
          });
        }
      } catch (e) {
        if (isHostError(e, 'Cancelled')) break;
        if (!isHostError(e) || e.kind === 'ProviderUnavailable') throw e; // a lost server fails the batch, not the image
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
  process.stderr.write(
    `\n${coco.images.length} image(s) segmented, ${coco.failures.length} failed, ${coco.annotations.length} mask(s) -> ${outFile}\n`,
  );
  if (interrupt.signal.aborted) process.stderr.write('interrupted: run the same command again to resume\n');
  return interrupt.signal.aborted ? 130 : 0;
}

async function serveCommand(args: Args): Promise<number> {
  const opts = await serveOptions({
    host: args.host,
    port: args.port,
    tokenFile: args['token-file'],
    maxRequestMb: args['max-request-mb'],
    requestTimeout: args['request-timeout'],
    maxQueue: args['max-queue'],
  });
  return serve(await loadModel(args, false), opts);
}

async function mergeCommand(args: Args, shards: string[]): Promise<number> {
  const outFile = required(args, 'out');
  if (shards.length === 0)
    throw new UsageError('merge joins shard outputs: reason-segment merge --out all.json shard-*.json');
  const merged = await mergeShardFiles(shards, outFile);
  await writeJsonAtomic(outFile, merged);
  process.stderr.write(
    `merged ${shards.length} shard(s): ${merged.images.length} image(s), ${merged.failures.length} failed, ${merged.annotations.length} mask(s) -> ${outFile}\n`,
  );
  return 0;
}

/**
 * The results file of a batch, checked before any work: an existing file must be our own results for this prompt (to
 * resume), never anything else (it is left untouched), and the folder must take the temporary file that every write
 * goes through (results are written to it and renamed over --out, so a failed write loses nothing).
 */
async function openBatchOut(outFile: string, prompt: string): Promise<CocoOutput> {
  let coco: CocoOutput | undefined;
  let text: string | undefined;
  try {
    text = await fs.readFile(outFile, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new UsageError(`--out ${outFile} cannot be read (${code}); choose another file`);
  }
  if (text !== undefined) {
    try {
      coco = JSON.parse(text);
    } catch {
      coco = undefined;
    }
    const ours =
      coco?.info?.description === BATCH_DESCRIPTION &&
      Array.isArray(coco.images) &&
      Array.isArray(coco.failures) &&
      Array.isArray(coco.annotations);
    if (!ours)
      throw new UsageError(
        `--out ${outFile} exists and is not a Reason Segment batch result; it was left untouched: choose another file`,
      );
    if (coco!.info.prompt !== prompt)
      throw new UsageError(`${outFile} holds results for another prompt; choose another --out or delete it`);
  }
  const probe = `${outFile}.${process.pid}.tmp`;
  try {
    await fs.writeFile(probe, '', { flag: 'wx' });
    await fs.unlink(probe);
  } catch (e) {
    throw new UsageError(
      `cannot write --out ${outFile} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message} in ${path.dirname(path.resolve(outFile))}); choose a writable place`,
    );
  }
  if (text !== undefined) {
    try {
      await fs.access(outFile, fsConstants.W_OK);
    } catch {
      throw new UsageError(`--out ${outFile} is read-only; make it writable or choose another file`);
    }
  }
  return (
    coco ?? {
      info: { prompt, model: '', description: BATCH_DESCRIPTION },
      images: [],
      annotations: [],
      categories: [{ id: 1, name: 'lisa' }],
      failures: [],
    }
  );
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

// onnxruntime-node 1.30 reads /proc/self/cmdline while it creates a session and overflows the main thread's stack on a
// command line over about 29 KB (exit 139, SIGSEGV), whatever process.argv holds by then. A long command line (a long
// --prompt) is therefore handed to a fresh process through the environment, which ONNX Runtime does not parse.
const ARGV_ENV = 'REASON_SEGMENT_ARGV';
const MAX_CMDLINE_BYTES = 16 * 1024;
/** Linux's limit on one environment string (MAX_ARG_STRLEN), less room for the name. */
const MAX_ENV_STRING = 128 * 1024 - 64;

function commandLineBytes(): number {
  return [process.execPath, ...process.execArgv, ...process.argv.slice(1)].reduce(
    (n, a) => n + Buffer.byteLength(a) + 1,
    0,
  );
}

function relaunch(argv: string[]): Promise<number> {
  const packed = JSON.stringify(argv);
  if (Buffer.byteLength(packed) > MAX_ENV_STRING) {
    process.stderr.write(
      `reason-segment: the command line is ${Math.round(Buffer.byteLength(packed) / 1024)} KB; pass a long prompt with --prompt-file <file> (or --prompt-file - for stdin)\n`,
    );
    return Promise.resolve(2);
  }
  const ignore = () => undefined; // Ctrl-C reaches the child too; this process waits for it
  process.on('SIGINT', ignore);
  const child = spawn(process.execPath, [...process.execArgv, __filename], {
    stdio: 'inherit',
    env: { ...process.env, [ARGV_ENV]: packed },
  });
  return new Promise((resolve) => {
    child.on('error', (e) => {
      process.stderr.write(
        `reason-segment: cannot start a second process for the long command line (${e.message}); use --prompt-file\n`,
      );
      resolve(1);
    });
    child.on('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0));
    });
  });
}

if (require.main === module) {
  const packed = process.env[ARGV_ENV];
  delete process.env[ARGV_ENV];
  const run =
    packed !== undefined
      ? main(JSON.parse(packed))
      : commandLineBytes() > MAX_CMDLINE_BYTES
        ? relaunch(process.argv.slice(2))
        : main(process.argv.slice(2));
  run.then((code) => {
    process.exitCode = code;
  });
}
