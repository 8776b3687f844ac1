// `npm run bench -- --device webgpu`: decode ms/step and host<->device bytes per step, side by side in one run, for
// webgpu with the KV cache on the device, webgpu copying the cache through JS every step (the path before), and cpu.
// Each runs in its own process (test/helpers/device-run.js); without a GPU adapter webgpu runs on SwiftShader, whose
// times say nothing about a GPU's (its bytes per step are what a GPU's would be).
//   options: --bundle DIR (default the tiny-7b fixture), --new-tokens N (default 24)
import * as path from 'node:path';
import { type DecodeSteps, type DeviceRunOutput, runOnDevice } from '../test/helpers/device-run';
import { swiftshaderEnv } from '../test/helpers/swiftshader';

const REPO = path.resolve(__dirname, '..', '..');
const TINY = path.join(REPO, 'test', 'fixtures', 'bundles', 'tiny-7b');
const PROMPT = 'Which object in this picture would keep a drink warm the longest? Please output segmentation mask.';

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)] : Number.NaN;
};

export async function benchWebgpu(argv: string[]): Promise<void> {
  const arg = (name: string) => {
    const i = argv.indexOf(name);
    return i < 0 ? undefined : argv[i + 1];
  };
  const bundle = path.resolve(arg('--bundle') ?? TINY);
  const newTokens = Number(arg('--new-tokens') ?? 24);
  // A machine with a GPU has a Vulkan loader and driver of its own; SwiftShader is the stand-in where it has none.
  const swift = process.env.VK_ICD_FILENAMES ? undefined : swiftshaderEnv();
  const gpuEnv = swift ?? process.env;
  console.log(
    `WebGPU decode, ${path.basename(bundle)}, ${newTokens} new tokens; webgpu adapter: ${swift ? `SwiftShader (${swift.VK_ICD_FILENAMES})` : "the machine's own"}`,
  );
  const timed = { prompt: PROMPT, newTokens };
  const rows: Array<[string, DeviceRunOutput]> = [];
  for (const [label, device, deviceKvCache, env] of [
    ['webgpu, KV cache on the device', 'webgpu', true, gpuEnv],
    ['webgpu, KV cache copied each step', 'webgpu', false, gpuEnv],
    ['cpu', 'cpu', undefined, process.env],
  ] as const) {
    try {
      rows.push([label, await runOnDevice({ bundle, device, deviceKvCache, timed }, env)]);
    } catch (e) {
      console.log(`  ${label}: failed: ${String((e as Error).message).split('\n')[0]}`);
    }
  }
  const ids = (s?: DecodeSteps) => s?.outputIds.join(',');
  const reference = ids(rows[0]?.[1].timed);
  console.log(
    '  path                               | decode ms/step (median) | host<->device bytes/step | tokens same as first row',
  );
  for (const [label, r] of rows) {
    const s = r.timed;
    if (!s) continue;
    const bytes = s.stepBytes.length ? `${Math.min(...s.stepBytes)} to ${Math.max(...s.stepBytes)}` : 'n/a';
    console.log(
      `  ${label.padEnd(34)} | ${median(s.stepMs).toFixed(2).padStart(23)} | ${(r.provider === 'cpu' ? '0 (no device)' : bytes).padStart(24)} | ${ids(s) === reference ? 'yes' : 'NO'}`,
    );
  }
  const [dev, copy] = [rows[0]?.[1].timed, rows[1]?.[1].timed];
  if (dev && copy && dev.stepBytes.length && copy.stepBytes.length)
    console.log(
      `  bytes per step, copying / device cache: ${(median(copy.stepBytes) / median(dev.stepBytes)).toFixed(1)} x; ` +
        `ms per step: ${(median(copy.stepMs) / median(dev.stepMs)).toFixed(2)} x`,
    );
}
