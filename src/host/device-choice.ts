// Which device a load runs on when it asks for 'auto', and why a GPU provider was not used. 'auto' tries webgpu and
// falls back to cpu with one of DeviceFallback's reasons. Known before trying: the bundle is not meant for webgpu (its
// manifest's devices), this onnxruntime-node has no webgpu provider, or Linux's only Vulkan drivers are software ones.
// Known from the failure (webgpu is tried: without an adapter it fails at the first session, in milliseconds): no
// Vulkan loader on Linux, no adapter, or an adapter that could not hold the bundle. onnxruntime-node does not expose
// the adapter's limits or memory, so "too small" is read from the allocation error. Dawn only logs a buffer it could not
// make (a weight over the adapter's maxBufferSize, SwiftShader's 1 GiB; or out of device memory): the session is
// created and its first run fails on the invalid buffer, so that is where 'auto' learns it (AdapterTooSmall).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import type { DeviceFallback } from '../protocol/wire-types';
import type { Bundle } from './bundle';
import type { Device } from './sessions';

/** Where 'auto' starts, before any session exists: the bundle's manifest and this build of onnxruntime-node. */
export function autoDevice(bundle: Bundle): { device: Device; fallback?: DeviceFallback } {
  const devices = bundle.manifest.devices;
  if (devices && !devices.includes('webgpu'))
    return fallback(
      'webgpu',
      'bundle-not-for-device',
      `this bundle is not meant for webgpu (its manifest lists ${devices.join(', ')}; its weights are ${weightFormats(bundle)})`,
    );
  if (!ort.listSupportedBackends().some((b) => b.name === 'webgpu' && b.bundled))
    return fallback('webgpu', 'provider-missing', 'onnxruntime-node on this platform has no webgpu provider');
  const software = onlySoftwareVulkan(process.env);
  if (software) return fallback('webgpu', software.reason, software.message);
  return { device: 'webgpu' };
}

/** Why a GPU provider failed to create the bundle's sessions, from ONNX Runtime's error. */
export function sessionFailure(device: Device, error: unknown, bundle: Bundle): DeviceFallback {
  const text = String((error as Error)?.message ?? error);
  const first = text.split('\n')[0].replace(/^\/\S+:\d+ \S+ /, ''); // ORT prefixes its source file and function
  if (device === 'webgpu' && /Failed to get a WebGPU adapter|No supported adapters/i.test(text)) {
    const noLoader = vulkanLoaderMissing(process.env);
    return noLoader
      ? { device, ...noLoader }
      : { device, reason: 'no-adapter', message: 'no WebGPU adapter was found (no GPU, or no GPU driver for it)' };
  }
  if (
    /out of memory|OutOfMemory|OUT_OF_DEVICE_MEMORY|Invalid Buffer|exceeds? (the )?(max|limit)|maxBufferSize|maxStorageBuffer|failed to allocate/i.test(
      text,
    )
  )
    return {
      device,
      reason: 'adapter-too-small',
      message: `the ${device} adapter could not hold this bundle (${mb(weightBytes(bundle))} MB of weights): ${first}`,
    };
  return { device, reason: 'provider-failed', message: `the ${device} provider failed to start (${first})` };
}

/** Bytes of the bundle's graphs and their weights, as the manifest records them. */
export function weightBytes(bundle: Bundle): number {
  let n = 0;
  for (const [file, f] of Object.entries(bundle.manifest.files)) if (file.startsWith('onnx/')) n += f.bytes;
  return n;
}

const SOFTWARE_ICD = /lvp|llvmpipe|swiftshader|lavapipe/i;

/** On Linux, when the dynamic linker would find no Vulkan loader (libvulkan.so.1), without which Dawn has no adapter. */
export function vulkanLoaderMissing(
  env: NodeJS.ProcessEnv,
  platform: NodeJS.Platform = process.platform,
): Omit<DeviceFallback, 'device'> | undefined {
  if (platform !== 'linux') return undefined;
  const libDirs = [
    ...(env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean),
    ...['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib64', '/lib'],
    ...ldSoConfDirs(),
  ];
  if (libDirs.some((d) => existsSync(path.join(d, 'libvulkan.so.1')))) return undefined;
  return {
    reason: 'no-vulkan-loader',
    message:
      "no Vulkan loader (libvulkan.so.1) is installed, which webgpu needs on Linux: install libvulkan1 and your GPU's Vulkan driver",
  };
}

/**
 * On Linux, when the only Vulkan drivers the loader would find by itself are software ones (llvmpipe, SwiftShader):
 * Dawn would give webgpu a CPU-backed adapter, slower than the cpu provider. A driver named explicitly
 * (VK_ICD_FILENAMES or VK_DRIVER_FILES: SwiftShader in the tests) is the user's choice and is used as it is.
 */
export function onlySoftwareVulkan(
  env: NodeJS.ProcessEnv,
  platform: NodeJS.Platform = process.platform,
): Omit<DeviceFallback, 'device'> | undefined {
  if (platform !== 'linux' || env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES) return undefined;
  const libraries = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d']
    .flatMap(listJson)
    .map(icdLibrary);
  if (libraries.length === 0 || !libraries.every((l) => SOFTWARE_ICD.test(l))) return undefined;
  return {
    reason: 'no-adapter',
    message: `no GPU adapter: the only Vulkan drivers are software ones (${libraries.map((l) => path.basename(l)).join(', ')}), slower than the cpu provider`,
  };
}

function ldSoConfDirs(): string[] {
  try {
    return readdirSync('/etc/ld.so.conf.d')
      .filter((f) => f.endsWith('.conf'))
      .flatMap((f) => readFileSync(path.join('/etc/ld.so.conf.d', f), 'utf8').split('\n'))
      .map((l) => l.trim())
      .filter((l) => l.startsWith('/'));
  } catch {
    return [];
  }
}

function listJson(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

/** The driver library an ICD manifest names (its file name when the manifest cannot be read). */
function icdLibrary(file: string): string {
  try {
    return String(JSON.parse(readFileSync(file, 'utf8'))?.ICD?.library_path ?? file);
  } catch {
    return file;
  }
}

function weightFormats(bundle: Bundle): string {
  const formats = new Set(Object.values(bundle.manifest.graphs).map((g) => g?.weights ?? 'float32'));
  return [...formats].join(', ');
}

const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);

function fallback(
  device: Device,
  reason: DeviceFallback['reason'],
  message: string,
): { device: Device; fallback: DeviceFallback } {
  return { device: 'cpu', fallback: { device, reason, message } };
}
