// LISA's tokenizer on the host: reproduces transformers 4.31.0's slow (SentencePiece) LlamaTokenizer, the one LISA
// pins, from the bundle's tokenizer.json. Never imports vscode.
//
// What 4.31's slow tokenizer does, and what this file reproduces (docs/tokenizer.md has the evidence):
//  - encode: split the text on every added/special token (leftmost, longest), strip the whitespace next to the tokens
//    whose lstrip/rstrip flags say so (LISA's <im_start>, <im_end>, <im_patch>, [SEG]: both sides; <s>, </s>, <unk>:
//    none), then run SentencePiece on each remaining chunk separately, so EVERY chunk gets the dummy-prefix "▁"
//    (the legacy behaviour); SentencePiece BPE merges by piece score (leftmost on ties) and falls back to UTF-8 bytes.
//  - decode (skip_special_tokens=false): added tokens are joined to the text around them with one space; inside each
//    stretch between added tokens a run of pieces that ends in a special token (<s>, </s>, <unk>) gets a space in front;
//    each run is decoded by SentencePiece on its own (its leading "▁" dropped; invalid UTF-8 bytes become U+FFFD, one
//    per byte).
//  The @huggingface/tokenizers library cannot express those rules (it decodes and splits like transformers >= 4.34),
//  so the SentencePiece model is run here from the vocab and merges of tokenizer.json.

import { promises as fs } from 'node:fs';
import * as path from 'node:path';

export interface TokenIds {
  bos: number;
  eos: number;
  unk: number;
  seg?: number;
  image_placeholder: number;
  im_start?: number;
  im_end?: number;
  im_patch?: number;
  pad?: number;
  [key: string]: unknown;
}

interface AddedTokenSpec {
  id: number;
  content: string;
  lstrip: boolean;
  rstrip: boolean;
  special: boolean;
}

interface TokenizerJson {
  added_tokens?: Array<{ id: number; content: string; lstrip?: boolean; rstrip?: boolean; special?: boolean }>;
  model: {
    type: string;
    vocab: Record<string, number>;
    merges: Array<string | [string, string]>;
    byte_fallback?: boolean;
    unk_token?: string | null;
  };
}

const SPIECE = '\u2581';
const IMAGE_TOKEN = '<image>';

// Python's str.isspace() (what str.strip() removes), which differs from JavaScript's trim().
const PY_WHITESPACE = new Set<number>([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003,
  0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
]);

function pyLstrip(s: string): string {
  let i = 0;
  while (i < s.length && PY_WHITESPACE.has(s.charCodeAt(i))) i++;
  return s.slice(i);
}

function pyRstrip(s: string): string {
  let j = s.length;
  while (j > 0 && PY_WHITESPACE.has(s.charCodeAt(j - 1))) j--;
  return s.slice(0, j);
}

const BYTE_PIECE = /^<0x([0-9A-F]{2})>$/;

class TokenizerError extends Error {}

/** One piece of a decode: the text each id contributes (concatenated, they give the full decode). */
interface Surfaces {
  surfaces: string[];
}

export class LisaTokenizer {
  readonly vocabSize: number;
  private readonly pieceToId = new Map<string, number>();
  private readonly idToPiece: string[] = [];
  /** Priority of each mergeable piece (the index of the first merge producing it: lower merges first). */
  private readonly pieceRank = new Map<string, number>();
  /** True when no piece holds a ▁ after other characters, so BPE never merges across a word start (see spEncode). */
  private wordLocalMerges = true;
  private readonly wordCache = new Map<string, string[]>();
  private readonly byteIds: number[] = new Array(256).fill(-1);
  private readonly byteOfId = new Map<number, number>();
  private readonly added = new Map<string, AddedTokenSpec>();
  private readonly addedById = new Map<number, AddedTokenSpec>();
  private readonly addedByFirstChar = new Map<string, AddedTokenSpec[]>();
  readonly tokens: TokenIds;

  constructor(json: TokenizerJson, tokens?: Partial<TokenIds>) {
    const model = json.model;
    if (model?.type !== 'BPE' || typeof model.vocab !== 'object' || !Array.isArray(model.merges)) {
      throw new TokenizerError(
        'tokenizer.json: expected a SentencePiece BPE model (model.type "BPE" with vocab and merges)',
      );
    }
    for (const [piece, id] of Object.entries(model.vocab)) {
      this.pieceToId.set(piece, id);
      this.idToPiece[id] = piece;
      const m = BYTE_PIECE.exec(piece);
      if (m) {
        const b = parseInt(m[1], 16);
        this.byteIds[b] = id;
        this.byteOfId.set(id, b);
      }
    }
    model.merges.forEach((merge, rank) => {
      let a: string;
      let b: string;
      if (Array.isArray(merge)) {
        [a, b] = merge;
      } else {
        const k = merge.indexOf(' ');
        a = merge.slice(0, k);
        b = merge.slice(k + 1);
      }
      const piece = a + b;
      if (!this.pieceRank.has(piece)) this.pieceRank.set(piece, rank);
      if (/[^\u2581]\u2581/u.test(piece)) this.wordLocalMerges = false;
    });
    for (const t of json.added_tokens ?? []) {
      // 4.31 strips both sides of every added token that is not one of the AddedToken specials (<s>, </s>, <unk>
      // come from tokenizer_config.json as AddedToken objects and keep their own flags); tokenizer.json marks the
      // latter "special", so a converter that did not record the strip flags still gives 4.31's ids.
      const special = !!t.special;
      const spec: AddedTokenSpec = {
        id: t.id,
        content: t.content,
        lstrip: special ? !!t.lstrip : true,
        rstrip: special ? !!t.rstrip : true,
        special,
      };
      this.added.set(spec.content, spec);
      this.addedById.set(spec.id, spec);
      const first = spec.content[0];
      const list = this.addedByFirstChar.get(first) ?? [];
      list.push(spec);
      list.sort((x, y) => y.content.length - x.content.length);
      this.addedByFirstChar.set(first, list);
    }
    let size = this.idToPiece.length;
    for (const id of this.addedById.keys()) size = Math.max(size, id + 1);
    this.vocabSize = size;

    const idOf = (s: string): number | undefined => this.added.get(s)?.id ?? this.pieceToId.get(s);
    const resolved: TokenIds = {
      bos: idOf('<s>') ?? 1,
      eos: idOf('</s>') ?? 2,
      unk: idOf('<unk>') ?? 0,
      seg: idOf('[SEG]'),
      im_start: idOf('<im_start>'),
      im_end: idOf('<im_end>'),
      image_placeholder: -200,
      ...(tokens ?? {}),
    } as TokenIds;
    for (const [key, content] of [
      ['bos', '<s>'],
      ['eos', '</s>'],
      ['unk', '<unk>'],
      ['seg', '[SEG]'],
      ['im_start', '<im_start>'],
      ['im_end', '<im_end>'],
      ['im_patch', '<im_patch>'],
    ] as const) {
      const want = resolved[key];
      const have = idOf(content);
      if (typeof want === 'number' && have !== undefined && want !== have) {
        throw new TokenizerError(
          `tokenizer.json gives ${content} id ${have} but the manifest says tokens.${key} = ${want}`,
        );
      }
    }
    this.tokens = resolved;
  }

  /** Load `<bundleDir>/tokenizer.json`; `tokens` (the manifest's) are checked against it. */
  static async fromBundle(bundleDir: string, tokens?: Partial<TokenIds>): Promise<LisaTokenizer> {
    const file = path.join(bundleDir, 'tokenizer.json');
    let text: string;
    try {
      text = await fs.readFile(file, 'utf8');
    } catch (e) {
      throw new TokenizerError(`cannot read ${file}: ${(e as Error).message}`);
    }
    let json: TokenizerJson;
    try {
      json = JSON.parse(text) as TokenizerJson;
    } catch (e) {
      throw new TokenizerError(`${file} is not valid JSON: ${(e as Error).message}`);
    }
    return new LisaTokenizer(json, tokens);
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Encoding

  /** LISA's tokenizer_image_token: split on "<image>", tokenize each chunk with BOS, keep one BOS, drop every chunk's
   *  first id, join with the image placeholder (-200). */
  encodePrompt(text: string): number[] {
    const chunks = text.split(IMAGE_TOKEN).map((c) => this.encode(c, true));
    const out: number[] = [];
    let offset = 0;
    if (chunks.length > 0 && chunks[0].length > 0 && chunks[0][0] === this.tokens.bos) {
      offset = 1;
      out.push(chunks[0][0]);
    }
    chunks.forEach((chunk, i) => {
      if (i > 0) {
        // insert_separator puts [placeholder] * (offset + 1) and then drops `offset` ids of it
        for (let k = offset; k < offset + 1; k++) out.push(this.tokens.image_placeholder);
      }
      for (let k = offset; k < chunk.length; k++) out.push(chunk[k]);
    });
    return out;
  }

  /** The slow tokenizer's `tokenizer(text).input_ids` (addBos) or with add_special_tokens=False. */
  encode(text: string, addBos = true): number[] {
    const ids: number[] = addBos ? [this.tokens.bos] : [];
    for (const part of this.splitOnAdded(text)) {
      if (typeof part === 'string') {
        if (part.length > 0) this.spEncode(part, ids);
      } else {
        ids.push(part.id);
      }
    }
    return ids;
  }

  /** 4.31 PreTrainedTokenizer.tokenize: trie split, then the strip rule around each no-split token. */
  private splitOnAdded(text: string): Array<string | AddedTokenSpec> {
    const parts: Array<string | AddedTokenSpec> = [];
    let start = 0;
    let i = 0;
    while (i < text.length) {
      const cands = this.addedByFirstChar.get(text[i]);
      let hit: AddedTokenSpec | undefined;
      if (cands) {
        for (const c of cands) {
          if (text.startsWith(c.content, i)) {
            hit = c;
            break;
          }
        }
      }
      if (hit) {
        if (i > start) parts.push(text.slice(start, i));
        parts.push(hit);
        i += hit.content.length;
        start = i;
      } else {
        i++;
      }
    }
    if (start < text.length) parts.push(text.slice(start));
    for (let k = 0; k < parts.length; k++) {
      const tok = parts[k];
      if (typeof tok === 'string') continue;
      const left = k > 0 ? parts[k - 1] : undefined;
      const right = k < parts.length - 1 ? parts[k + 1] : undefined;
      if (tok.rstrip && typeof right === 'string' && right) parts[k + 1] = pyLstrip(right);
      if (tok.lstrip && typeof left === 'string' && left) parts[k - 1] = pyRstrip(left);
    }
    return parts;
  }

  /** SentencePiece encode of one chunk: identity normalisation, dummy prefix, BPE by piece score, byte fallback. */
  private spEncode(text: string, out: number[]): void {
    const normalized = SPIECE + text.replace(/ /g, SPIECE);
    // With whitespace-split training no merge crosses the start of a word (a run of ▁ and what follows it), so
    // words are merged one by one and cached: same ids, and linear rather than quadratic in the text's length.
    const words = this.wordLocalMerges ? normalized.match(/\u2581*[^\u2581]*/gu)!.filter((w) => w) : [normalized];
    const symbols: string[] = [];
    for (const word of words) {
      let merged = this.wordCache.get(word);
      if (!merged) {
        merged = this.bpe(word);
        if (this.wordCache.size < 50_000) this.wordCache.set(word, merged);
      }
      symbols.push(...merged);
    }
    for (const sym of symbols) {
      const id = this.pieceToId.get(sym);
      if (id !== undefined && !this.byteOfId.has(id) && !this.addedById.has(id)) {
        out.push(id);
        continue;
      }
      for (const b of Buffer.from(sym, 'utf8')) {
        const bid = this.byteIds[b];
        if (bid < 0) {
          out.push(this.tokens.unk);
          break;
        }
        out.push(bid);
      }
    }
  }

  /** Merge the adjacent pair whose concatenation ranks best (lowest rank), leftmost on ties, until none is left. */
  private bpe(word: string): string[] {
    const symbols = Array.from(word);
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let k = 0; k + 1 < symbols.length; k++) {
        const r = this.pieceRank.get(symbols[k] + symbols[k + 1]);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = k;
        }
      }
      if (best < 0) return symbols;
      symbols.splice(best, 2, symbols[best] + symbols[best + 1]);
    }
  }

  // ---------------------------------------------------------------------------------------------------------------
  // Decoding

  /** The slow tokenizer's decode(ids, skip_special_tokens=False) (the image placeholder is dropped, as chat.py does). */
  decode(ids: readonly number[]): string {
    return this.surfaces(ids.filter((id) => id !== this.tokens.image_placeholder)).surfaces.join('');
  }

  /** Streaming decoder. Pass the prompt ids as `context` (the answer is then decoded as chat.py decodes prompt and
   *  answer together); each push returns only new, final text. Text is held back while it can still change: the
   *  bytes of an incomplete UTF-8 character, and a run of pieces that started inside the stream after an added or
   *  special token (4.31 puts a space in front of such a run if a special token such as </s> ends it). `finish()`
   *  returns the rest; the concatenation of all pushes and finish() equals decode(context + ids) minus decode's text of
   *  the context. */
  createStreamDecoder(context: readonly number[] = []): StreamDecoder {
    return new StreamDecoder(
      this,
      context.filter((id) => id !== this.tokens.image_placeholder),
    );
  }

  /** Per-id text of a decode (ids without the placeholder). */
  surfaces(ids: readonly number[]): Surfaces {
    const n = ids.length;
    const surfaces: string[] = new Array(n).fill('');
    let subTextIndex = 0; // index of the current sub-text (added tokens are sub-texts of their own)
    let k = 0;
    while (k < n) {
      const id = ids[k];
      const added = this.addedById.get(id);
      if (added && !added.special) {
        surfaces[k] = (subTextIndex > 0 ? ' ' : '') + added.content;
        subTextIndex++;
        k++;
        continue;
      }
      // a stretch of non-added ids: convert_tokens_to_string
      let end = k;
      while (end < n) {
        const a = this.addedById.get(ids[end]);
        if (a && !a.special) break;
        end++;
      }
      this.convertTokensToString(ids, k, end, surfaces);
      if (subTextIndex > 0) surfaces[k] = ` ${surfaces[k]}`;
      subTextIndex++;
      k = end;
    }
    return { surfaces };
  }

  private isSpecial(id: number): boolean {
    const a = this.addedById.get(id);
    return !!a && a.special;
  }

  private pieceOf(id: number): string {
    const a = this.addedById.get(id);
    if (a) return a.content;
    const p = this.idToPiece[id];
    if (p === undefined) throw new TokenizerError(`token id ${id} is out of range (vocabulary of ${this.vocabSize})`);
    return p;
  }

  /** 4.31 LlamaTokenizer.convert_tokens_to_string over ids[from, to), writing per-id surfaces. */
  private convertTokensToString(ids: readonly number[], from: number, to: number, surfaces: string[]): void {
    let runStart = from;
    let prevIsSpecial = false;
    for (let i = from; i < to; i++) {
      const id = ids[i];
      if (this.isSpecial(id)) {
        this.spDecode(ids, runStart, i, surfaces);
        if (!prevIsSpecial && i !== from) {
          // out_string += " " before the decoded run
          surfaces[runStart] = ` ${surfaces[runStart]}`;
        }
        surfaces[i] = this.pieceOf(id);
        prevIsSpecial = true;
        runStart = i + 1;
      } else {
        prevIsSpecial = false;
      }
    }
    this.spDecode(ids, runStart, to, surfaces);
  }

  /** sentencepiece DecodePieces over ids[from, to) (no special tokens inside), per-id surfaces. */
  private spDecode(ids: readonly number[], from: number, to: number, surfaces: string[]): void {
    let isBosWs = true;
    let byteStart = -1;
    const flushBytes = (end: number) => {
      if (byteStart < 0) return;
      const bytes = [];
      for (let j = byteStart; j < end; j++) bytes.push(this.byteOfId.get(ids[j]) as number);
      const texts = decodeUtf8Bytes(bytes);
      for (let j = 0; j < texts.length; j++) {
        surfaces[byteStart + j] = texts[j];
        if (texts[j]) isBosWs = false;
      }
      byteStart = -1;
    };
    for (let i = from; i < to; i++) {
      const id = ids[i];
      if (this.byteOfId.has(id)) {
        if (byteStart < 0) byteStart = i;
        continue;
      }
      flushBytes(i);
      let piece = this.pieceOf(id);
      let hadBosWs = false;
      if (isBosWs && piece.startsWith(SPIECE)) {
        piece = piece.slice(SPIECE.length);
        hadBosWs = true;
      }
      const s = piece.split(SPIECE).join(' ');
      surfaces[i] = s;
      if (s || hadBosWs) isBosWs = false;
    }
    flushBytes(to);
  }

  /** Whether `id` is a byte-fallback piece; its byte value or undefined. */
  byteValue(id: number): number | undefined {
    return this.byteOfId.get(id);
  }

  /** Whether `id` is an added (non-special: [SEG], <im_start>...) or special (<s>, </s>, <unk>) token. */
  isBoundary(id: number): boolean {
    return this.addedById.has(id);
  }
}

/** sentencepiece's byte-fallback decode: each valid UTF-8 character's text on its first byte ("" on the others);
 *  every byte that does not start a valid, complete character becomes U+FFFD. */
export function decodeUtf8Bytes(bytes: readonly number[]): string[] {
  const out: string[] = new Array(bytes.length).fill('');
  let i = 0;
  while (i < bytes.length) {
    const n = validUtf8Length(bytes, i);
    if (n > 0) {
      out[i] = Buffer.from(bytes.slice(i, i + n)).toString('utf8');
      i += n;
    } else {
      out[i] = '\uFFFD';
      i += 1;
    }
  }
  return out;
}

function isTrail(b: number | undefined): boolean {
  return b !== undefined && (b & 0xc0) === 0x80;
}

/** Length of the valid UTF-8 character at bytes[i] (sentencepiece's DecodeUTF8 rules), 0 when invalid/incomplete. */
function validUtf8Length(bytes: readonly number[], i: number): number {
  const b0 = bytes[i];
  const left = bytes.length - i;
  if (b0 < 0x80) return 1;
  if ((b0 & 0xe0) === 0xc0) {
    if (left < 2 || !isTrail(bytes[i + 1])) return 0;
    const cp = ((b0 & 0x1f) << 6) | (bytes[i + 1] & 0x3f);
    return cp >= 0x80 ? 2 : 0;
  }
  if ((b0 & 0xf0) === 0xe0) {
    if (left < 3 || !isTrail(bytes[i + 1]) || !isTrail(bytes[i + 2])) return 0;
    const cp = ((b0 & 0x0f) << 12) | ((bytes[i + 1] & 0x3f) << 6) | (bytes[i + 2] & 0x3f);
    return cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff) ? 3 : 0;
  }
  if ((b0 & 0xf8) === 0xf0) {
    if (left < 4 || !isTrail(bytes[i + 1]) || !isTrail(bytes[i + 2]) || !isTrail(bytes[i + 3])) return 0;
    const cp =
      ((b0 & 0x07) << 18) | ((bytes[i + 1] & 0x3f) << 12) | ((bytes[i + 2] & 0x3f) << 6) | (bytes[i + 3] & 0x3f);
    return cp >= 0x10000 && cp <= 0x10ffff ? 4 : 0;
  }
  return 0;
}

/** Whether bytes[i..] is a proper prefix of a valid UTF-8 character (more bytes could complete it). */
function isIncompleteUtf8(bytes: readonly number[], i: number): boolean {
  const b0 = bytes[i];
  let need = 0;
  if ((b0 & 0xe0) === 0xc0) need = 2;
  else if ((b0 & 0xf0) === 0xe0) need = 3;
  else if ((b0 & 0xf8) === 0xf0) need = 4;
  else return false;
  const have = bytes.length - i;
  if (have >= need) return false;
  for (let k = 1; k < have; k++) if (!isTrail(bytes[i + k])) return false;
  // reject prefixes that can never become valid (overlong, surrogates, > U+10FFFF)
  if (need === 2) return b0 >= 0xc2;
  const b1 = bytes[i + 1];
  if (need === 3) {
    if (b1 === undefined) return true;
    if (b0 === 0xe0) return b1 >= 0xa0;
    if (b0 === 0xed) return b1 <= 0x9f;
    return true;
  }
  if (b0 > 0xf4) return false;
  if (b1 === undefined) return true;
  if (b0 === 0xf0) return b1 >= 0x90;
  if (b0 === 0xf4) return b1 <= 0x8f;
  return true;
}

export class StreamDecoder {
  private readonly ids: number[];
  private readonly contextLength: number;
  private emitted = '';
  private finished = false;

  constructor(
    private readonly tok: LisaTokenizer,
    context: readonly number[],
  ) {
    this.ids = [...context];
    this.contextLength = context.length;
  }

  /** Add one generated id; returns the text that became final with it (possibly ""). */
  push(id: number): string {
    if (this.finished) throw new TokenizerError('stream decoder already finished');
    if (id === this.tok.tokens.image_placeholder) return '';
    this.ids.push(id);
    return this.emit(false);
  }

  /** End of the stream: everything not yet returned. */
  finish(): string {
    const rest = this.emit(true);
    this.finished = true;
    return rest;
  }

  /** The text returned so far. */
  get text(): string {
    return this.emitted;
  }

  private emit(final: boolean): string {
    const { surfaces } = this.tok.surfaces(this.ids);
    let stop = this.ids.length; // surfaces of ids [contextLength, stop) are final
    if (!final) {
      // trailing bytes that may still complete a character
      let j = this.ids.length;
      const bytes: number[] = [];
      while (j > 0 && this.tok.byteValue(this.ids[j - 1]) !== undefined) {
        j--;
        bytes.unshift(this.tok.byteValue(this.ids[j]) as number);
      }
      for (let k = 0; k < bytes.length; k++) {
        // a character that starts here and is still incomplete holds everything from here on
        if (isIncompleteUtf8(bytes, k)) {
          stop = j + k;
          break;
        }
      }
      // the open run (after the last added/special token) gains a leading space if a special token ends it
      let runStart = this.ids.length;
      while (runStart > 0 && !this.tok.isBoundary(this.ids[runStart - 1])) runStart--;
      if (runStart < this.ids.length && runStart >= this.contextLength) stop = Math.min(stop, runStart);
    }
    let text = '';
    for (let k = this.contextLength; k < Math.max(stop, this.contextLength); k++) text += surfaces[k];
    if (!text.startsWith(this.emitted)) {
      // cannot happen with the rules above; never rewrite what was already shown
      throw new TokenizerError('stream decoder: decoded text changed behind the stream');
    }
    const delta = text.slice(this.emitted.length);
    this.emitted = text;
    return delta;
  }
}
