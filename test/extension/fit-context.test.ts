// A follow-up on a conversation longer than the model's context, against the real host with the tiny bundle: the
// oldest turns are left out until the host accepts it, and exactly as many as needed.
import * as assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { askWithinContext } from '../../src/extension/fitContext';
import type { ChatTurn } from '../../src/protocol/chat';
import { Methods, RpcErrorCode } from '../../src/protocol/rpc';
import { FIXTURE_BUNDLES } from '../helpers/bundles';
import { HostClient } from '../helpers/host-client';

const BUNDLE = path.join(FIXTURE_BUNDLES, 'tiny-7b');
const CHELSEA = path.join(BUNDLE, 'images', 'chelsea.png');
const tooLong = (e: unknown) => (e as { code?: number }).code === RpcErrorCode.PromptTooLong;

describe('extension: a follow-up that overflows the context', function () {
  this.timeout(300_000);
  let host: HostClient;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'rs-fit-'));
  const ask = (history: ChatTurn[], prompt = 'And the tail?') =>
    host.request(Methods.segment, { image: { path: CHELSEA }, prompt, history, maxNewTokens: 2 });

  before(async () => {
    host = await HostClient.start({ XDG_CACHE_HOME: tmp });
    await host.request(Methods.loadModel, { bundle: BUNDLE, device: 'cpu' });
  });
  after(async () => {
    await host?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  it('leaves out the oldest turns, no more than needed, and says how many', async () => {
    const history: ChatTurn[] = Array.from({ length: 12 }, (_, i) => ({
      user: `Turn ${i}: describe the cat's fur, whiskers and ears in detail. `.repeat(6),
      assistant: `The cat in turn ${i} has striped grey fur and long white whiskers. `.repeat(6),
    }));
    await assert.rejects(ask(history), (e) => tooLong(e), 'the whole conversation must overflow the tiny context');
    const { result, trimmed } = await askWithinContext(history, (h) => ask(h), tooLong);
    assert.ok(trimmed > 0 && trimmed < history.length, `trimmed ${trimmed}`);
    assert.deepEqual(result.history, history.slice(trimmed), 'the newest turns are the ones kept');
    await assert.rejects(ask(history.slice(trimmed - 1)), (e) => tooLong(e), 'one turn fewer left out would not fit');
  });

  it('passes other errors through, and too long with no history left', async () => {
    await assert.rejects(
      askWithinContext([], (h) => ask(h, 'segment the cat '.repeat(5000)), tooLong),
      (e) => tooLong(e),
    );
    await assert.rejects(
      askWithinContext([{ user: 'a', assistant: 'b' }], () => Promise.reject(new Error('other')), tooLong),
      /other/,
    );
  });
});
