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
  reset(): void {
    this.onnxMs = 0;
    this.byGraph = {};
    this.deviceBytes = 0;
  }
}

export class GraphSessions {
  private constructor(
    private readonly sessions: Record<GraphName, ort.InferenceSession>,
    readonly provider: ProviderChoice,
    readonly clock: RunClock,
    /** The decoder leaves its `present.*` outputs on the WebGPU device (see device-kv-cache.ts). */
    readonly deviceKvCache: boolean,
  ) {}

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
      /** On webgpu, keep the decoder's KV cache on the device (default); false copies it through JS every step. */
      deviceKvCache?: boolean;
    } = {},
  ): Promise<GraphSessions> {
    const onDevice = provider.provider === 'webgpu' && (opts.deviceKvCache ?? true) && hasPresent(bundle);
    try {
      return new GraphSessions(
        await createAll(bundle, provider.provider, onDevice, opts.onProgress),
        provider,
        new RunClock(),
        onDevice,
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
      throw new HostError(
        'BundleInvalid',
        `The model's ${graph} graph failed to run (${firstLine(e)}); the bundle does not fit this host: re-export or re-download it.`,
      );
    }
    const ms = performance.now() - t0;
    if (this.provider.provider !== 'cpu')
      this.clock.deviceBytes += hostBytes(Object.values(feeds)) + hostBytes(Object.values(out));
    this.clock.onnxMs += ms;
    this.clock.byGraph[graph] = (this.clock.byGraph[graph] ?? 0) + ms;
    return out;
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
  deviceKvCache: boolean,
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
      const onDevice = g === 'decoder' && deviceKvCache ? deviceOutputs(presentNames(bundle)) : undefined;
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
