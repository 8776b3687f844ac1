// Runs golden cases (or one timed prompt) on one device in this process and prints one JSON document on stdout. The
// WebGPU suite and `npm run bench -- --device webgpu` start it as a child process, with SwiftShader's environment where
// there is no GPU (the Vulkan loader is found only through the environment a process starts with).
//   node out/test/helpers/device-run.js '<json DeviceRunSpec>'
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { generate } from '../../src/host/generate';
import { LisaPipeline, type SegmentRequest } from '../../src/host/pipeline';
import { buildPrompt } from '../../src/host/prompt';
import type { Device } from '../../src/host/sessions';
import { type GoldenCase, goldens } from './bundles';

export interface DeviceRunSpec {
  bundle: string;
  device: Device;
  /** webgpu only: false copies the KV cache through JS every step (the path before the device cache). */
  deviceKvCache?: boolean;
  /** Golden case names to run through the whole pipeline. */
  cases?: string[];
  /** The bundle whose goldens.json and images the cases come from (default `bundle`; an int4 export has none). */
  goldensFrom?: string;
  /** Replay each case's decode through generate() to measure its steps (default true). */
  replaySteps?: boolean;
  /** At most this many new tokens per case (default: the golden's own). */
  maxNewTokens?: number;
  /** Also time a decode of this prompt, this many new tokens (after an untimed warm-up). */
  timed?: { prompt: string; newTokens: number };
  /** After the cases: run the refine goldens of the cases run, then evict their image while a refine holds it. */
  refineAndEvict?: boolean;
  /** After the cases: a follow-up turn to the last case, with the KV rows kept from it, then again without them. */
  followUp?: boolean;
}

export interface CaseOutcome {
  name: string;
  provider: string;
  outputIds: number[];
  text: string;
  masks: Array<{ rle: { size: [number, number]; counts: string } }>;
}

export interface DecodeSteps {
  /** Host<->device bytes of each decode step after the prefill (embed_tokens + decoder), from GraphSessions' counter. */
  stepBytes: number[];
  /** Wall time of each decode step after the prefill. */
  stepMs: number[];
  prefillBytes: number;
  prefillMs: number;
  outputIds: number[];
  /** Positions held by the cache at each step's start. */
  positions: number[];
}

export interface RefineOutcome {
  name: string;
  rle: { size: [number, number]; counts: string };
  iou: number;
}

export interface EvictOutcome {
  /** Where the image's SAM embedding lived while cached. */
  cachedLocation: string;
  /** Its location after eviction while a refine held it, then after that refine let go ('none': disposed). */
  heldLocation: string;
  releasedLocation: string;
  /** What a refine of a result on the evicted image answered. */
  refineAfter: string;
}

export interface DeviceRunOutput {
  provider: string;
  deviceKvCache: boolean;
  loadMs: number;
  cases: CaseOutcome[];
  /** Host<->device bytes of each case's segment request, by graph. */
  caseBytes: Record<string, Partial<Record<string, number>>>;
  refine: RefineOutcome[];
  evict?: EvictOutcome;
  followUp?: { reusedPositions: number; withReuse: number[]; withoutReuse: number[]; reusedWithout: number };
  /** For each case, its decode steps replayed through generate() on the cached image features. */
  steps: Record<string, DecodeSteps>;
  timed?: DecodeSteps;
}

const caseRequest = (bundle: string, c: GoldenCase): SegmentRequest => ({
  image: { path: path.join(bundle, c.image) },
  prompt: c.prompt,
  history: c.history.map(([user, assistant]) => ({ user, assistant })),
  assistantPrefix: c.assistant_prefix,
  maxNewTokens: c.max_new_tokens,
});

async function decodeSteps(
  p: LisaPipeline,
  inputIds: number[],
  clipFeatures: Float32Array,
  maxNewTokens: number,
): Promise<DecodeSteps> {
  const clock = p.sessions.clock;
  clock.reset();
  const marks: Array<{ bytes: number; t: number }> = [];
  const t0 = performance.now();
  const gen = await generate(p.sessions, p.bundle.manifest, {
    inputIds,
    imageFeatures: clipFeatures,
    maxNewTokens,
    onToken: () => marks.push({ bytes: clock.deviceBytes, t: performance.now() }),
  });
  const prefillLen = inputIds.length - 1 + p.bundle.manifest.tokens.num_image_tokens;
  const stepBytes: number[] = [];
  const stepMs: number[] = [];
  for (let i = 1; i < marks.length; i++) {
    stepBytes.push(marks[i].bytes - marks[i - 1].bytes);
    stepMs.push(marks[i].t - marks[i - 1].t);
  }
  return {
    stepBytes,
    stepMs,
    prefillBytes: marks[0]?.bytes ?? 0,
    prefillMs: (marks[0]?.t ?? t0) - t0,
    outputIds: gen.outputIds,
    positions: stepBytes.map((_, i) => prefillLen + i),
  };
}

async function main(spec: DeviceRunSpec): Promise<DeviceRunOutput> {
  const p = await LisaPipeline.load(spec.bundle, {
    device: spec.device,
    deviceKvCache: spec.deviceKvCache,
    verifyCacheFile: null,
    samSchedule: 'serial', // each case's image embeddings are cached when it returns (the replay reads them)
  });
  try {
    const out: DeviceRunOutput = {
      provider: p.provider,
      deviceKvCache: p.sessions.deviceKvCache,
      loadMs: p.loadMs,
      cases: [],
      caseBytes: {},
      refine: [],
      steps: {},
    };
    const answers = new Map<string, string>();
    const resultIds = new Map<string, { id: string; sha256: string }>();
    const from = spec.goldensFrom ?? spec.bundle;
    const all = goldens(from);
    for (const name of spec.cases ?? []) {
      const c = all.find((g) => g.name === name);
      if (!c) throw new Error(`no golden case ${name} in ${spec.bundle}`);
      const maxNewTokens = Math.min(c.max_new_tokens, spec.maxNewTokens ?? c.max_new_tokens);
      p.sessions.clock.reset();
      const r = await p.segment({ ...caseRequest(from, c), maxNewTokens, includePng: false });
      out.caseBytes[name] = { ...p.sessions.clock.deviceBytesByGraph };
      if (r.resultId) resultIds.set(name, { id: r.resultId, sha256: r.image.sha256 });
      out.cases.push({ name, provider: r.provider, outputIds: r.outputIds, text: r.text, masks: r.masks });
      answers.set(name, r.answer);
      if (spec.replaySteps === false) continue;
      const emb = p.cache.get(r.image.sha256);
      if (!emb) throw new Error('the image embeddings left the cache');
      out.steps[name] = await decodeSteps(p, c.input_ids, emb.clipFeatures, maxNewTokens);
    }
    if (spec.followUp) {
      const c = all.find((g) => g.name === spec.cases?.at(-1));
      const last = out.cases.at(-1);
      const answer = answers.get(c?.name ?? '');
      if (!c || !last || answer === undefined) throw new Error('followUp needs a case before it');
      const req: SegmentRequest = {
        image: { path: path.join(from, c.image) },
        prompt: 'And which one is closer to the camera?',
        history: [...caseRequest(from, c).history!, { user: c.prompt, assistant: answer }],
        maxNewTokens: 8,
        includePng: false,
      };
      const before = p.counters.reusedPositions;
      const withReuse = (await p.segment(req)).outputIds;
      const reusedPositions = p.counters.reusedPositions - before;
      p.kvStore.clear();
      const mid = p.counters.reusedPositions;
      const withoutReuse = (await p.segment(req)).outputIds;
      out.followUp = { reusedPositions, withReuse, withoutReuse, reusedWithout: p.counters.reusedPositions - mid };
    }
    if (spec.refineAndEvict) {
      const refineGoldens = (
        JSON.parse(readFileSync(path.join(from, 'goldens.json'), 'utf8')).refine as Array<{
          name: string;
          case: string;
          mask_index: number;
          points: Array<[number, number]>;
          labels: Array<0 | 1>;
          box: [number, number, number, number] | null;
        }>
      ).filter((g) => resultIds.has(g.case));
      for (const g of refineGoldens) {
        const r = await p.refiner.refine({
          resultId: resultIds.get(g.case)!.id,
          maskIndex: g.mask_index,
          prompt: { points: g.points, labels: g.labels, ...(g.box ? { box: g.box } : {}) },
        });
        out.refine.push({ name: g.name, rle: r.mask.rle, iou: r.mask.score });
      }
      const [caseName, { id, sha256 }] = [...resultIds][0];
      const emb = p.cache.get(sha256);
      if (!emb) throw new Error(`${caseName}: the image left the cache`);
      const t = emb.samEmbedding as { location?: string };
      const cachedLocation = String(t.location ?? 'cpu');
      const release = p.cache.hold(emb); // as a refine running at that moment does
      p.cache.resize(1);
      p.cache.put({ ...emb, sha256: 'another image', samEmbedding: new Float32Array(4) });
      const heldLocation = String(t.location ?? 'cpu');
      release();
      const releasedLocation = String(t.location ?? 'cpu');
      const refineAfter = await p.refiner
        .refine({ resultId: id, maskIndex: 0, prompt: { points: [[1, 1]], labels: [1] } })
        .then(
          () => 'answered',
          (e: Error) => e.message,
        );
      out.evict = { cachedLocation, heldLocation, releasedLocation, refineAfter };
    }
    if (spec.timed) {
      // Decoding only: fixed image features stand in for CLIP's (decode time does not depend on their values), so
      // neither image encoder runs (SAM's takes minutes on SwiftShader).
      const { prompt, newTokens } = spec.timed;
      const m = p.bundle.manifest;
      const features = Float32Array.from({ length: m.tokens.num_image_tokens * m.llm.hidden_size }, (_, i) =>
        Math.sin(i),
      );
      const inputIds = p.tokenizer.encodePrompt(buildPrompt(m.prompt, [], prompt, ''));
      await decodeSteps(p, inputIds, features, 3); // warm-up: the first run of each shape compiles shaders on webgpu
      out.timed = await decodeSteps(p, inputIds, features, newTokens);
    }
    return out;
  } finally {
    await p.dispose();
  }
}

/** Runs spec in a child process started with env (SwiftShader's Vulkan loader is found only through the environment a
 * process starts with): what the WebGPU tests and `npm run bench -- --device webgpu` call. */
export async function runOnDevice(spec: DeviceRunSpec, env: NodeJS.ProcessEnv): Promise<DeviceRunOutput> {
  const { stdout } = await promisify(execFile)(process.execPath, [__filename, JSON.stringify(spec)], {
    env,
    maxBuffer: 64 << 20,
  });
  return JSON.parse(stdout) as DeviceRunOutput;
}

if (require.main === module) {
  main(JSON.parse(process.argv[2]) as DeviceRunSpec).then(
    (out) => process.stdout.write(`${JSON.stringify(out)}\n`),
    (e) => {
      process.stderr.write(`${(e as Error).stack ?? e}\n`);
      process.exit(1);
    },
  );
}
