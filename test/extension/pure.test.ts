// The extension's pure parts in plain Node (no VS Code): settings, notebook JSON, the %%segment install line, and the
// manifest/l10n consistency that VS Code itself would only reveal at run time.
import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { kernelEnvironment, pipInstallCommand } from '../../src/extension/kernelEnv';
import { buildNotebook, segmentCellSource, sourceLines } from '../../src/extension/notebook';
import { encodePng } from '../../src/extension/notebookPng';
import {
  DEFAULTS,
  isImagePath,
  isInside,
  pushRecent,
  readSettings,
  resolveModelPath,
} from '../../src/extension/settings';
import { RESULT_MIME, type SegmentResult } from '../../src/protocol/result';
import { errorInfo, errorMessage, RpcErrorCode } from '../../src/protocol/rpc';

const ROOT = path.resolve(__dirname, '../../..');
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));

describe('extension: settings', () => {
  it('reads defaults, clamps numbers and rejects unknown enum values', () => {
    assert.deepEqual(
      readSettings(() => undefined),
      DEFAULTS,
    );
    const s = readSettings(
      (k) =>
        (
          ({
            device: 'tpu',
            maxNewTokens: 1e9,
            overlayOpacity: -1,
            openResultsIn: 'notebook',
            model: ' /m ',
            cacheSizeMB: '64',
            models: ['/a', '/a', 3, ''],
          }) as Record<string, unknown>
        )[k],
    );
    assert.equal(s.device, 'auto');
    assert.equal(s.maxNewTokens, 4096);
    assert.equal(s.overlayOpacity, 0);
    assert.equal(s.openResultsIn, 'notebook');
    assert.equal(s.model, '/m');
    assert.equal(s.cacheSizeMB, 64);
    assert.deepEqual(s.models, ['/a']);
  });

  it('every contributed setting has a default equal to the parser default', () => {
    const props = pkg.contributes.configuration.properties as Record<string, { default: unknown }>;
    for (const [key, value] of Object.entries(DEFAULTS)) {
      const p = props[`reasonSegment.${key}`];
      assert.ok(p, `reasonSegment.${key} is not contributed`);
      assert.deepEqual(p.default, value, key);
    }
    assert.equal(Object.keys(props).length, Object.keys(DEFAULTS).length);
  });

  it('resolves the model path (~, absolute, workspace-relative) and checks containment', () => {
    assert.equal(resolveModelPath('~/m', '/home/u', undefined, path.join, path.isAbsolute), '/home/u/m');
    assert.equal(resolveModelPath('/abs', '/home/u', '/ws', path.join, path.isAbsolute), '/abs');
    assert.equal(resolveModelPath('models/x', '/home/u', '/ws', path.join, path.isAbsolute), '/ws/models/x');
    assert.equal(resolveModelPath('models/x', '/home/u', undefined, path.join, path.isAbsolute), undefined);
    assert.equal(resolveModelPath('', '/home/u', '/ws', path.join, path.isAbsolute), undefined);
    assert.ok(isInside('/ws/m', '/ws'));
    assert.ok(isInside('/ws', '/ws'));
    assert.ok(!isInside('/ws2/m', '/ws'));
  });

  it('keeps recent instructions most recent first, unique, bounded', () => {
    let r: string[] = [];
    for (const x of ['a', 'b', 'a', ' ', 'c']) r = pushRecent(r, x, 2);
    assert.deepEqual(r, ['c', 'a']);
  });

  it('knows the image types of the menus', () => {
    for (const f of ['a.png', 'b.JPG', 'c.jpeg', 'd.webp', 'e.bmp', 'f.gif', 'g.tif', 'h.TIFF'])
      assert.ok(isImagePath(f), f);
    for (const f of ['a.txt', 'png', 'a.png.zip']) assert.ok(!isImagePath(f), f);
    const when: string = pkg.contributes.menus['explorer/context'][0].when;
    for (const e of ['png', 'jpg', 'jpeg', 'webp', 'bmp', 'gif', 'tif', 'tiff'])
      assert.ok(when.includes(`resourceExtname == .${e}`), e);
  });
});

describe('extension: notebook export JSON', () => {
  const payload = JSON.parse(
    readFileSync(path.join(ROOT, 'test/fixtures/payloads/astronaut-3masks.json'), 'utf8'),
  ) as SegmentResult;

  it('builds nbformat 4.5 with the result MIME type, image/png and text/plain in each output', () => {
    const png = encodePng({ w: 2, h: 1, px: Uint8Array.of(255, 0, 0, 0, 0, 255) }).toString('base64');
    const withOverlay = { ...payload, overlayPng: png };
    const nb = buildNotebook({ image: '/data/shots/my photo.png', model: '/m', notebookDir: '/data' }, [
      { prompt: 'the astronaut', result: withOverlay },
      { prompt: 'stopped one', error: 'Stopped.' },
      { prompt: 'and the helmet?', result: withOverlay },
    ]) as any;
    assert.equal(nb.nbformat, 4);
    assert.equal(nb.nbformat_minor, 5);
    assert.deepEqual(
      nb.cells.map((c: any) => c.cell_type),
      ['markdown', 'code', 'code', 'markdown', 'code'],
    );
    assert.equal(
      nb.cells[1].source.join(''),
      '%load_ext reason_segment\n%segment_config --model /m',
      'runs in a fresh kernel',
    );
    const code = nb.cells[2];
    assert.equal(
      code.source.join(''),
      '%%segment "shots/my photo.png"\nthe astronaut',
      'the image relative to the notebook',
    );
    assert.equal(
      nb.cells[4].source.join(''),
      '%%segment_followup\nand the helmet?',
      'a later turn continues the conversation',
    );
    assert.match(nb.cells[3].source.join(''), /Stopped\./);
    const out = code.outputs[0];
    assert.equal(out.output_type, 'display_data');
    assert.deepEqual(out.data[RESULT_MIME], payload, 'the payload without the full-size overlay');
    assert.equal(out.data['image/png'], png, 'a small overlay stays as it is');
    assert.equal(out.data['text/plain'].join(''), payload.text);
    for (const c of nb.cells) assert.match(c.id, /^[A-Za-z0-9-_]{1,64}$/);
    assert.equal(new Set(nb.cells.map((c: any) => c.id)).size, 5);
    JSON.parse(JSON.stringify(nb));
  });

  it('splits sources like nbformat and quotes image paths only when needed', () => {
    assert.deepEqual(sourceLines('a\nb\n'), ['a\n', 'b\n']);
    assert.deepEqual(sourceLines(''), []);
    assert.equal(segmentCellSource('/x/y.png', 'p'), '%%segment /x/y.png\np');
  });
});

describe('extension: %%segment enabling', () => {
  it('points the magic at the host and a Node', () => {
    const env = kernelEnvironment('/ext', '/usr/bin/node', false);
    assert.deepEqual(env, { REASON_SEGMENT_HOST: '/ext/out/src/host/server.js', REASON_SEGMENT_NODE: '/usr/bin/node' });
    assert.equal(kernelEnvironment('/ext', '/code', true).REASON_SEGMENT_NODE_ENV, 'ELECTRON_RUN_AS_NODE=1');
  });

  it('quotes the pip line for POSIX shells and PowerShell', () => {
    assert.equal(
      pipInstallCommand('/v/bin/python', "/ext dir/it's/src/kernel", false),
      `'/v/bin/python' -m pip install --upgrade '/ext dir/it'\\''s/src/kernel'`,
    );
    assert.equal(
      pipInstallCommand('C:\\py\\python.exe', 'C:\\ext\\src\\kernel', true),
      '& "C:\\py\\python.exe" -m pip install --upgrade "C:\\ext\\src\\kernel"',
    );
  });
});

describe('extension: manifest and translations', () => {
  const nls = JSON.parse(readFileSync(path.join(ROOT, 'package.nls.json'), 'utf8'));
  const zh = JSON.parse(readFileSync(path.join(ROOT, 'package.nls.zh-cn.json'), 'utf8'));
  const bundle = JSON.parse(readFileSync(path.join(ROOT, 'l10n/bundle.l10n.zh-cn.json'), 'utf8'));
  const sources = readdirSync(path.join(ROOT, 'src/extension'))
    .filter((f) => f.endsWith('.ts'))
    .map((f) => readFileSync(path.join(ROOT, 'src/extension', f), 'utf8'));

  it("the view is not named like VS Code's own Chat, and the image preview's title button has a text label", () => {
    for (const t of [nls, zh]) assert.ok(!/^(chat|对话|聊天)$/i.test(t['view.chat'].trim()), t['view.chat']);
    const titleButtons = pkg.contributes.menus['editor/title'] as { command: string }[];
    assert.ok(titleButtons.length > 0);
    for (const b of titleButtons) {
      const c = (pkg.contributes.commands as { command: string; icon?: string; title: string }[]).find(
        (x) => x.command === b.command,
      )!;
      assert.equal(c.icon, undefined, `${b.command} would show as an unlabelled icon in the editor title bar`);
      assert.ok(nls[c.title.slice(1, -1)], c.title);
    }
  });

  it('host errors read in Chinese: every error title and hint has a translation the extension applies', () => {
    const zhT = (s: string) => bundle[s] ?? s;
    for (const code of Object.values(RpcErrorCode)) {
      const info = errorInfo(code);
      for (const s of [info.title, info.hint])
        assert.ok(typeof bundle[s] === 'string', `l10n/bundle.l10n.zh-cn.json lacks ${JSON.stringify(s)}`);
    }
    assert.equal(
      errorMessage(RpcErrorCode.ImageUnreadable, 'cat.jpg is truncated.', zhT),
      `${bundle['The image could not be read']}: cat.jpg is truncated. ${bundle[errorInfo(RpcErrorCode.ImageUnreadable).hint]}`,
    );
    assert.equal(
      errorMessage(RpcErrorCode.ImageUnreadable, 'x'),
      `The image could not be read: x. ${errorInfo(RpcErrorCode.ImageUnreadable).hint}`,
    );
  });

  it('every %key% of package.json has English and Chinese text', () => {
    const keys = [...JSON.stringify(pkg).matchAll(/"%([\w.]+)%"/g)].map((m) => m[1]);
    assert.ok(keys.length > 30);
    for (const k of keys) {
      assert.ok(typeof nls[k] === 'string', `package.nls.json lacks ${k}`);
      assert.ok(typeof zh[k] === 'string', `package.nls.zh-cn.json lacks ${k}`);
    }
    assert.deepEqual(Object.keys(zh).sort(), Object.keys(nls).sort());
  });

  it('every vscode.l10n.t string has a Chinese translation with the same placeholders', () => {
    const strings = new Set<string>();
    for (const s of sources)
      for (const m of s.matchAll(/l10n\.t\(\s*'((?:[^'\\]|\\.)*)'/g)) strings.add(m[1].replace(/\\'/g, "'"));
    assert.ok(strings.size > 40);
    for (const s of strings) {
      assert.ok(typeof bundle[s] === 'string', `l10n/bundle.l10n.zh-cn.json lacks ${JSON.stringify(s)}`);
      const ph = (x: string) =>
        [...x.matchAll(/\{\d+\}/g)]
          .map((m) => m[0])
          .sort()
          .join();
      assert.equal(ph(bundle[s]), ph(s), s);
    }
  });

  it('contributes the renderer, view, commands and trust/kind declarations the code relies on', () => {
    const c = pkg.contributes;
    assert.deepEqual(c.notebookRenderer[0].mimeTypes, [RESULT_MIME]);
    assert.equal(c.notebookRenderer[0].id, 'reason-segment.renderer');
    assert.equal(c.notebookRenderer[0].entrypoint, './dist/renderer.js');
    assert.equal(c.views.reasonSegment[0].id, 'reasonSegment.chat');
    assert.equal(c.views.reasonSegment[0].type, 'webview');
    assert.deepEqual(pkg.extensionKind, ['workspace']);
    assert.equal(pkg.capabilities.untrustedWorkspaces.supported, 'limited');
    assert.ok(pkg.capabilities.untrustedWorkspaces.restrictedConfigurations.includes('reasonSegment.model'));
    const registered = new Set<string>();
    for (const s of sources) for (const m of s.matchAll(/cmd\('([\w.]+)'/g)) registered.add(m[1]);
    const contributed = new Set<string>(c.commands.map((x: { command: string }) => x.command));
    assert.deepEqual([...registered].sort(), [...contributed].sort());
    assert.equal(pkg.main, './dist/extension.js');
    assert.ok(!('activationEvents' in pkg) || !pkg.activationEvents.includes('*'), 'no eager activation');
  });
});
