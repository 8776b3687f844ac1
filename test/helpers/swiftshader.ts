// SwiftShader: a Vulkan device in software, which lets onnxruntime-node's WebGPU provider run on a machine without a
// GPU. Debian's chromium (package chromium-common) ships the Vulkan loader and the SwiftShader ICD in its library
// folder. The loader is found through LD_LIBRARY_PATH, which the dynamic linker reads at process start, so a process
// that should run on it is started with this environment (it cannot switch over by itself).
import { existsSync } from 'node:fs';
import * as path from 'node:path';

const FOLDERS = ['/usr/lib/chromium', '/usr/lib/chromium-browser'];

/** The environment that makes a child process's Vulkan (and so WebGPU) run on SwiftShader; undefined if not installed. */
export function swiftshaderEnv(): NodeJS.ProcessEnv | undefined {
  const dir = FOLDERS.find((d) =>
    ['libvulkan.so.1', 'libvk_swiftshader.so', 'vk_swiftshader_icd.json'].every((f) => existsSync(path.join(d, f))),
  );
  if (!dir) return undefined;
  const ld = process.env.LD_LIBRARY_PATH;
  return {
    ...process.env,
    VK_ICD_FILENAMES: path.join(dir, 'vk_swiftshader_icd.json'),
    LD_LIBRARY_PATH: ld ? `${dir}:${ld}` : dir,
  };
}

export const SWIFTSHADER_MISSING =
  "SwiftShader's Vulkan ICD was not found in /usr/lib/chromium: install Debian's chromium (apt-get install -y chromium)";
