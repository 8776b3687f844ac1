// The JupyterLab renderer's way to the kernel: a MIME renderer is given no kernel, so it finds the notebook panel it
// sits in (the first widget above it with a sessionContext) and opens a Jupyter comm to the target the magic
// registers (reason_segment.refine, src/kernel/reason_segment/magic.py): one request in the open message, one answer.

import type { Widget } from '@lumino/widgets';
import type { Translate } from '../../overlay/view';
import type { RefinePrompt, ResultMask } from '../../protocol/wire-types';

export const COMM_TARGET = 'reason_segment.refine';

/** What the magic answers: a refined mask, or the output's other types as they read now. */
export type KernelRequest =
  | { op: 'refine'; resultId: string; maskIndex: number; prompt: RefinePrompt }
  | { op: 'set'; resultId: string; maskIndex: number; mask: ResultMask };
export interface KernelAnswer {
  mask?: ResultMask;
  bundle?: Record<string, string>;
  error?: string;
}

// The parts of JupyterLab's IKernelConnection and IComm used here (their packages are JupyterLab's own).
interface Comm {
  onMsg: (msg: { content: { data: unknown } }) => void;
  onClose: (msg: unknown) => void;
  open(data?: unknown): unknown;
}
interface Kernel {
  createComm(target: string): Comm;
}

function kernelOf(widget: Widget): Kernel | null {
  for (let w = widget.parent; w; w = w.parent) {
    const ctx = (w as Partial<{ sessionContext: { session?: { kernel?: Kernel | null } | null } }>).sessionContext;
    if (ctx) return ctx.session?.kernel ?? null;
  }
  return null;
}

/** Asks the kernel of the notebook `widget` is in; rejects with one line the user can act on. */
export function askKernel(widget: Widget, request: KernelRequest, t: Translate): Promise<KernelAnswer> {
  const kernel = kernelOf(widget);
  if (!kernel)
    return Promise.reject(new Error(t('This output has no running kernel: run the cell again to refine its masks.')));
  return new Promise<KernelAnswer>((resolve, reject) => {
    const comm = kernel.createComm(COMM_TARGET);
    let answered = false;
    comm.onMsg = (msg) => {
      answered = true;
      resolve(msg.content.data as KernelAnswer);
    };
    // The kernel closes the comm after its answer, or at once when no reason_segment is loaded in it.
    comm.onClose = () => {
      if (!answered)
        reject(
          new Error(t('The kernel has no %%segment magic loaded: run %load_ext reason_segment and the cell again.')),
        );
    };
    comm.open(request);
  }).then((a) => {
    if (a.error) throw new Error(a.error);
    return a;
  });
}
