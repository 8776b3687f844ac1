// The chat's logic (src/extension/chatController.ts, which does not import vscode) driven directly, as the webview
// would drive it, against the real host process on the tiny bundle: turns and streaming, follow-ups by the cached
// image, stop and retry, context fitting, the no-model error, invalid messages, restoring stored state, the results
// panel's message, and the extension's Chinese messages.
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { resultMessageOf } from '../../src/extension/chatController';
import { imageSize } from '../../src/extension/imageHeader';
import { buildNotebook } from '../../src/extension/notebook';
import type { ExtensionMessage, TurnDoneMessage, TurnFailedMessage } from '../../src/protocol/chat';
import { RESULT_MIME } from '../../src/protocol/result';
import { Methods, RpcErrorCode } from '../../src/protocol/rpc';
import { REPO } from '../helpers/bundles';
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

  it("keeps the mask the results panel shows: refined, in the store, side bar, reopened panel and export; undo restores the answer's", async () => {
    await b.receive({ type: 'newConversation' });
    const c = b.active()!;
    assert.equal(c.image?.name, 'chelsea.png');
    b.assistantPrefix = 'Sure, [SEG].';
    b.maxNewTokens = 4;
    await b.receive({ type: 'ask', conversationId: c.id, prompt: 'The cat.' });
    b.assistantPrefix = undefined;
    const turn = c.turns.at(-1)!;
    const answered = structuredClone(turn.result!.masks[0]);
    assert.ok(answered && turn.result!.resultId && turn.result!.overlayPng, 'a mask, a result id and an overlay');
    // What the results panel got from the host for one click, as it posts it back.
    const prompt = { points: [[150, 120]] as [number, number][], labels: [1 as const] };
    const { mask } = await b.host.request(Methods.refine, { resultId: turn.result!.resultId!, maskIndex: 0, prompt });
    assert.deepEqual(mask.refined, prompt);
    const keep = (m: unknown, maskIndex = 0) =>
      b.receive({ type: 'keepMask', conversationId: c.id, turnId: turn.id, maskIndex, mask: m });
    await keep(mask);
    const storedMask = () =>
      b.stored!.conversations.find((x) => x.id === c.id)!.turns.find((t) => t.id === turn.id)!.result!.masks[0];
    assert.deepEqual(storedMask(), mask, 'stored (the workspace state)');
    const sideBar = last(b, 'state')!
      .conversations.find((x) => x.id === c.id)!
      .turns.find((t) => t.id === turn.id)!;
    assert.deepEqual(sideBar.result!.masks[0], mask, 'the side bar got the conversation with it');
    assert.deepEqual(resultMessageOf(c, turn.id, readImage(CHELSEA))!.result.masks[0], mask, 'the panel reopened');
    // Export to notebook: the refined mask with its prompts; the host's overlay PNG, which shows the answer's mask,
    // is left out of that turn only.
    const [exported, overlays] = b.controller.forExport(c);
    const et = exported.turns.find((t) => t.id === turn.id)!;
    assert.deepEqual(et.result!.masks[0], mask);
    assert.equal(et.result!.overlayPng, undefined);
    assert.ok(!overlays.has(turn.id) && overlays.size === b.controller.overlays.size - 1);
    assert.equal(turn.result!.overlayPng !== undefined, true, 'the stored overlay stays for an undo');
    const nb = buildNotebook(
      { image: CHELSEA },
      exported.turns.filter((t) => t.result).map((t) => ({ prompt: t.prompt, result: t.result })),
    ) as { cells: { outputs?: { data?: Record<string, any> }[] }[] };
    const payloads = nb.cells.flatMap((x) => x.outputs ?? []).map((o) => o.data?.[RESULT_MIME]);
    assert.deepEqual(payloads.at(-1).masks[0].refined, prompt, "the notebook's result keeps the refined mask");
    // A mask that is not there, or not this one, is ignored.
    const posts = b.posted.length;
    await keep(mask, 3);
    await keep({ ...mask, segIndex: 7 });
    assert.equal(b.posted.length, posts);
    assert.deepEqual(storedMask(), mask);
    // Undo in the panel: the answer's mask is kept again, and the export has the overlay again.
    await keep(answered);
    assert.deepEqual(storedMask(), answered);
    assert.equal(storedMask().refined, undefined);
    assert.equal(b.controller.forExport(c)[0].turns.at(-1)!.result!.overlayPng, turn.result!.overlayPng);
  });

  it("a TIFF: the side bar and the results panel get the host's PNG of it (webviews cannot decode TIFF)", async () => {
    const tif = path.join(REPO, 'test/fixtures/images/chelsea.tif');
    await b.receive({ type: 'setImage', path: tif });
    const c = b.active()!;
    assert.equal(c.image!.name, 'chelsea.tif');
    assert.equal((await b.controller.webviewImage(c.image!)).mimeType, 'image/tiff', 'before a turn: the file');
    b.maxNewTokens = 2;
    await b.receive({ type: 'ask', conversationId: c.id, prompt: 'What is this?' });
    assert.equal(c.turns.at(-1)!.status, 'done', JSON.stringify(b.failures.at(-1)));
    const img = await b.controller.webviewImage(c.image!);
    assert.equal(img.mimeType, 'image/png');
    assert.deepEqual(
      [...Buffer.from(img.data, 'base64').subarray(0, 8)],
      [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a],
      'PNG bytes',
    );
    const size = imageSize(Buffer.from(img.data, 'base64'))!;
    assert.deepEqual([img.width, img.height], [size.width, size.height]);
    assert.deepEqual([img.width, img.height], [c.image!.width, c.image!.height]);
    assert.deepEqual(last(b, 'image'), { type: 'image', conversationId: c.id, image: img }, 'the side bar got it');
    const m = resultMessageOf(c, c.turns.at(-1)!.id, img)!;
    assert.equal(m.result.image.mimeType, 'image/png', 'the results panel gets it');
    assert.equal(m.result.image.data, img.data);
    // A window reload: a new controller on the stored conversations and the same extension storage still has it.
    const reloaded = new ChatBridge('en', JSON.parse(JSON.stringify(b.stored)), b.renditionDir);
    const again = reloaded.conversations.find((x) => x.id === c.id)!;
    assert.deepEqual(await reloaded.controller.webviewImage(again.image!), img, 'the PNG after a reload');
    await reloaded.dispose();
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
