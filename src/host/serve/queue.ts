// Requests to one model, run one at a time and taken round-robin across clients: a client that sends a hundred
// requests at once waits its turn between other clients' requests instead of ahead of them. A request aborted while it
// waits leaves the queue at once; a full queue refuses new work instead of growing without bound.
import { HostError } from '../errors';
import { HttpError } from './oip';

interface Waiting {
  start: () => void;
  signal: AbortSignal;
  drop: () => void;
}

export class FairQueue {
  /** Per client, its waiting requests in order; the Map's order is the round-robin order. */
  private readonly lanes = new Map<string, Waiting[]>();
  private waiting = 0;
  private running = false;

  constructor(private readonly maxWaiting: number) {}

  get size(): number {
    return this.waiting + (this.running ? 1 : 0);
  }

  run<T>(client: string, work: () => Promise<T>, signal: AbortSignal): Promise<T> {
    if (signal.aborted) return Promise.reject(cancelled());
    if (this.waiting >= this.maxWaiting) {
      return Promise.reject(
        new HttpError(503, `the server has ${this.waiting} requests waiting already (--max-queue); try again later`),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const item: Waiting = {
        signal,
        start: () => {
          signal.removeEventListener('abort', onAbort);
          work()
            .then(resolve, reject)
            .finally(() => {
              this.running = false;
              this.next();
            });
        },
        drop: () => reject(cancelled()),
      };
      const onAbort = () => {
        const lane = this.lanes.get(client);
        const at = lane?.indexOf(item) ?? -1;
        if (!lane || at < 0) return;
        lane.splice(at, 1);
        if (lane.length === 0) this.lanes.delete(client);
        this.waiting--;
        item.drop();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const lane = this.lanes.get(client);
      if (lane) lane.push(item);
      else this.lanes.set(client, [item]);
      this.waiting++;
      this.next();
    });
  }

  private next(): void {
    if (this.running) return;
    const first = this.lanes.entries().next();
    if (first.done) return;
    const [client, lane] = first.value;
    const item = lane.shift() as Waiting;
    this.lanes.delete(client);
    if (lane.length) this.lanes.set(client, lane); // to the back of the round
    this.waiting--;
    this.running = true;
    item.start();
  }
}

const cancelled = () => new HostError('Cancelled', 'The request was cancelled.');
