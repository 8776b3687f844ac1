// ONNX Runtime sessions for a bundle's six graphs, created by file path (so external data resolves) on one explicitly
// chosen execution provider. onnxruntime-node does not fall back by itself: asking for a provider it lacks throws, so
// the choice, and any fallback, is made here and reported.
import * as ort from 'onnxruntime-node';
import type { DeviceFallback } from '../protocol/wire-types';
import type { Bundle, GraphName, GraphSpec, TensorSpec } from './bundle';
import { GRAPH_NAMES } from './bundle';
import { sessionFailure } from './device-choice';
import { HostError, isHostError } from './errors';

export type Device = 'cpu' | 'cuda' | 'webgpu';

export interface ProviderChoice {
  provider: Device;
  /** Set when the asked-for (or, for 'auto', tried) device was unavailable and cpu runs instead. */
  fallback?: DeviceFallback;
}

/** The one line a log or a result says about a fallback. */
export const fallbackLine = (f: DeviceFallback) => `${f.device} unavailable: ${f.message}; running on cpu`;

export function chooseProvider(device: Device, allowFallback: boolean): ProviderChoice {
  if (device === 'cpu') return { provider: 'cpu' };
  const backend = ort.listSupportedBackends().find((b) => b.name === device);
  if (backend?.bundled) return { provider: device };
  const why =
    device === 'cuda'
      ? 'the CUDA provider libraries are not installed (onnxruntime-node downloads them at npm install on Linux x64; see docs/gpu.md)'
      : `onnxruntime-node on this platform has no ${device} provider`;
  if (allowFallback) return { provider: 'cpu', fallback: { device, reason: 'provider-missing', message: why } };
  throw new HostError(
    'ProviderUnavailable',
    `Cannot run on ${device}: ${why}. Choose the cpu device or allow fallback.`,
  );
}

/** Accumulates time spent inside ONNX Runtime, so overhead can be measured as total / onnx. */
export class RunClock {
  onnxMs = 0;
  byGraph: Partial<Record<GraphName, number>> = {};
  /**
   * Bytes copied between host memory and a GPU provider's device (inputs fed from, and outputs fetched to, JS memory;
   * tensors left on the device as 'gpu-buffer' do not count). Always 0 on the cpu provider.
   */
  deviceBytes = 0;
  /** deviceBytes by graph. */
  deviceBytesByGraph: Partial<Record<GraphName, number>> = {};
  reset(): void {
    this.onnxMs = 0;
    this.byGraph = {};
    this.deviceBytes = 0;
    this.deviceBytesByGraph = {};
  }
}

/**
 * A graph failed on a GPU because a buffer could not be made for it (a weight over the adapter's buffer limit, or out
 * of device memory). Dawn reports that at session creation only in its log: the session is created, and its first run
 * fails with "[Invalid Buffer] is invalid due to a previous error". 'auto' moves to the cpu on it (pipeline.ts).
 */
export class AdapterTooSmall extends HostError {
  constructor(readonly fallback: DeviceFallback) {
    super('ProviderUnavailable', `Cannot run on ${fallback.device}: ${fallback.message}. Choose the cpu device.`);
  }
}

export class GraphSessions {
  private constructor(
    private sessions: Record<GraphName, ort.InferenceSession>,
    private choice: ProviderChoice,
    readonly clock: RunClock,
    private resident: boolean,
    private readonly bundle: Bundle,
  ) {}

  get provider(): ProviderChoice {
    return this.choice;
  }

  /** The decoder leaves its `present.*` outputs on the WebGPU device (see device-kv-cache.ts). */
  get deviceKvCache(): boolean {
    return this.resident;
  }

  /**
   * Sessions for all six graphs. A GPU provider that is bundled but cannot start here (no adapter, no driver) is
   * reported as unavailable, or replaced by cpu when the caller allows fallback.
   */
  static async create(
    bundle: Bundle,
    provider: ProviderChoice,
    opts: {
      allowFallback?: boolean;
      onProgress?: (g: GraphName, i: number, n: number) => void;
      /**
       * On webgpu, keep the decoder's KV cache and SAM's image embedding on the device (default); false copies them
       * through JS (the path before, for the bench).
       */
      deviceKvCache?: boolean;
    } = {},
  ): Promise<GraphSessions> {
    const resident = provider.provider === 'webgpu' && (opts.deviceKvCache ?? true);
    try {
      return new GraphSessions(
        await createAll(bundle, provider.provider, resident, opts.onProgress),
        provider,
        new RunClock(),
        resident && hasPresent(bundle),
        bundle,
      );
    } catch (e) {
      if (isHostError(e)) throw e;
      if (provider.provider === 'cpu') {
        throw new HostError(
          'BundleInvalid',
          `ONNX Runtime could not load the model in ${bundle.dir}: ${firstLine(e)}. Re-export or re-download it.`,
        );
      }
      const fallback = sessionFailure(provider.provider, e, bundle);
      if (!opts.allowFallback)
        throw new HostError(
          'ProviderUnavailable',
          `Cannot run on ${provider.provider}: ${fallback.message}. Choose the cpu device or allow fallback.`,
        );
      return GraphSessions.create(bundle, { provider: 'cpu', fallback }, opts);
    }
  }

  /** Runs a graph; `fetches` names the outputs to bring back (default all: each one is copied into JS memory). */
  async run(
    graph: GraphName,
    feeds: Record<string, ort.Tensor>,
    fetches?: readonly string[],
  ): Promise<ort.InferenceSession.OnnxValueMapType> {
    const t0 = performance.now();
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await (fetches ? this.sessions[graph].run(feeds, fetches) : this.sessions[graph].run(feeds));
    } catch (e) {
      const device = this.provider.provider;
      const failure = device === 'cpu' ? undefined : sessionFailure(device, e, this.bundle);
      if (failure?.reason === 'adapter-too-small') throw new AdapterTooSmall(failure);
      throw new HostError(
        'BundleInvalid',
        `The model's ${graph} graph failed to run (${firstLine(e)}); the bundle does not fit this host: re-export or re-download it.`,
      );
    }
    const ms = performance.now() - t0;
    if (this.provider.provider !== 'cpu') {
      const bytes = hostBytes(Object.values(feeds)) + hostBytes(Object.values(out));
      this.clock.deviceBytes += bytes;
      this.clock.deviceBytesByGraph[graph] = (this.clock.deviceBytesByGraph[graph] ?? 0) + bytes;
    }
    this.clock.onnxMs += ms;
    this.clock.byGraph[graph] = (this.clock.byGraph[graph] ?? 0) + ms;
    return out;
  }

  /** Replaces the GPU sessions by cpu ones (their device tensors must be freed first), saying why. */
  async fallBackToCpu(fallback: DeviceFallback): Promise<void> {
    await this.release();
    this.sessions = await createAll(this.bundle, 'cpu', false);
    this.choice = { provider: 'cpu', fallback };
    this.resident = false;
  }

  /** Frees one graph's session: another thread runs that graph (its signature was checked here at load). */
  async drop(graph: GraphName): Promise<void> {
    const s = this.sessions[graph];
    delete (this.sessions as Partial<Record<GraphName, ort.InferenceSession>>)[graph];
    await s?.release();
  }

  outputNames(graph: GraphName): readonly string[] {
    return this.sessions[graph].outputNames;
  }

  async release(): Promise<void> {
    await Promise.all(Object.values(this.sessions).map((s) => s.release()));
  }
}

async function createAll(
  bundle: Bundle,
  provider: Device,
  resident: boolean,
  onProgress?: (g: GraphName, i: number, n: number) => void,
): Promise<Record<GraphName, ort.InferenceSession>> {
  const options: ort.InferenceSession.SessionOptions = {
    executionProviders: [provider],
    graphOptimizationLevel: 'all',
  };
  const sessions = {} as Record<GraphName, ort.InferenceSession>;
  try {
    for (const [i, g] of GRAPH_NAMES.entries()) {
      onProgress?.(g, i, GRAPH_NAMES.length);
      const spec = bundle.manifest.graphs[g];
      // on webgpu the decoder's KV cache and SAM's image embedding stay on the device (device-kv-cache.ts, pipeline.ts)
      const onDevice = !resident
        ? undefined
        : g === 'decoder'
          ? deviceOutputs(presentNames(bundle))
          : g === 'sam_image_encoder'
            ? deviceOutputs(['image_embeddings'])
            : undefined;
      sessions[g] = await ort.InferenceSession.create(
        bundle.resolve(spec.file),
        onDevice ? { ...options, preferredOutputLocation: onDevice } : options,
      );
      const mismatch = signatureMismatch(sessions[g], spec);
      if (mismatch) {
        throw new HostError(
          'BundleInvalid',
          `Graph ${g} (${spec.file}) in ${bundle.dir} does not match the manifest: ${mismatch}; the graphs were mixed up or changed, re-export or re-download the model.`,
        );
      }
    }
    return sessions;
  } catch (e) {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
    throw e;
  }
}

/**
 * How a graph's inputs and outputs differ from the manifest's (names, element types, ranks and static dimensions), or
 * undefined when they agree. A symbolic dimension on either side matches anything.
 */
function signatureMismatch(session: ort.InferenceSession, spec: GraphSpec): string | undefined {
  const sides: Array<[string, readonly ort.InferenceSession.ValueMetadata[], Record<string, TensorSpec>]> = [
    ['input', session.inputMetadata, spec.inputs],
    ['output', session.outputMetadata, spec.outputs],
  ];
  for (const [side, actual, expected] of sides) {
    const byName = new Map(actual.map((v) => [v.name, v]));
    for (const name of Object.keys(expected))
      if (!byName.has(name)) return `it has no ${side} "${name}" (it has ${[...byName.keys()].join(', ')})`;
    for (const v of actual) {
      const want = expected[v.name];
      if (!want) return `its ${side} "${v.name}" is not in the manifest`;
      if (!v.isTensor) return `its ${side} "${v.name}" is not a tensor`;
      if (v.type !== want.dtype) return `${side} "${v.name}" is ${v.type}, the manifest says ${want.dtype}`;
      const shown = (d: readonly unknown[]) => `[${d.join(', ')}]`;
      const fixed = (d: unknown) => typeof d === 'number' && d >= 0;
      if (
        v.shape.length !== want.shape.length ||
        v.shape.some((d, i) => fixed(d) && fixed(want.shape[i]) && d !== want.shape[i])
      ) {
        return `${side} "${v.name}" has shape ${shown(v.shape)}, the manifest says ${shown(want.shape)}`;
      }
    }
  }
  return undefined;
}

const presentNames = (bundle: Bundle) =>
  Object.keys(bundle.manifest.graphs.decoder.outputs).filter((n) => n.startsWith('present.'));
const hasPresent = (bundle: Bundle) => presentNames(bundle).length > 0;
const deviceOutputs = (names: string[]) =>
  Object.fromEntries(names.map((n) => [n, 'gpu-buffer'])) as Record<string, ort.Tensor.DataLocation>;

/** Bytes of the tensors that live in host memory (a gpu-buffer tensor stays on the device). */
function hostBytes(values: readonly ort.OnnxValue[]): number {
  let n = 0;
  for (const v of values) {
    const t = v as ort.Tensor;
    if (t.location === 'cpu' || t.location === 'cpu-pinned') n += (t.data as ArrayBufferView).byteLength;
  }
  return n;
}

const firstLine = (e: unknown) => String((e as Error)?.message ?? e).split('\n')[0];

export const f32 = (data: Float32Array, dims: number[]) => new ort.Tensor('float32', data, dims);
export const i64 = (data: BigInt64Array, dims: number[]) => new ort.Tensor('int64', data, dims);
