// A real JupyterLab (the kernel venv's, from PyPI) on loopback with a token, the magic's package pip-installed into a
// fresh prefix as a user would (which installs the prebuilt labextension under share/jupyter/labextensions), driven by
// Debian's Chromium: open a notebook, run a %%segment cell on the tiny bundle against the real host, and see the
// answer text and the masks drawn by the extension's renderer (the shared overlay view), checked pixel by pixel
// against the masks of the output JupyterLab received. Then refine a mask by clicking on it (the renderer's comm to
// the kernel, whose magic asks the host), undo and redo, and save: the saved notebook keeps the refined mask. JupyterLab
// runs in Chinese (the zh-CN language pack of the kernel venv), and so do the overlay's controls. First: the
// committed prebuilt extension is what its sources build to (src/renderer/jupyterlab/build), since that is what pip
// installs.

import * as assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { RESULT_MIME, type ResultMask, type SegmentResult } from '../../src/protocol/result';
import { decodeRle } from '../../src/protocol/rle';
import { CHROMIUM, CHROMIUM_ARGS, ROOT, readCanvas } from './harness';

const SHOTS = path.join(os.tmpdir(), 'reason-segment-screens');
const BUNDLE = path.join(ROOT, 'test/fixtures/bundles/tiny-7b');
// The extension's widget in the output area.
const OUTPUT = '.jp-OutputArea-output.rs-jupyterlab';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function waitUp(url: string, lab: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    if (lab.exitCode !== null) throw new Error(`JupyterLab exited (${lab.exitCode}):\n${log()}`);
    try {
      if ((await fetch(url)).ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`JupyterLab did not answer ${url} within 300 s (a loaded machine?):\n${log()}`);
}

/** The overlay canvas is opaque exactly on the union of `masks` (what the renderer must draw). */
async function expectOverlay(page: Page, masks: ResultMask[], what: string): Promise<void> {
  const [h, w] = masks[0].rle.size;
  const union = new Uint8Array(h * w);
  for (const m of masks) {
    const d = decodeRle(m.rle);
    for (let i = 0; i < d.length; i++) union[i] |= d[i];
  }
  const ov = await readCanvas(page, `${OUTPUT} canvas.rs-overlay`);
  assert.deepEqual([ov.height, ov.width], [h, w]);
  let painted = 0;
  let mismatched = 0;
  for (let i = 0; i < h * w; i++) {
    const on = ov.data[i * 4 + 3] > 0;
    painted += on ? 1 : 0;
    mismatched += on !== (union[i] === 1) ? 1 : 0;
  }
  assert.ok(painted > 0, `${what}: no mask pixel drawn`);
  assert.equal(
    mismatched,
    0,
    `${what}: ${mismatched} overlay pixels differ from the masks' union (${painted} painted)`,
  );
}

/** The result payload of the %%segment cell's output as JupyterLab's notebook model holds it now. */
function outputPayload(page: Page): Promise<SegmentResult> {
  return page.evaluate((mime) => {
    const nbw = (window as any).jupyterapp.shell.currentWidget.content;
    return nbw.model.cells.get(1).outputs.get(0).data[mime];
  }, RESULT_MIME);
}

/** Waits until mask 0 of the output is refined (true) or the model's own (false). */
async function waitRefined(page: Page, refined: boolean): Promise<void> {
  await page.waitForFunction(
    ([mime, want]) => {
      const out = (window as any).jupyterapp.shell.currentWidget.content.model.cells.get(1).outputs.get(0);
      return Boolean(out.data[mime as string].masks[0].refined) === want;
    },
    [RESULT_MIME, refined] as const,
    { timeout: 120_000 },
  );
}

describe('JupyterLab with the prebuilt extension (real server, Chromium)', function () {
  this.timeout(900_000);
  let venv = '';
  let tmp = '';
  let lab: ChildProcess | undefined;
  let labLog = '';
  let context: BrowserContext | undefined;

  before(() => {
    venv = execFileSync(path.join(ROOT, 'src/kernel/venv'), ['path'], { encoding: 'utf8' }).trim();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-jupyterlab-'));
  });

  after(async () => {
    await context?.close();
    if (lab?.pid && lab.exitCode === null) {
      // JupyterLab shuts its kernels down on SIGTERM; each kernel's host exits with it (docs/jupyter.md).
      process.kill(-lab.pid, 'SIGTERM');
      await new Promise((r) => lab?.once('exit', r));
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('the committed prebuilt extension (src/kernel/labextension) is what its sources build to', () => {
    execFileSync(path.join(ROOT, 'src/renderer/jupyterlab/build'), { cwd: ROOT, stdio: 'pipe' });
    const changed = execFileSync('git', ['status', '--porcelain', '--', 'src/kernel/labextension'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    assert.equal(changed, '', 'src/kernel/labextension is stale: run `npm run build:labextension` and commit it');
  });

  it('pip install of the package gives JupyterLab the renderer: a %%segment cell shows the answer and the masks', async () => {
    // The package as a user installs it: a copy of the folder, no build isolation (no network), into its own prefix.
    const src = path.join(tmp, 'src');
    cpSync(path.join(ROOT, 'src/kernel'), src, {
      recursive: true,
      filter: (f) => !/\/(tests|venv|build|__pycache__|[^/]*\.egg-info)$/.test(f),
    });
    const prefix = path.join(tmp, 'prefix');
    execFileSync(
      path.join(venv, 'bin/python'),
      ['-m', 'pip', 'install', '-q', '--no-index', '--no-deps', '--no-build-isolation', '--prefix', prefix, src],
      { cwd: tmp, stdio: 'pipe' },
    );
    const site = path.join(prefix, 'lib', readdirSync(path.join(prefix, 'lib'))[0], 'site-packages');
    // `jupyter labextension list` writes its list to stderr.
    const listed = spawnSync(path.join(venv, 'bin/jupyter'), ['labextension', 'list'], {
      env: { ...process.env, JUPYTER_PATH: path.join(prefix, 'share/jupyter'), PYTHONPATH: site },
      encoding: 'utf8',
    });
    assert.match(`${listed.stdout}${listed.stderr}`, /@reason-segment\/jupyterlab v0\.1\.0 .*enabled.*OK/);

    const work = path.join(tmp, 'work');
    mkdirSync(work);
    cpSync(path.join(BUNDLE, 'images/coffee.png'), path.join(work, 'coffee.png'));
    const nb = {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: { kernelspec: { name: 'python3', display_name: 'Python 3', language: 'python' } },
      cells: [
        '%load_ext reason_segment',
        "%%segment coffee.png -n 2 --assistant-prefix 'Sure, [SEG] and [SEG].'\nSegment the cup and the spoon.",
      ].map((source, i) => ({
        cell_type: 'code',
        id: `c${i}`,
        metadata: {},
        source,
        outputs: [],
        execution_count: null,
      })),
    };
    writeFileSync(path.join(work, 'segment.ipynb'), JSON.stringify(nb));
    // JupyterLab in Chinese, as a user picks it (Settings > Language) with the zh-CN language pack installed.
    const settings = path.join(tmp, 'settings', '@jupyterlab', 'translation-extension');
    mkdirSync(settings, { recursive: true });
    writeFileSync(path.join(settings, 'plugin.jupyterlab-settings'), JSON.stringify({ locale: 'zh_CN' }));

    const port = await freePort();
    const token = `rs-${process.pid}-${Date.now()}`;
    const env: NodeJS.ProcessEnv = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('REASON_SEGMENT_') && !k.startsWith('JUPYTER')),
    );
    Object.assign(env, {
      PYTHONPATH: site,
      JUPYTER_PATH: path.join(prefix, 'share/jupyter'),
      JUPYTER_CONFIG_DIR: path.join(tmp, 'config'),
      JUPYTER_DATA_DIR: path.join(tmp, 'data'),
      JUPYTER_RUNTIME_DIR: path.join(tmp, 'runtime'),
      JUPYTERLAB_SETTINGS_DIR: path.join(tmp, 'settings'),
      JUPYTERLAB_WORKSPACES_DIR: path.join(tmp, 'workspaces'),
      IPYTHONDIR: path.join(tmp, 'ipython'),
      REASON_SEGMENT_HOST: path.join(ROOT, 'out/src/host/server.js'),
      REASON_SEGMENT_MODEL: BUNDLE,
    });
    lab = spawn(
      path.join(venv, 'bin/jupyter'),
      [
        'lab',
        '--no-browser',
        '--ServerApp.ip=127.0.0.1',
        `--ServerApp.port=${port}`,
        '--ServerApp.port_retries=0',
        `--IdentityProvider.token=${token}`,
        `--ServerApp.root_dir=${work}`,
        // Lets the test run the notebook with JupyterLab's own command (what Run > Run All Cells does).
        '--LabApp.expose_app_in_browser=True',
        // CI runs as root.
        '--allow-root',
      ],
      { cwd: work, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const keep = (b: Buffer) => {
      labLog = (labLog + b.toString()).slice(-20_000);
    };
    lab.stdout?.on('data', keep);
    lab.stderr?.on('data', keep);
    const base = `http://127.0.0.1:${port}`;
    await waitUp(`${base}/api/status?token=${token}`, lab, () => labLog);

    context = await chromium.launchPersistentContext(path.join(tmp, 'chromium'), {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      viewport: { width: 1200, height: 1000 },
      deviceScaleFactor: 1,
    });
    const page: Page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // Generous: JupyterLab's first load is ~10 MB of scripts, slow on a loaded 2-core machine.
    await page.goto(`${base}/lab/tree/segment.ipynb?token=${token}`, { timeout: 300_000 });
    await page.waitForFunction(
      () => {
        const app = (window as any).jupyterapp;
        const w = app?.shell?.currentWidget;
        return w?.sessionContext?.session?.kernel && w.content?.widgets?.length === 2;
      },
      undefined,
      { timeout: 300_000 },
    );
    await page.evaluate(() => (window as any).jupyterapp.commands.execute('notebook:run-all-cells'));
    try {
      await page.waitForSelector(`${OUTPUT} .rs-view[data-ready="true"]`, { timeout: 300_000 });
    } catch (e) {
      mkdirSync(SHOTS, { recursive: true });
      await page.screenshot({ path: path.join(SHOTS, 'jupyterlab-failed.png') });
      throw new Error(`${(e as Error).message}\npage errors: ${errors.join('\n')}\nJupyterLab log:\n${labLog}`);
    }

    // JupyterLab runs in Chinese (its File menu), and so does the overlay: it follows JupyterLab's language.
    assert.equal(await page.locator('.lm-MenuBar-itemLabel').first().innerText(), '文件');
    assert.equal(await page.locator(`${OUTPUT} .rs-toolbar legend`).innerText(), '视图');

    // The output as JupyterLab's notebook model holds it (what the kernel sent).
    const payload = await outputPayload(page);
    assert.equal(payload.masks.length, 2, 'the assistant prefix has two [SEG]s');
    // The answer as the overlay view writes it: the text with a numbered chip per [SEG].
    const flat = (x: string) => x.replace(/\[SEG\]\d*/g, '[SEG]').replace(/\s+/g, '');
    const shownText = await page.locator(`${OUTPUT} .rs-text`).innerText();
    assert.match(payload.text, /^\s*Sure, \[SEG\] and \[SEG\]/);
    assert.equal(flat(shownText), flat(payload.text), 'the output shows the answer text');
    // Both masks are listed and drawn: the overlay canvas is opaque exactly on the union of the masks.
    assert.equal(await page.locator(`${OUTPUT} .rs-mask`).count(), 2);
    await expectOverlay(page, payload.masks, 'as the cell showed it');

    // Refine mask 1: its Refine button (in Chinese), then a click on the picture, a positive point there. The
    // renderer asks the kernel through its comm, the magic asks the host, and the mask drawn is the new one.
    const refineButton = page.locator(`${OUTPUT} .rs-mask[data-mask="0"] button`).first();
    assert.equal(await refineButton.innerText(), '细化');
    await refineButton.click();
    const stage = page.locator(`${OUTPUT} .rs-stage[data-refine-mask="0"]`);
    await stage.scrollIntoViewIfNeeded();
    const box = (await stage.boundingBox())!;
    const [h, w] = payload.masks[0].rle.size;
    const at = { x: (w * 2) / 5, y: (h * 9) / 20 }; // image pixels, where the refine goldens click (239.6, 179.6)
    await page.mouse.click(box.x + (at.x * box.width) / w, box.y + (at.y * box.height) / h);
    await waitRefined(page, true);
    await page.waitForSelector(`${OUTPUT} .rs-stage[data-refine="done"]`);
    const refined = await outputPayload(page);
    const mask = refined.masks[0];
    assert.equal(mask.refined?.points.length, 1);
    assert.deepEqual(mask.refined?.labels, [1]);
    assert.ok(Math.abs(mask.refined!.points[0][0] - at.x) <= 1 && Math.abs(mask.refined!.points[0][1] - at.y) <= 1);
    assert.notEqual(mask.rle.counts, payload.masks[0].rle.counts, 'the click changed the mask');
    assert.deepEqual(refined.masks[1], payload.masks[1], 'the other mask is untouched');
    await expectOverlay(page, refined.masks, 'after the click');
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, 'jupyterlab-refine.png') });

    // Undo (Chinese 撤销) restores the model's mask, in the picture and in the output; redo brings the refined back.
    const bar = page.locator(`${OUTPUT} .rs-refine`);
    await bar.locator('button', { hasText: '撤销' }).click();
    await waitRefined(page, false);
    assert.deepEqual((await outputPayload(page)).masks, payload.masks);
    await expectOverlay(page, payload.masks, 'after undo');
    await bar.locator('button', { hasText: '重做' }).click();
    await waitRefined(page, true);
    await expectOverlay(page, refined.masks, 'after redo');

    // The kernel's answer to the renderer's 'set' rewrites the output's text too; then save: the notebook file keeps
    // the refined mask, marked with its point, and the text says it is refined.
    await page.waitForFunction(
      () => {
        const out = (window as any).jupyterapp.shell.currentWidget.content.model.cells.get(1).outputs.get(0);
        return String(out.data['text/plain']).includes('refined');
      },
      undefined,
      { timeout: 120_000 },
    );
    await page.evaluate(() => (window as any).jupyterapp.commands.execute('docmanager:save'));
    await page.waitForFunction(() => !(window as any).jupyterapp.shell.currentWidget.context.model.dirty, undefined, {
      timeout: 60_000,
    });
    const saved = JSON.parse(readFileSync(path.join(work, 'segment.ipynb'), 'utf8'));
    const data = saved.cells[1].outputs.find((o: { data?: object }) => o.data && RESULT_MIME in o.data).data;
    assert.deepEqual(data[RESULT_MIME].masks, refined.masks);
    // nbformat writes multi-line strings as lists of lines.
    const text = (v: string | string[]) => (Array.isArray(v) ? v.join('') : v);
    assert.match(text(data['text/plain']), /\[SEG\] 0: .*\(refined: 1 positive point\(s\)\)/);
    assert.match(text(data['text/markdown']), /before refining/);
    assert.deepEqual(errors, []);

    await page.screenshot({ path: path.join(SHOTS, 'jupyterlab.png') });
  });
});
