// The device choice 'auto' through the real host process: webgpu where an adapter exists (SwiftShader here), else cpu
// with a reason that names what is missing, carried in the load result and in the host's status, and shown in the
// extension's status bar text (deviceLabel, the pure part of src/extension/statusBar.ts) in English and Chinese.
// Loads, and requests only where webgpu is not used (SwiftShader is slow): the one request on webgpu fails at its first
// graph, which reads a weight over SwiftShader's 1 GiB maxBufferSize, and runs again on the cpu.
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { deviceLabel } from '../../src/extension/deviceLabel';
import { vulkanLoaderMissing } from '../../src/host/device-choice';
import { Methods } from '../../src/protocol/rpc';
import { FIXTURE_BUNDLES, REPO } from '../helpers/bundles';
import { HostClient } from '../helpers/host-client';
import { en, zh } from '../helpers/l10n';
import { SWIFTSHADER_MISSING, swiftshaderEnv } from '../helpers/swiftshader';

const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');

describe("device 'auto': webgpu where it can run, else cpu with the reason in the status bar", function () {
  this.timeout(600_000);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-auto-'));
  const hosts: HostClient[] = [];
  const start = async (env: NodeJS.ProcessEnv) => {
    const h = await HostClient.start({ ...env, XDG_CACHE_HOME: tmp });
    hosts.push(h);
    return h;
  };
  after(async () => {
    for (const h of hosts) await h.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('runs on webgpu when an adapter exists (SwiftShader)', async function () {
    const env = swiftshaderEnv();
    if (!env) {
      if (process.env.CI === 'true') assert.fail(SWIFTSHADER_MISSING);
      this.skip();
    }
    const host = await start(env);
    const r = await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'auto' });
    assert.equal(r.provider, 'webgpu');
    assert.equal(r.fellBack, false);
    assert.equal(r.fallback, undefined);
    const s = await host.request(Methods.status, undefined);
    assert.equal(s.model?.provider, 'webgpu');
    assert.equal(s.model?.requestedDevice, 'auto');
    assert.deepEqual(deviceLabel(s.model, 'auto', en), { text: 'webgpu (auto)' });
    assert.match(host.stderr, /on webgpu \(device auto\)/);
  });

  it('falls back to cpu with "no GPU adapter" when Vulkan finds no driver', async () => {
    const env = swiftshaderEnv() ?? { ...process.env };
    const host = await start({ ...env, VK_ICD_FILENAMES: path.join(tmp, 'no-such-icd.json') });
    const r = await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'auto' });
    assert.equal(r.provider, 'cpu');
    assert.equal(r.fellBack, true);
    // where the loader itself is missing (no chromium here), that is the reason instead
    const expected = vulkanLoaderMissing(env) ? 'no-vulkan-loader' : 'no-adapter';
    assert.equal(r.fallback?.reason, expected);
    const s = await host.request(Methods.status, undefined);
    assert.deepEqual(s.model?.fallback, r.fallback, 'the reason travels in the status');
    const label = deviceLabel(s.model, 'auto', en);
    assert.equal(
      label.text,
      expected === 'no-adapter' ? 'cpu (webgpu: no GPU adapter)' : 'cpu (webgpu: no Vulkan loader)',
    );
    assert.match(label.why ?? '', /^Not on webgpu: no (WebGPU adapter|Vulkan loader)/);
    assert.equal(
      deviceLabel(s.model, 'auto', zh).text,
      expected === 'no-adapter' ? 'cpu（webgpu：没有 GPU 适配器）' : 'cpu（webgpu：没有 Vulkan 加载器）',
    );
    assert.match(host.stderr, /on cpu \(device auto: webgpu unavailable: no /, 'the host log says why');
    // the request path works on the fallen-back provider
    const out = await host.request(Methods.segment, {
      image: { path: path.join(BUNDLE, 'images', 'chelsea.png') },
      prompt: 'Hi',
      history: [],
      maxNewTokens: 2,
    });
    assert.equal(out.provider, 'cpu');
  });

  it('says "no Vulkan loader" on Linux when libvulkan.so.1 is nowhere the linker looks', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, LD_LIBRARY_PATH: '' };
    const missing = vulkanLoaderMissing(env); // false only on a machine with a system-wide loader
    const host = await start(env);
    const r = await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'auto' });
    if (missing) {
      assert.equal(r.provider, 'cpu');
      assert.equal(r.fallback?.reason, 'no-vulkan-loader');
      assert.match(r.fallback?.message ?? '', /libvulkan\.so\.1.*install libvulkan1/);
    } else assert.notEqual(r.fallback?.reason, 'no-vulkan-loader');
  });

  it("does not try webgpu for a bundle whose manifest's devices leave it out", async () => {
    const copy = path.join(tmp, 'cpu-only');
    cpSync(BUNDLE, copy, { recursive: true });
    const manifestFile = path.join(copy, 'lisa.manifest.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
    manifest.devices = ['cpu'];
    writeFileSync(manifestFile, JSON.stringify(manifest));
    const host = await start(swiftshaderEnv() ?? {}); // webgpu would run here: the manifest alone decides
    const r = await host.request(Methods.loadModel, { bundle: copy, device: 'auto' });
    assert.equal(r.provider, 'cpu');
    assert.equal(r.fallback?.reason, 'bundle-not-for-device');
    assert.match(r.fallback?.message ?? '', /not meant for webgpu \(its manifest lists cpu; its weights are float32\)/);
    assert.equal(deviceLabel(r, 'auto', en).text, 'cpu (webgpu: model not exported for it)');
    // the cpu named explicitly is no fallback
    const named = await host.request(Methods.loadModel, { bundle: copy, device: 'cpu' });
    assert.equal(named.fallback, undefined);
    assert.deepEqual(deviceLabel(named, 'cpu', en), { text: 'cpu' });
  });

  it('moves to cpu with "adapter too small" when a weight is over the adapter\'s buffer limit (SwiftShader: 1 GiB)', async function () {
    const env = swiftshaderEnv();
    if (!env) {
      if (process.env.CI === 'true') assert.fail(SWIFTSHADER_MISSING);
      this.skip();
    }
    // vision_encoder also reads a 1.1 GiB weight of zeros (a sparse file: no disk used): Dawn cannot make its buffer
    // (SwiftShader's maxBufferSize is 1 GiB; measured: 1020 MiB runs), logs that, and the graph's first run fails.
    const big = path.join(tmp, 'oversized');
    execFileSync(
      path.join(REPO, 'models', 'export', 'venv'),
      ['run', path.join(REPO, 'test', 'helpers', 'oversized_weight.py'), BUNDLE, big, String(1100 * 2 ** 20)],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const host = await start(env);
    const r = await host.request(Methods.loadModel, { bundle: big, device: 'auto' });
    assert.equal(r.provider, 'webgpu', 'the sessions are created: Dawn only logs the buffer it could not make');
    const out = await host.request(Methods.segment, {
      image: { path: path.join(BUNDLE, 'images', 'chelsea.png') },
      prompt: 'Hi',
      history: [],
      maxNewTokens: 2,
    });
    assert.equal(out.provider, 'cpu', 'the request ran again on the cpu');
    const s = await host.request(Methods.status, undefined);
    assert.equal(s.model?.provider, 'cpu');
    assert.equal(s.model?.fallback?.reason, 'adapter-too-small');
    assert.match(
      s.model?.fallback?.message ?? '',
      /the webgpu adapter could not hold this bundle \(11\d\d\.\d MB of weights\)/,
    );
    assert.equal(deviceLabel(s.model, 'auto', en).text, 'cpu (webgpu: GPU too small for the model)');
    assert.match(host.stderr, /device auto: webgpu unavailable: the webgpu adapter could not hold this bundle/);
    // the weight is zeros: the answer is the unchanged bundle's on the cpu
    await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cpu' });
    const plain = await host.request(Methods.segment, {
      image: { path: path.join(BUNDLE, 'images', 'chelsea.png') },
      prompt: 'Hi',
      history: [],
      maxNewTokens: 2,
    });
    assert.deepEqual(out.outputIds, plain.outputIds);
  });
});
