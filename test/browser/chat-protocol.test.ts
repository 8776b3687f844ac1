// The chat protocol without a browser: the validator the extension runs on every webview message, `historyOf`, and
// the webview's state reducer (pure code).

import * as assert from 'node:assert/strict';
import { translator } from '../../src/overlay/l10n';
import {
  type Conversation,
  historyOf,
  isWebviewMessage,
  validateExtensionMessage,
  validateWebviewMessage,
  WEBVIEW_MESSAGE_TYPES,
} from '../../src/protocol/chat';
import type { SegmentResult } from '../../src/protocol/result';
import { apply, emptyState, fromCached, isBusy, toCached } from '../../src/webview/state';

const VALID = [
  { type: 'ready' },
  { type: 'pickImage' },
  { type: 'setImage', path: '/home/me/photos/cat.png' },
  { type: 'setImage', path: 'vscode-remote://ssh-remote%2Bbox/home/me/cat.png' },
  { type: 'ask', conversationId: 'c1', prompt: 'Segment the cat.' },
  { type: 'ask', conversationId: 'c1', prompt: 'Again', retryOf: 't3' },
  { type: 'stop', conversationId: 'c1' },
  { type: 'newConversation' },
  { type: 'selectConversation', conversationId: 'c-2:x.y_z' },
  { type: 'exportNotebook', conversationId: 'c1' },
  { type: 'openResult', conversationId: 'c1', turnId: 't1' },
  {
    type: 'refine',
    conversationId: 'c1',
    turnId: 't1',
    requestId: 'r1',
    maskIndex: 0,
    prompt: { points: [[10, 20]], labels: [1], box: [0, 0, 40, 30] },
  },
  {
    type: 'keepMask',
    conversationId: 'c1',
    turnId: 't1',
    maskIndex: 0,
    mask: {
      segIndex: 0,
      tokenIndex: -1,
      rle: { size: [30, 40], counts: '0a10' },
      bbox: [0, 0, 40, 30],
      area: 1200,
      score: 0.9,
      refined: { points: [[10, 20]], labels: [1] },
    },
  },
  {
    type: 'save',
    conversationId: 'c1',
    turnId: 't1',
    kind: 'coco-json',
    fileName: 'cat-masks.json',
    mimeType: 'application/json',
    encoding: 'utf8',
    data: '{}',
  },
  {
    type: 'save',
    conversationId: 'c1',
    turnId: 't1',
    kind: 'mask-png',
    fileName: 'cat-mask1.png',
    mimeType: 'image/png',
    encoding: 'base64',
    data: 'iVBORw==',
    segIndex: 0,
  },
  {
    type: 'save',
    conversationId: 'c1',
    turnId: 't1',
    kind: 'overlay-png',
    fileName: 'cat-overlay.png',
    mimeType: 'image/png',
    encoding: 'base64',
    data: 'iVBORw==',
    extra: 1,
  },
];

const INVALID: [unknown, RegExp][] = [
  [null, /expected an object/],
  ['ready', /expected an object/],
  [[{ type: 'ready' }], /expected an object/],
  [{}, /^type: /],
  [{ type: 'runShell', command: 'rm -rf /' }, /^type: expected one of/],
  [{ type: '__proto__' }, /^type: /],
  [{ type: 'setImage' }, /^path: expected a string/],
  [{ type: 'setImage', path: '   ' }, /^path: must not be empty/],
  [{ type: 'setImage', path: '/a.png\n/b.png' }, /NUL or line breaks/],
  [{ type: 'setImage', path: '/a.png\0.txt' }, /NUL or line breaks/],
  [{ type: 'setImage', path: 'x'.repeat(5000) }, /longer than 4096/],
  [{ type: 'setImage', path: { toString: '/a.png' } }, /expected a string/],
  [{ type: 'ask', prompt: 'hi' }, /^conversationId: expected a string id/],
  [{ type: 'ask', conversationId: 'c1', prompt: '  \n ' }, /^prompt: must not be blank/],
  [{ type: 'ask', conversationId: 'c1', prompt: 42 }, /^prompt: expected a string/],
  [{ type: 'ask', conversationId: 'c1', prompt: 'x'.repeat(100_001) }, /^prompt: longer than/],
  [{ type: 'ask', conversationId: '../../etc', prompt: 'hi' }, /^conversationId: may only hold/],
  [{ type: 'ask', conversationId: 'x'.repeat(201), prompt: 'hi' }, /^conversationId: must be 1\.\.200/],
  [{ type: 'ask', conversationId: 'c1', prompt: 'hi', retryOf: 7 }, /^retryOf: /],
  [{ type: 'stop', conversationId: '' }, /^conversationId: must be/],
  [{ type: 'exportNotebook' }, /^conversationId: /],
  [{ type: 'keepMask', conversationId: 'c1', turnId: 't1', maskIndex: 0, mask: { segIndex: 0 } }, /^mask\./],
  [{ type: 'selectConversation', conversationId: null }, /^conversationId: /],
  [
    {
      type: 'save',
      conversationId: 'c1',
      turnId: 't1',
      kind: 'exe',
      fileName: 'a.exe',
      mimeType: 'application/x-msdownload',
      encoding: 'base64',
      data: '',
    },
    /^kind: /,
  ],
  [
    {
      type: 'save',
      conversationId: 'c1',
      turnId: 't1',
      kind: 'coco-json',
      fileName: '../../.bashrc',
      mimeType: 'application/json',
      encoding: 'utf8',
      data: '{}',
    },
    /^fileName: must be a plain file name/,
  ],
  [
    {
      type: 'save',
      conversationId: 'c1',
      turnId: 't1',
      kind: 'coco-json',
      fileName: 'C:\\x.json',
      mimeType: 'application/json',
      encoding: 'utf8',
      data: '{}',
    },
    /^fileName: must be a plain file name/,
  ],
  [
    {
      type: 'save',
      conversationId: 'c1',
      turnId: 't1',
      kind: 'coco-json',
      fileName: 'a.json',
      mimeType: 'text/html',
      encoding: 'utf8',
      data: '{}',
    },
    /^mimeType: expected "application\/json"/,
  ],
  [
    {
      type: 'save',
      conversationId: 'c1',
      turnId: 't1',
      kind: 'overlay-png',
      fileName: 'a.png',
      mimeType: 'image/png',
      encoding: 'base64',
      data: 'not base64!',
    },
    /^data: is not base64/,
  ],
  [
    {
      type: 'save',
      conversationId: 'c1',
      turnId: 't1',
      kind: 'overlay-png',
      fileName: 'a.png',
      mimeType: 'image/png',
      encoding: 'hex',
      data: '00',
    },
    /^encoding: /,
  ],
  [
    {
      type: 'save',
      conversationId: 'c1',
      turnId: 't1',
      kind: 'mask-png',
      fileName: 'a.png',
      mimeType: 'image/png',
      encoding: 'base64',
      data: 'iVBORw==',
    },
    /^segIndex: expected an integer >= 0 for mask-png/,
  ],
  [
    {
      type: 'save',
      conversationId: 'c1',
      kind: 'coco-json',
      fileName: 'a.json',
      mimeType: 'application/json',
      encoding: 'utf8',
      data: '{}',
    },
    /^turnId: /,
  ],
];

function turn(
  id: string,
  status: 'streaming' | 'done' | 'failed' | 'cancelled',
  prompt: string,
  answer: string,
  withResult = true,
) {
  const result =
    withResult && status === 'done'
      ? ({ answer, masks: [], image: { width: 2, height: 2, sha256: 'a'.repeat(64) } } as unknown as SegmentResult)
      : undefined;
  return { id, prompt, answer: `${answer} (streamed)`, status, ...(result ? { result } : {}) };
}

describe('chat protocol (no browser)', () => {
  it('(g) accepts every well-formed webview message type', () => {
    for (const m of VALID) assert.deepEqual(validateWebviewMessage(m), [], JSON.stringify(m).slice(0, 80));
    const covered = new Set(VALID.map((m) => m.type));
    for (const t of WEBVIEW_MESSAGE_TYPES) assert.ok(covered.has(t), `no valid example of ${t}`);
  });

  it('(g) rejects malformed and hostile webview messages, naming the member', () => {
    for (const [m, why] of INVALID) {
      const problems = validateWebviewMessage(m);
      assert.ok(problems.length > 0, `accepted ${JSON.stringify(m)?.slice(0, 80)}`);
      assert.match(problems[0], why, JSON.stringify(m)?.slice(0, 80));
      assert.equal(isWebviewMessage(m), false);
    }
  });

  it("historyOf re-feeds the done turns only, with the result's answer", () => {
    const c: Pick<Conversation, 'turns'> = {
      turns: [
        turn('t1', 'done', 'What is it?', 'A cat [SEG].'),
        turn('t2', 'cancelled', 'Long story', 'Once'),
        turn('t3', 'failed', 'Boom', ''),
        turn('t4', 'done', 'Its face?', 'Here [SEG].', false),
        turn('t5', 'streaming', 'Now?', 'Wor'),
      ],
    };
    assert.deepEqual(historyOf(c), [
      { user: 'What is it?', assistant: 'A cat [SEG].' },
      { user: 'Its face?', assistant: 'Here [SEG]. (streamed)' }, // a stored turn that lost its result: the streamed text
    ]);
    assert.deepEqual(historyOf({ turns: [] }), []);
  });

  it('the webview checks what it receives from the extension', () => {
    assert.deepEqual(validateExtensionMessage({ type: 'textDelta', conversationId: 'c', turnId: 't', text: 'x' }), []);
    assert.deepEqual(
      validateExtensionMessage({ type: 'state', conversations: [], activeId: null, hostState: 'ready' }),
      [],
    );
    assert.ok(validateExtensionMessage({ type: 'textDelta', conversationId: 'c', turnId: 't' }).length > 0);
    assert.ok(
      validateExtensionMessage({ type: 'state', conversations: [{ id: 'c' }], activeId: null, hostState: 'ready' })
        .length > 0,
    );
    assert.ok(
      validateExtensionMessage({ type: 'turnFailed', conversationId: 'c', turnId: 't', message: 'x' }).length > 0,
    );
    assert.ok(validateExtensionMessage({ type: 'eval', code: '1' }).length > 0);
  });

  it('the webview state follows a turn from ask to done, failure, retry and a host crash', () => {
    const s = emptyState();
    apply(s, {
      type: 'state',
      conversations: [{ id: 'c1', image: { path: '/a.png', name: 'a.png' }, turns: [], createdAt: 1 }],
      activeId: 'c1',
      hostState: 'ready',
    });
    s.pending = { conversationId: 'c1', prompt: 'hi' };
    assert.equal(isBusy(s, 'c1'), true);
    apply(s, { type: 'turnStarted', conversationId: 'c1', turnId: 't1', prompt: 'hi' });
    assert.equal(s.pending, null);
    assert.deepEqual(apply(s, { type: 'textDelta', conversationId: 'c1', turnId: 't1', text: 'Hel' }), {
      kind: 'text',
      conversationId: 'c1',
      turnId: 't1',
    });
    apply(s, { type: 'textDelta', conversationId: 'c1', turnId: 't1', text: 'lo' });
    assert.equal(s.conversations[0].turns[0].answer, 'Hello');
    const result = {
      answer: 'Hello',
      masks: [],
      image: { width: 1, height: 1, sha256: 'a'.repeat(64), data: 'AAAA', mimeType: 'image/png' },
    } as unknown as SegmentResult;
    apply(s, { type: 'turnDone', conversationId: 'c1', turnId: 't1', result });
    assert.equal(s.conversations[0].turns[0].status, 'done');
    assert.equal(s.conversations[0].turns[0].result!.image.data, undefined, 'image bytes are kept once, not per turn');
    assert.equal(s.images.c1.data, 'AAAA');
    // A failure before the turn started keeps the prompt for Retry; the retry replaces it.
    s.pending = { conversationId: 'c1', prompt: 'again' };
    apply(s, {
      type: 'turnFailed',
      conversationId: 'c1',
      turnId: 't2',
      message: 'No model is loaded.',
      cancelled: false,
    });
    assert.deepEqual(
      s.conversations[0].turns.map((t) => [t.id, t.status, t.prompt]),
      [
        ['t1', 'done', 'hi'],
        ['t2', 'failed', 'again'],
      ],
    );
    s.pending = { conversationId: 'c1', prompt: 'again', retryOf: 't2' };
    apply(s, { type: 'turnStarted', conversationId: 'c1', turnId: 't3', prompt: 'again' });
    assert.deepEqual(
      s.conversations[0].turns.map((t) => t.id),
      ['t1', 't3'],
    );
    apply(s, { type: 'hostEvent', kind: 'crashed', message: 'The host stopped.' });
    assert.equal(s.hostState, 'crashed');
    assert.equal(s.notices[0].afterTurns, 2);
    apply(s, {
      type: 'turnFailed',
      conversationId: 'c1',
      turnId: 't3',
      message: 'The host stopped.',
      cancelled: false,
    });
    assert.equal(isBusy(s, 'c1'), false);
    // What setState keeps reads back.
    const back = fromCached(JSON.parse(JSON.stringify(toCached(s))));
    assert.deepEqual(back?.conversations, s.conversations);
    assert.equal(back?.images.c1.data, 'AAAA');
    assert.equal(fromCached({ version: 2 }), null);
    assert.equal(fromCached('junk'), null);
  });

  it('UI text in English and Simplified Chinese, picked by <html lang>', () => {
    assert.equal(translator('en')('Choose image…'), 'Choose image…');
    assert.equal(translator('zh-cn')('Choose image…'), '选择图像…');
    assert.equal(translator('zh-CN')('{0} masks', 3), '3 个掩码');
    assert.equal(translator('en')('{0} masks', 3), '3 masks');
    assert.equal(translator('zh-tw')('Stop'), 'Stop', 'traditional Chinese falls back to English');
    assert.equal(translator('zh-cn')('An unknown string'), 'An unknown string');
  });
});
