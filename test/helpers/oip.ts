// A `reason-segment serve` process on a loopback port, and plain HTTP requests to it (no client library: what goes on
// the wire is what the test wrote). Used by the server's tests and its bench.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { REPO } from './bundles';

export const CLI = path.join(REPO, 'out', 'src', 'host', 'cli.js');

export interface Served {
  child: ChildProcess;
  port: number;
  /** Everything the server wrote to stderr so far. */
  stderr: () => string;
  waitForLog: (re: RegExp, timeoutMs?: number) => Promise<void>;
  stop: () => Promise<number | null>;
}

export async function startServer(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  startTimeoutMs = 120_000,
): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', ...args], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const waitForLog = async (re: RegExp, timeoutMs = 60_000) => {
    const until = Date.now() + timeoutMs;
    while (!re.test(err)) {
      if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode}): ${err}`);
      if (Date.now() > until) throw new Error(`no ${re} from the server within ${timeoutMs} ms: ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    await waitForLog(/serving .* on http:\/\/127\.0\.0\.1:\d+/, startTimeoutMs);
  } catch (e) {
    child.kill('SIGKILL'); // a server that did not come up must not outlive the test
    throw e;
  }
  const port = Number(/http:\/\/127\.0\.0\.1:(\d+)/.exec(err)![1]);
  return {
    child,
    port,
    stderr: () => err,
    waitForLog,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export function request(
  port: number,
  method: string,
  urlPath: string,
  body?: Buffer | string | object,
  headers: Record<string, string> = {},
  agent?: http.Agent,
): Promise<Reply> {
  const data =
    body === undefined
      ? undefined
      : Buffer.isBuffer(body)
        ? body
        : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        agent,
        headers: { ...(data ? { 'content-length': String(data.length) } : {}), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

export const bytesInput = (name: string, value: string) => ({ name, shape: [1], datatype: 'BYTES', data: [value] });

/** An infer request in JSON: the image as base64 (as the model asks for JSON), the rest as text. */
export function inferJson(
  image: Buffer | undefined,
  prompt: string,
  extra: Record<string, string | number> = {},
): object {
  const inputs: object[] = [bytesInput('PROMPT', prompt)];
  if (image) inputs.push({ ...bytesInput('IMAGE', image.toString('base64')), parameters: { content_type: 'base64' } });
  for (const [name, v] of Object.entries(extra)) {
    inputs.push(typeof v === 'number' ? { name, shape: [1], datatype: 'INT32', data: [v] } : bytesInput(name, v));
  }
  return { inputs };
}

export interface InferAnswer {
  text: string;
  result: {
    prompt: string;
    answer: string;
    outputIds: number[];
    masks: Array<{ rle: { size: [number, number]; counts: string } }>;
    image: { sha256: string };
    timings: { cacheHit: boolean };
  };
}

/** TEXT and RESULT of a JSON infer response. */
export function answerOf(reply: Reply): InferAnswer {
  if (reply.status !== 200) throw new Error(`infer answered ${reply.status}: ${reply.body}`);
  const outputs = JSON.parse(reply.body.toString()).outputs as Array<{ name: string; data: string[] }>;
  const get = (n: string) => outputs.find((o) => o.name === n)!.data[0];
  return { text: get('TEXT'), result: JSON.parse(get('RESULT')) };
}

export const fixtureImage = (name: string) => readFileSync(path.join(REPO, 'test', 'fixtures', 'images', name));
