// "Show Host Status" reads as sentences, from the real host's status answer before and after a model is loaded, in
// English and with the Chinese translations the extension ships.
import * as assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatHostStatus, type Translate } from '../../src/extension/hostStatus';
import { Methods } from '../../src/protocol/rpc';
import { FIXTURE_BUNDLES, REPO } from '../helpers/bundles';
import { HostClient } from '../helpers/host-client';

const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');
const ZH: Record<string, string> = JSON.parse(readFileSync(path.join(REPO, 'l10n/bundle.l10n.zh-cn.json'), 'utf8'));
const fill = (m: string, args: Array<string | number>) => m.replace(/\{(\d+)\}/g, (_, i) => String(args[Number(i)]));
const en: Translate = (m, ...a) => fill(m, a);
const zh: Translate = (m, ...a) => {
  assert.ok(ZH[m], `l10n/bundle.l10n.zh-cn.json lacks ${JSON.stringify(m)}`);
  return fill(ZH[m], a);
};

describe('extension: Show Host Status', function () {
  this.timeout(300_000);
  let host: HostClient;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-status-'));
  before(async () => {
    host = await HostClient.start({ XDG_CACHE_HOME: tmp });
  });
  after(async () => {
    await host?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('formats the real status as lines without JSON, in English and Chinese', async () => {
    const idle = await host.request(Methods.status, undefined);
    assert.match(formatHostStatus({ hostState: 'running', starts: 1, status: idle }, en)[1], /^Model: none loaded yet/);
    await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cpu' });
    await host.request(Methods.segment, {
      image: { path: path.join(BUNDLE, 'images', 'chelsea.png') },
      prompt: 'Hi',
      history: [],
      maxNewTokens: 1,
    });
    const s = await host.request(Methods.status, undefined);
    const lines = formatHostStatus({ hostState: 'running', starts: 2, status: s }, en);
    assert.equal(lines.length, 3);
    assert.match(lines[0], new RegExp(`^Host: ${s.state}, process ${s.pid}, up \\d+\\.\\d s, started 2 time\\(s\\)`));
    assert.equal(
      lines[1],
      `Model: ${s.model!.variant} on cpu, ${s.model!.layers} layers, context ${s.model!.contextLength} tokens, from ${BUNDLE}`,
    );
    assert.match(
      lines[2],
      /^Answers 1; image encoder runs: CLIP 1, SAM 1; image decodes 1; cache hits 0, \d+\.\d MB cached\.$/,
    );
    for (const l of lines) assert.doesNotMatch(l, /[{}"]/, 'no JSON');
    const zhLines = formatHostStatus({ hostState: 'running', starts: 2, status: s }, zh);
    assert.ok(
      zhLines.every((l) => /[\u4e00-\u9fff]/.test(l)),
      zhLines.join('\n'),
    );
    assert.match(formatHostStatus({ hostState: 'stopped', starts: 0, status: undefined }, zh)[0], /[\u4e00-\u9fff]/);
    assert.match(formatHostStatus({ hostState: 'crashed', starts: 1, status: { error: 'gone' } }, zh)[0], /gone/);
  });
});
