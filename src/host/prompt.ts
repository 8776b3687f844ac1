// The llava_v1 prompt as LISA's chat.py builds it (docs/bundle-format.md "The prompt") and app.py's answer clean-up.
// Identical to models/export/lisa_export/tokenizer.py build_prompt. Never imports vscode.

/** The manifest's `prompt` object. */
export interface PromptSpec {
  template?: string;
  system?: string;
  roles?: [string, string] | string[];
  sep?: string;
  sep2?: string;
  image_text?: string;
}

export const LLAVA_V1_SYSTEM =
  'A chat between a curious human and an artificial intelligence assistant. ' +
  "The assistant gives helpful, detailed, and polite answers to the human's questions.";

export const DEFAULT_PROMPT_SPEC: Required<PromptSpec> = {
  template: 'llava_v1',
  system: LLAVA_V1_SYSTEM,
  roles: ['USER', 'ASSISTANT'],
  sep: ' ',
  sep2: '</s>',
  image_text: '<im_start><image><im_end>\n',
};

export type Turn = readonly [string, string] | { user: string; assistant: string };

const IMAGE_TOKEN = '<image>';

function turnPair(t: Turn): [string, string] {
  return Array.isArray(t) ? [t[0], t[1]] : [(t as { user: string }).user, (t as { assistant: string }).assistant];
}

/** `{system} USER: <im_start><image><im_end>\n{u1} ASSISTANT: {a1}</s>USER: {prompt} ASSISTANT:` (SeparatorStyle.TWO).
 *  The image text goes in the first user message only; as in chat.py every "<image>" of that message is then wrapped
 *  in <im_start>/<im_end>. An assistant prefix is appended after "ASSISTANT:" with one space. */
export function buildPrompt(
  spec: PromptSpec | undefined,
  history: readonly Turn[],
  prompt: string,
  assistantPrefix = '',
): string {
  const s = { ...DEFAULT_PROMPT_SPEC, ...(spec ?? {}) };
  if (s.template !== 'llava_v1') throw new Error(`unsupported prompt template ${JSON.stringify(s.template)}`);
  const [user, assistant] = s.roles;
  const seps = [s.sep, s.sep2];
  const imageText = s.image_text;
  const imageWrapped = imageText.endsWith('\n') ? imageText.slice(0, -1) : imageText;
  const turns: Array<[string, string | null]> = history.map(turnPair);
  turns.push([prompt, null]);
  let ret = s.system + seps[0];
  let msgIndex = 0;
  turns.forEach(([u0, a], i) => {
    const u = i === 0 ? imageText + u0.split(IMAGE_TOKEN).join(imageWrapped) : u0;
    for (const [role, message] of [
      [user, u],
      [assistant, a],
    ] as const) {
      if (message) ret += `${role}: ${message}${seps[msgIndex % 2]}`;
      else ret += `${role}:`;
      msgIndex++;
    }
  });
  if (assistantPrefix) ret += ` ${assistantPrefix}`;
  return ret;
}

/** LISA app.py: drop every "\n", replace "  " by " " (one pass, as Python's str.replace), keep the text after the
 *  last "ASSISTANT: ". Unlike app.py, an answer that starts without a space (no assistant prefix, first token glued
 *  to the role) is cut after the last "ASSISTANT:" too, instead of returning the whole prompt, system text included. */
export function cleanAnswer(decodedFullText: string, assistantRole = 'ASSISTANT'): string {
  const t = decodedFullText.split('\n').join('').split('  ').join(' ');
  const marker = `${assistantRole}:`;
  const at = t.lastIndexOf(marker);
  if (at < 0) return t;
  const rest = t.slice(at + marker.length);
  return rest.startsWith(' ') ? rest.slice(1) : rest;
}
