// Who may use the server: bearer tokens from a token file (one per line, so each member of a lab can have their own,
// which also makes each token its own lane in the fair queue), and the rule that a server reachable from other
// machines must have them.
import { timingSafeEqual } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { isIP } from 'node:net';

export async function readTokens(file: string): Promise<string[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    throw new Error(
      `--token-file ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
  const tokens = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (tokens.length === 0) throw new Error(`--token-file ${file} holds no token; write one token a line`);
  const short = tokens.find((t) => t.length < 16 || /\s/.test(t));
  if (short !== undefined)
    throw new Error(
      `--token-file ${file}: each token must be at least 16 characters without spaces (make one with: openssl rand -hex 32)`,
    );
  return tokens;
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1' || host === '0:0:0:0:0:0:0:1';
}

/** The index of the token the Authorization header carries, or -1. Compares in constant time. */
export function tokenIndex(header: string | undefined, tokens: string[]): number {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (!m) return -1;
  const given = Buffer.from(m[1]);
  let found = -1;
  tokens.forEach((t, i) => {
    const want = Buffer.from(t);
    if (want.length === given.length && timingSafeEqual(want, given) && found < 0) found = i;
  });
  return found;
}
