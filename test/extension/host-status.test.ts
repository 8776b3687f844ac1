// "Show Host Status" reads as short labelled items (the quick pick's rows), from the real host's status answer before
// and after a model is loaded, in English and with the Chinese translations the extension ships.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatHostStatus } from '../../src/extension/hostStatus';
import { Methods } from '../../src/protocol/rpc';
import { FIXTURE_BUNDLES } from '../helpers/bundles';
import { HostClient } from '../helpers/host-client';
import { en, zh } from '../helpers/l10n';

const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');

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

  it('formats the real status as short labelled items without JSON, in English and Chinese', async () => {
    const idle = await host.request(Methods.status, undefined);
    assert.deepEqual(formatHostStatus({ hostState: 'running', starts: 1, status: idle }, en)[1], {
      label: 'Model: none loaded yet',
      detail: 'It loads on the first question.',
    });
    await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cpu' });
    await host.request(Methods.segment, {
      image: { path: path.join(BUNDLE, 'images', 'chelsea.png') },
      prompt: 'Hi',
      history: [],
      maxNewTokens: 1,
    });
    const s = await host.request(Methods.status, undefined);
    const items = formatHostStatus({ hostState: 'running', starts: 2, status: s }, en);
    assert.equal(items.length, 3);
    assert.equal(items[0].label, `Host: ${s.state}`);
    assert.match(
      items[0].detail,
      new RegExp(`^process ${s.pid} · up \\d+\\.\\d s · started 2 time\\(s\\) in this window$`),
    );
    assert.deepEqual(items[1], {
      label: `Model: ${s.model!.variant} on cpu`,
      detail: `${s.model!.layers} layers · context ${s.model!.contextLength} tokens · ${BUNDLE}`,
    });
    assert.equal(items[2].label, 'Answers: 1');
    assert.match(
      items[2].detail,
      /^image encoder runs: CLIP 1, SAM 1 · image decodes 1 · cache hits 0 · \d+\.\d MB cached$/,
    );
    for (const i of items) assert.doesNotMatch(`${i.label} ${i.detail}`, /[{}"]/, 'no JSON');
    const zhItems = formatHostStatus({ hostState: 'running', starts: 2, status: s }, zh);
    assert.ok(
      zhItems.every((i) => /[\u4e00-\u9fff]/.test(i.label) && /[\u4e00-\u9fff]/.test(i.detail)),
      JSON.stringify(zhItems),
    );
    const stopped = formatHostStatus({ hostState: 'stopped', starts: 0, status: undefined }, zh);
    assert.equal(stopped.length, 1);
    assert.match(stopped[0].detail, /[\u4e00-\u9fff]/);
    assert.match(
      formatHostStatus({ hostState: 'crashed', starts: 1, status: { error: 'gone' } }, zh)[0].detail,
      /gone/,
    );
  });
});
