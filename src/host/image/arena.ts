// The resampler's WebAssembly kernels (resample.as, built to resample.wasm next to this file) and the memory they work
// in. An Arena is one shared WebAssembly.Memory with the kernels instantiated over it; a Bump hands out 16-byte
// aligned regions of it for one resize job. The memory is shared so that preprocessImageParallel's worker thread can
// instantiate the same kernels over it and read the rows the main thread copied in, without a copy of its own.
//
// One arena per thread is kept between calls (its pages are already mapped: copying a 12 MP image into fresh memory
// costs 3x more than into warm memory) and dropped after ARENA_IDLE_MS without use. A call that finds it busy (a
// parallel job awaiting its worker) works in a temporary arena.

import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Kernels {
  /** Pillow's resampling coefficients; see resample.as. */
  coeffs(
    inSize: number,
    outSize: number,
    cubic: number,
    from: number,
    count: number,
    ksize: number,
    bounds: number,
    kk: number,
    w: number,
  ): void;
  /** hrow's table; see resample.as. */
  htable(bounds: number, kk: number, ksize: number, count: number, x0: number, pb: number, cp: number): number;
  /** Horizontal pass of one RGB row; see resample.as. */
  hrow(src: number, pb: number, outW: number, dst: number): void;
  /** hrow on two rows. */
  hrow2(src0: number, src1: number, pb: number, outW: number, dst0: number, dst1: number): void;
  /** Vertical pass producing one row; see resample.as. */
  vrow(rows: number, k: number, n: number, rowBytes: number, dst: number): void;
}

const PAGE = 65536;
const MAX_PAGES = 65536; // wasm32: 4 GiB
/** Bytes after any buffer that a kernel may read past it (one v128 load). */
export const SLACK = 16;
const ARENA_IDLE_MS = 30_000;
/** Largest image staged in an arena (a wasm32 memory holds 4 GiB; the resizes need a few MB besides). */
export const STAGE_MAX_BYTES = 2 ** 30;

let compiled: WebAssembly.Module | undefined;

function kernelModule(): WebAssembly.Module {
  if (compiled) return compiled;
  const file = path.join(__dirname, 'resample.wasm');
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (e) {
    throw new Error(
      `the resampler's kernels ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? e}); run \`npm run build\``,
    );
  }
  compiled = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
  return compiled;
}

export class Arena {
  readonly memory: WebAssembly.Memory;
  readonly k: Kernels;
  private view: Uint8Array;

  /** A fresh memory of at least `bytes`, or the kernels over a memory another thread shared with this one. */
  constructor(memory: WebAssembly.Memory | number) {
    this.memory =
      typeof memory === 'number'
        ? new WebAssembly.Memory({ initial: Math.max(1, Math.ceil(memory / PAGE)), maximum: MAX_PAGES, shared: true })
        : memory;
    const inst = new WebAssembly.Instance(kernelModule(), {
      env: {
        memory: this.memory,
        abort: () => {
          throw new Error('resample.wasm aborted');
        },
      },
    });
    this.k = inst.exports as unknown as Kernels;
    this.view = new Uint8Array(this.memory.buffer);
  }

  get bytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** The whole memory as bytes (a new view after the memory grew). */
  get u8(): Uint8Array {
    if (this.view.length !== this.memory.buffer.byteLength) this.view = new Uint8Array(this.memory.buffer);
    return this.view;
  }

  i32(ptr: number, length: number): Int32Array {
    return new Int32Array(this.memory.buffer, ptr, length);
  }

  ensure(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes <= have) return;
    const pages = Math.ceil((bytes - have) / PAGE);
    if (have / PAGE + pages > MAX_PAGES) {
      throw new RangeError(
        `the resampler needs ${(bytes / 2 ** 30).toFixed(2)} GiB of working memory, over the 4 GiB a WebAssembly memory can hold`,
      );
    }
    this.memory.grow(pages);
  }

  bump(start = 64): Bump {
    return new Bump(this, start);
  }
}

/** Allocates 16-byte aligned regions upwards from `start`, growing the memory as needed. */
export class Bump {
  constructor(
    readonly arena: Arena,
    public next: number,
  ) {}

  alloc(bytes: number): number {
    const p = (this.next + 15) & ~15;
    this.next = p + bytes;
    this.arena.ensure(this.next);
    return p;
  }
}

let kept: Arena | undefined;
let busy = false;
let idle: NodeJS.Timeout | undefined;

/** This thread's kept arena, or a temporary one while the kept one is busy. Give it back with releaseArena. */
export function acquireArena(): Arena {
  if (busy) return new Arena(PAGE);
  busy = true;
  if (idle) clearTimeout(idle);
  idle = undefined;
  kept ??= new Arena(PAGE);
  return kept;
}

export function releaseArena(a: Arena): void {
  if (a !== kept) return;
  busy = false;
  idle = setTimeout(() => {
    if (!busy) kept = undefined;
  }, ARENA_IDLE_MS);
  idle.unref();
}

/** Runs `fn` with an arena (synchronously). */
export function withArena<T>(fn: (a: Arena) => T): T {
  const a = acquireArena();
  try {
    return fn(a);
  } finally {
    releaseArena(a);
  }
}
