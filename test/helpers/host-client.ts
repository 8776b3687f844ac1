// Starts the real inference host (node out/src/host/server.js) as a child process and talks JSON-RPC to it over stdio,
// exactly as the extension and the Jupyter magic do.
import { type ChildProcess, spawn } from 'node:child_process';
import * as path from 'node:path';
import {
  CancellationTokenSource,
  createMessageConnection,
  type MessageConnection,
  StreamMessageReader,
  StreamMessageWriter,
} from 'vscode-jsonrpc/node';
import {
  Methods,
  Notifications,
  type ParamsOf,
  type RequestMethod,
  type ResultOf,
  type TextDeltaParams,
} from '../../src/protocol/rpc';

export const SERVER_JS = path.resolve(__dirname, '..', '..', 'src', 'host', 'server.js');

export class HostClient {
  readonly deltas: TextDeltaParams[] = [];
  stderr = '';

  private constructor(
    readonly child: ChildProcess,
    readonly connection: MessageConnection,
  ) {}

  static async start(env: NodeJS.ProcessEnv = {}): Promise<HostClient> {
    const child = spawn(process.execPath, [SERVER_JS], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    const connection = createMessageConnection(
      new StreamMessageReader(child.stdout!),
      new StreamMessageWriter(child.stdin!),
    );
    const client = new HostClient(child, connection);
    child.stderr!.on('data', (d) => {
      client.stderr += d;
    });
    connection.onNotification(Notifications.textDelta, (p: TextDeltaParams) => client.deltas.push(p));
    connection.listen();
    await connection.sendRequest('initialize', { processId: process.pid, rootUri: null, capabilities: {} });
    connection.sendNotification('initialized', {});
    return client;
  }

  request<M extends RequestMethod>(
    method: M,
    params: ParamsOf<M>,
    token?: CancellationTokenSource,
  ): Promise<ResultOf<M>> {
    // An undefined third argument would be sent as a second positional parameter, so pass the token only when given.
    const sent = token
      ? this.connection.sendRequest(method, params, token.token)
      : this.connection.sendRequest(method, params);
    return sent as Promise<ResultOf<M>>;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      const timeout = new Promise((r) => setTimeout(r, 5000).unref());
      await Promise.race([this.request(Methods.shutdown, undefined).catch(() => undefined), exited, timeout]);
      await Promise.race([exited, timeout]);
      if (this.child.exitCode === null) this.child.kill('SIGKILL');
    }
    this.connection.dispose();
  }
}

export { CancellationTokenSource };
