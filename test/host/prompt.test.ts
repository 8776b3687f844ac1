import * as assert from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildPrompt, cleanAnswer, DEFAULT_PROMPT_SPEC } from '../../src/host/prompt';

const ROOT = path.resolve(__dirname, '..', '..', '..');

interface PromptCase {
  system: string | null;
  history: [string, string][];
  prompt: string;
  assistant_prefix: string;
  text: string;
}

describe('llava_v1 prompt (same as Python build_prompt)', () => {
  const cases: PromptCase[] = JSON.parse(
    fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'tokenizer', 'prompts.json'), 'utf8'),
  );

  it('matches every Python build_prompt output', () => {
    assert.ok(cases.length >= 10);
    for (const c of cases) {
      const spec = c.system === null ? DEFAULT_PROMPT_SPEC : { ...DEFAULT_PROMPT_SPEC, system: c.system };
      assert.strictEqual(buildPrompt(spec, c.history, c.prompt, c.assistant_prefix), c.text, JSON.stringify(c));
    }
  });

  it('gives the documented single-turn string', () => {
    assert.strictEqual(
      buildPrompt(undefined, [], 'What is this?'),
      `${DEFAULT_PROMPT_SPEC.system} USER: <im_start><image><im_end>\nWhat is this? ASSISTANT:`,
    );
    assert.strictEqual(
      buildPrompt(undefined, [{ user: 'a', assistant: 'b' }], 'c', 'Sure, [SEG].'),
      `${DEFAULT_PROMPT_SPEC.system} USER: <im_start><image><im_end>\na ASSISTANT: b</s>USER: c ASSISTANT: Sure, [SEG].`,
    );
  });

  it('refuses an unknown template', () => {
    assert.throws(() => buildPrompt({ template: 'llava_llama_2' }, [], 'x'), /unsupported prompt template/);
  });
});

describe('cleanAnswer (LISA app.py)', () => {
  it('drops newlines, collapses double spaces once, keeps the text after the last "ASSISTANT: "', () => {
    assert.strictEqual(
      cleanAnswer('<s>A chat. USER: <im_start> <im_end> \nWhat? ASSISTANT: Sure, [SEG]  .</s>'),
      'Sure, [SEG] .</s>',
    );
    assert.strictEqual(cleanAnswer('x ASSISTANT: a</s>USER: y ASSISTANT: b\nc'), 'bc');
    assert.strictEqual(cleanAnswer('no marker   here'), 'no marker  here');
  });

  it('keeps the system prompt out when the answer starts without a space after "ASSISTANT:"', () => {
    const prompt = buildPrompt(undefined, [{ user: 'a', assistant: 'b' }], 'Segment the cup.');
    assert.strictEqual(cleanAnswer(`<s>${prompt}Sure,[SEG].</s>`), 'Sure,[SEG].</s>');
    assert.strictEqual(cleanAnswer('ASSISTANT:no space'), 'no space');
    assert.strictEqual(cleanAnswer('A USER: x GPT:y', 'GPT'), 'y');
  });
});
