// A real VS Code for the end-to-end test: code-server 4.139.1 (VS Code 1.139) installed once per machine by
// install-code-server.sh, started on 127.0.0.1 with a fresh user-data and extensions folder, driven by Debian's
// Chromium through playwright-core.
import * as assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  type Dirent,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { type BrowserContext, chromium, type Frame, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, ROOT } from '../browser/harness';

/** Runs the install script (fast when cached); returns the launcher path, or throws with the script's output. */
export function installCodeServer(): string {
  const out = execFileSync('bash', [path.join(ROOT, 'test/e2e/install-code-server.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 15 * 60_000,
  });
  const bin = out.trim().split('\n').pop()!;
  if (!existsSync(bin)) throw new Error(`install-code-server.sh printed ${bin}, which does not exist`);
  return bin;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface CodeServer {
  url: string;
  workspace: string;
  userDataDir: string;
  child: ChildProcess;
  log: () => string;
  stop(): Promise<void>;
}

export function installExtension(
  bin: string,
  vsix: string,
  dirs: { userDataDir: string; extensionsDir: string },
): string {
  return execFileSync(
    bin,
    [
      '--user-data-dir',
      dirs.userDataDir,
      '--extensions-dir',
      dirs.extensionsDir,
      '--install-extension',
      vsix,
      '--force',
    ],
    { encoding: 'utf8', timeout: 180_000 },
  );
}

/** What every e2e workbench runs with: no trust prompt, start page, tips, updates, experiments or telemetry. */
const QUIET_WORKBENCH = {
  'security.workspace.trust.enabled': false,
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'extensions.autoCheckUpdates': false,
  'extensions.autoUpdate': false,
  'telemetry.telemetryLevel': 'off',
  'workbench.enableExperiments': false,
  'update.mode': 'none',
};

export async function startCodeServer(
  bin: string,
  opts: { workspace: string; userDataDir: string; extensionsDir: string; settings: Record<string, unknown> },
): Promise<CodeServer> {
  // code-server is a remote window: machine-scoped settings (reasonSegment.model is one, a path on the host's
  // machine) are read from the Machine settings, the rest from the User settings. Both get the same file.
  lastSeq = 0; // a new window's extension numbers its statuses from 1 again
  statusRoot = opts.userDataDir;
  for (const scope of ['User', 'Machine']) {
    mkdirSync(path.join(opts.userDataDir, scope), { recursive: true });
    writeFileSync(
      path.join(opts.userDataDir, scope, 'settings.json'),
      JSON.stringify({ ...QUIET_WORKBENCH, ...opts.settings }, null, 2),
    );
  }
  const port = await freePort();
  let log = '';
  const child = spawn(
    bin,
    [
      '--auth',
      'none',
      '--bind-addr',
      `127.0.0.1:${port}`,
      '--user-data-dir',
      opts.userDataDir,
      '--extensions-dir',
      opts.extensionsDir,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      opts.workspace,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VSCODE_PROXY_URI: '' }, detached: true },
  );
  child.stdout!.on('data', (d) => {
    log += d;
  });
  child.stderr!.on('data', (d) => {
    log += d;
  });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`code-server exited (${child.exitCode}):\n${log}`);
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`code-server did not answer /healthz in 60 s:\n${log}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return {
    url,
    workspace: opts.workspace,
    userDataDir: opts.userDataDir,
    child,
    log: () => log,
    async stop() {
      if (child.exitCode === null && child.pid) {
        const exited = new Promise((r) => child.once('exit', r));
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          /* gone */
        }
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) {
          try {
            process.kill(-child.pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }
    },
  };
}

export async function launchBrowser(): Promise<{ context: BrowserContext; page: Page; close(): Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rs-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1400, height: 900 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    async close() {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The chat panel's inner webview frame (the one holding the app's #root). */
export function chatFrame(page: Page, timeoutMs = 60_000): Promise<Frame> {
  return webviewFrame(page, 'chat', timeoutMs);
}

/** The results panel's inner webview frame (src/webview/result.ts, in the editor area). */
export function resultFrame(page: Page, timeoutMs = 60_000): Promise<Frame> {
  return webviewFrame(page, 'result', timeoutMs);
}

/** The inner frame of one of the extension's webviews: its page's `reason-segment-view` meta says which. */
async function webviewFrame(page: Page, kind: 'chat' | 'result', timeoutMs: number): Promise<Frame> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const f of page.frames()) {
      if (f === page.mainFrame()) continue;
      try {
        if (
          await f.evaluate(
            () =>
              !!document.querySelector('#root [aria-label="Reason Segment chat"]') || !!document.querySelector('#root'),
          )
        ) {
          const view = await f.evaluate(() =>
            document.querySelector('meta[name="reason-segment-nonce"]')
              ? (document.querySelector<HTMLMetaElement>('meta[name="reason-segment-view"]')?.content ?? 'chat')
              : undefined,
          );
          if (view === kind) return f;
        }
      } catch {
        /* detached or cross-origin not ready */
      }
    }
    if (Date.now() > deadline) throw new Error(`the ${kind} webview did not appear`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Whether a step finished within its own timeout (a failed step is retried by the caller, not thrown). */
const within = (p: Promise<unknown>) =>
  p.then(
    () => true,
    () => false,
  );

/**
 * Runs a command through the command palette (F1 + its title). An extension's commands join the palette only once the
 * extension host has read the manifests, and an open palette does not refresh its list: reopen it until the row shows.
 */
export async function runCommand(page: Page, title: string, timeoutMs = 90_000): Promise<void> {
  const input = page.locator('.quick-input-widget input');
  const row = page.locator('.quick-input-widget .monaco-list-row', { hasText: title }).first();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await page.keyboard.press('Escape'); // a menu or widget left open would make the palette inert
    await page.keyboard.press('F1');
    // The palette can close under us (focus taken by a toast or a webview settling) and come back inert or hidden:
    // every step gets a short timeout, and a failed one opens the palette afresh instead of waiting out the action's.
    if (
      (await within(input.waitFor({ state: 'visible', timeout: 5000 }))) &&
      (await within(input.fill(`>${title}`, { timeout: 5000 }))) &&
      (await within(row.waitFor({ state: 'visible', timeout: 5000 }))) &&
      (await within(input.press('Enter', { timeout: 5000 })))
    )
      return;
    if (Date.now() > deadline) {
      const dialog = await page.locator('.monaco-dialog-box').allInnerTexts();
      throw new Error(
        `the command palette did not run "${title}"${dialog.length ? `; a dialog is open: ${dialog}` : ''}`,
      );
    }
  }
}

/** Text of the visible output channel editor (the Output panel). */
export async function outputText(page: Page): Promise<string> {
  return page.evaluate(() => {
    const ed = document.querySelector(
      '.part.panel .output-view .view-lines, .part.panel .monaco-editor .view-lines',
    ) as HTMLElement | null;
    if (!ed) return '';
    // Monaco positions lines absolutely and wraps long ones: order by position and join without separators.
    const lines = Array.from(ed.querySelectorAll('.view-line')) as HTMLElement[];
    lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
    return lines.map((l) => l.textContent.replace(/\u00a0/g, ' ')).join('');
  });
}

/** The .vsix to test: $REASON_SEGMENT_VSIX, or one packed for linux-x64 into outDir. */
export function buildVsix(outDir: string): string {
  if (process.env.REASON_SEGMENT_VSIX) return path.resolve(process.env.REASON_SEGMENT_VSIX);
  execFileSync(
    process.execPath,
    [path.join(ROOT, 'src/extension/package.mjs'), '--target', 'linux-x64', '--out', outDir],
    { cwd: ROOT, stdio: 'pipe', timeout: 300_000 },
  );
  const pkg = require(path.join(ROOT, 'package.json'));
  return path.join(outDir, `${pkg.name}-${pkg.version}-linux-x64.vsix`);
}

/**
 * Accepts VS Code's save dialog with `file` and waits until the file is written. code-server's dialog is a quick input
 * holding the path, with an OK button (the saveLabel is not shown there). Each step gets a short timeout and is retried,
 * as in runCommand; what the dialog showed goes into the error if the file never comes.
 */
export async function acceptSaveDialog(page: Page, file: string, timeoutMs = 60_000): Promise<void> {
  const widget = page.locator('.quick-input-widget');
  const input = widget.locator('input');
  const accept = widget.locator('.monaco-button:visible', { hasText: /^(OK|Save)$/ }).first();
  await input.waitFor({ state: 'visible', timeout: 30_000 });
  const deadline = Date.now() + timeoutMs;
  const written = async (ms: number) => {
    for (const end = Date.now() + ms; Date.now() < end; await page.waitForTimeout(200))
      if (existsSync(file)) return true;
    return existsSync(file);
  };
  while (Date.now() < deadline) {
    if (await within(input.waitFor({ state: 'visible', timeout: 2000 }))) {
      if ((await input.inputValue({ timeout: 2000 }).catch(() => '')) !== file)
        await within(input.fill(file, { timeout: 5000 }));
      await page.waitForTimeout(300); // the dialog checks a typed path before it accepts it
      if (!(await within(accept.click({ timeout: 3000 })))) await within(input.press('Enter', { timeout: 3000 }));
    }
    if (await written(5000)) return;
  }
  const shown = await widget.innerText({ timeout: 2000 }).catch(() => '(no dialog)');
  const value = await input.inputValue({ timeout: 2000 }).catch(() => '(none)');
  throw new Error(`the save dialog did not write ${file}; it shows ${JSON.stringify(shown)}, its path ${value}`);
}

let lastSeq = 0;
let statusRoot = '';

/** The newest host-status.json under `dir` (the extension writes it into its log folder, context.logUri). */
function newestStatusFile(dir: string): string | undefined {
  let best: { file: string; mtime: number } | undefined;
  const walk = (d: string) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return; // removed while we looked (a lock or temporary file's folder)
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === 'host-status.json') {
        const mtime = statSync(p).mtimeMs;
        if (!best || mtime > best.mtime) best = { file: p, mtime };
      }
    }
  };
  walk(dir);
  return best?.file;
}

/**
 * Runs "Reason Segment: Show Host Status" and returns what it wrote as data (host-status.json in the extension's log
 * folder: seq, hostState, starts, activationMs, status), with the rows of the quick pick it showed the user (`rows`,
 * label and detail of each). Closes the quick pick.
 */
export async function hostStatus(page: Page): Promise<any> {
  await runCommand(page, 'Reason Segment: Show Host Status');
  const deadline = Date.now() + 20_000;
  for (;;) {
    const file = newestStatusFile(statusRoot);
    const s = file ? JSON.parse(readFileSync(file, 'utf8')) : undefined;
    if (s && s.seq > lastSeq) {
      lastSeq = s.seq;
      // The status's own rows (the palette that ran the command may still be closing).
      await page
        .locator('.quick-input-widget .monaco-list-row', { hasText: /Host: \w/ })
        .first()
        .waitFor({ timeout: 10_000 });
      const shown = await page.locator('.quick-input-widget .monaco-list-row').allInnerTexts();
      await page.keyboard.press('Escape');
      return { ...s, rows: shown };
    }
    if (Date.now() > deadline) throw new Error(`no new host-status.json under ${statusRoot} (last seq ${lastSeq})`);
    await page.waitForTimeout(250);
  }
}

/** The chat panel's turns as shown. */
export async function turns(frame: Frame): Promise<{ status: string; prompt: string; answer: string }[]> {
  return frame.evaluate(() =>
    Array.from(document.querySelectorAll('li.rs-turn')).map((li) => ({
      status: (li as HTMLElement).dataset.status ?? '',
      prompt: li.querySelector('.rs-user .rs-msg')?.textContent ?? '',
      answer: li.querySelector('.rs-assistant')?.textContent ?? '',
    })),
  );
}

/** Types a prompt into the chat panel and sends it. */
export async function ask(frame: Frame, prompt: string): Promise<void> {
  const input = frame.locator('textarea').first();
  await input.fill(prompt);
  await frame.locator('button', { hasText: /^Send$/ }).click();
}

/** The first answered turn's overlay canvas is drawn (some opaque pixel). */
export async function expectOverlayDrawn(frame: Frame): Promise<void> {
  const canvas = frame.locator('li.rs-turn[data-status="done"] .rs-result canvas').first();
  await canvas.waitFor({ timeout: 30_000 });
  const drawn = await canvas.evaluate((c: HTMLCanvasElement) => {
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return { w: c.width, h: c.height, opaque: n };
  });
  assert.ok(drawn.w > 0 && drawn.opaque > 0, `overlay canvas is empty: ${JSON.stringify(drawn)}`);
}
