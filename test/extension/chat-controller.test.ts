// The chat's logic (src/extension/chatController.ts, which does not import vscode) driven directly, as the webview
// would drive it, against the real host process on the tiny bundle: turns and streaming, follow-ups by the cached
// image, stop and retry, context fitting, the no-model error, invalid messages, restoring stored state, the results
// panel's message, and the extension's Chinese messages.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { resultMessageOf } from '../../src/extension/chatController';
import type { ExtensionMessage, TurnDoneMessage, TurnFailedMessage } from '../../src/protocol/chat';
import { Methods, RpcErrorCode } from '../../src/protocol/rpc';
import { ChatBridge, IMAGES, readImage } from '../helpers/chat-bridge';

const CHELSEA = path.join(IMAGES, 'chelsea.png');

function last<T extends ExtensionMessage['type']>(b: ChatBridge, type: T) {
  return b.posted.filter((m) => m.type === type).at(-1) as Extract<ExtensionMessage, { type: T }> | undefined;
}

describe('extension: the chat controller on a real host', function () {
  this.timeout(300_000);
  let b: ChatBridge;

  before(async () => {
    b = new ChatBridge();
    await b.startHost();
  });
  after(async () => {
    await b?.dispose();
  });

  it('answers a first turn: streams, stores the result without the image bytes, tells the results panel', async () => {
    await b.receive({ type: 'ready' });
    assert.deepEqual(last(b, 'state'), {
      type: 'state',
      conversations: [],
      activeId: null,
      hostState: 'ready',
      model: b.model,
    });
    await b.receive({ type: 'setImage', path: CHELSEA });
    const c = b.active()!;
    assert.equal(c.image?.name, 'chelsea.png');
    const followed: string[] = [];
    const sub = b.controller.onTurnDone((_c, t) => followed.push(t.id));
    b.maxNewTokens = 12;
    await b.receive({ type: 'ask', conversationId: c.id, prompt: 'What is in this picture?' });
    sub.dispose();
    const done = last(b, 'turnDone') as TurnDoneMessage;
    const deltas = b.posted.filter((m) => m.type === 'textDelta' && m.turnId === done.turnId);
    assert.ok(deltas.length >= 2, 'the answer streamed');
    assert.equal(done.result.answer, b.results.at(-1)!.answer);
    assert.equal(done.result.image.data, undefined, 'image bytes are not stored in the result');
    assert.deepEqual(followed, [done.turnId]);
    const stored = b.stored!.conversations.find((x) => x.id === c.id)!;
    assert.equal(stored.turns[0].status, 'done');
    assert.equal(stored.turns[0].answer, done.result.answer);
    assert.equal(last(b, 'hostState')?.hostState, 'ready', 'busy while answering, ready after');
    // The results panel gets the result with the image's bytes.
    const m = resultMessageOf(c, done.turnId, readImage(CHELSEA))!;
    assert.equal(m.result.image.data, readImage(CHELSEA).data);
    assert.deepEqual([m.turnIndex, m.turnCount, m.prompt], [1, 1, 'What is in this picture?']);
  });

  it('a follow-up sends the history, names the image by its hash, and runs no image encoder', async () => {
    const c = b.active()!;
    const before = (await b.host.request(Methods.status, undefined)).counters;
    b.maxNewTokens = 6;
    await b.receive({ type: 'ask', conversationId: c.id, prompt: 'And its nose?' });
    assert.deepEqual(b.forwardedHistories.at(-1), [{ user: 'What is in this picture?', assistant: c.turns[0].answer }]);
    const after = (await b.host.request(Methods.status, undefined)).counters;
    assert.equal(after.visionEncoderRuns, before.visionEncoderRuns);
    assert.equal(after.samEncoderRuns, before.samEncoderRuns);
    assert.equal(after.imageDecodes, before.imageDecodes);
    assert.equal(b.results.at(-1)!.timings.cacheHit, true);
  });

  it('stop cancels the running turn; Retry replaces it', async () => {
    const c = b.active()!;
    b.maxNewTokens = 300;
    const asked = b.receive({ type: 'ask', conversationId: c.id, prompt: 'Tell me everything.' });
    while (!b.posted.some((m) => m.type === 'textDelta' && m.turnId === c.turns.at(-1)!.id))
      await new Promise((r) => setTimeout(r, 20));
    await b.receive({ type: 'stop', conversationId: c.id });
    await asked;
    const failed = last(b, 'turnFailed') as TurnFailedMessage;
    assert.deepEqual([failed.cancelled, failed.message], [true, 'Stopped.']);
    assert.equal(c.turns.at(-1)!.status, 'cancelled');
    const n = c.turns.length;
    b.maxNewTokens = 4;
    await b.receive({ type: 'ask', conversationId: c.id, prompt: 'Tell me everything.', retryOf: failed.turnId });
    assert.equal(c.turns.length, n, 'the retried turn replaced the stopped one');
    assert.equal(c.turns.at(-1)!.status, 'done');
    assert.ok(!c.turns.some((t) => t.id === failed.turnId));
  });

  it('leaves out the oldest turns to fit the context; an instruction too long alone gets no Retry', async () => {
    const c = b.active()!;
    c.turns.unshift(
      ...Array.from({ length: 12 }, (_, i) => ({
        id: `long${i}`,
        status: 'done' as const,
        prompt: `Turn ${i}: describe the cat's fur, whiskers and ears in detail. `.repeat(6),
        answer: `The cat in turn ${i} has striped grey fur and long white whiskers. `.repeat(6),
      })),
    );
    b.maxNewTokens = 2;
    await b.receive({ type: 'ask', conversationId: c.id, prompt: 'And its tail?' });
    const done = last(b, 'turnDone') as TurnDoneMessage;
    assert.ok(done.trimmed && done.trimmed > 0, `trimmed ${done.trimmed}`);
    assert.equal(c.turns.at(-1)!.trimmed, done.trimmed);
    await b.receive({ type: 'ask', conversationId: c.id, prompt: 'segment the cat '.repeat(3000) });
    const failed = last(b, 'turnFailed') as TurnFailedMessage;
    assert.equal(failed.retryable, false);
    assert.equal(
      failed.message,
      "This instruction does not fit in the model's context even without the earlier turns: shorten it.",
    );
  });

  it('ignores invalid messages, refuses a file that is not an image, opens a result beside', async () => {
    const n = b.posted.length;
    await b.receive({ type: 'ask', conversationId: 42, prompt: 'x' });
    await b.receive({ type: 'nonsense' });
    assert.equal(b.posted.length, n, 'nothing answered');
    assert.equal(b.rejected.length, 2);
    await b.receive({ type: 'setImage', path: path.join(IMAGES, '..', 'lisa.manifest.json') });
    assert.match(b.notifications.at(-1)!.message, /lisa\.manifest\.json is not an image file/);
    const c = b.active()!;
    await b.receive({ type: 'openResult', conversationId: c.id, turnId: c.turns[0].id });
    assert.deepEqual(b.opened.at(-1), { conversationId: c.id, turnId: c.turns[0].id });
  });

  it('restores stored conversations; a turn left streaming reads as interrupted', async () => {
    const stored = JSON.parse(JSON.stringify(b.stored));
    stored.conversations[0].turns.push({ id: 'tx', prompt: 'p', answer: 'partial', status: 'streaming' });
    const again = new ChatBridge('en', stored);
    const t = again.conversations[0].turns.at(-1)!;
    assert.deepEqual([t.status, t.error], ['failed', 'Interrupted when the window was closed.']);
    assert.equal(again.activeId, b.activeId);
    await again.dispose();
  });
});

describe('extension: the chat controller without a model, in Chinese', function () {
  this.timeout(300_000);
  let b: ChatBridge;
  before(async () => {
    b = new ChatBridge('zh-cn');
    await b.startHost(null);
  });
  after(async () => {
    await b?.dispose();
  });

  it('a turn without a model fails with the host error in Chinese and asks for a notification with its code', async () => {
    await b.receive({ type: 'setImage', path: CHELSEA });
    await b.receive({ type: 'ask', conversationId: b.active()!.id, prompt: 'Where is the cat?' });
    const failed = last(b, 'turnFailed') as TurnFailedMessage;
    assert.equal(failed.cancelled, false);
    assert.match(failed.message, /[\u4e00-\u9fff]/, `not Chinese: ${failed.message}`);
    assert.deepEqual(b.notifications.at(-1), { message: failed.message, code: RpcErrorCode.ModelNotLoaded });
  });
});
