// "Show Host Status" as a person reads it: a few items (host, model, work done), each a short label and a detail line,
// from the host's status answer. Never imports vscode: the caller passes its translator and shows the items (a quick
// pick in the extension).
import type { StatusResult } from '../protocol/rpc';

export type Translate = (message: string, ...args: Array<string | number>) => string;

export interface HostStatusReport {
  /** The extension's view of the host process (stopped, starting, running, crashed). */
  hostState: string;
  starts: number;
  /** The host's own answer; undefined when no host runs, `{ error }` when it did not answer. */
  status: StatusResult | { error: string } | undefined;
}

export interface HostStatusItem {
  /** What it is about, short: the host and its state, the model, the answers. */
  label: string;
  detail: string;
}

export function formatHostStatus(r: HostStatusReport, t: Translate): HostStatusItem[] {
  const s = r.status;
  if (!s) return [{ label: t('Host: {0}', r.hostState), detail: t('Not running; it starts on the first question.') }];
  if ('error' in s) return [{ label: t('Host: {0}', r.hostState), detail: t('It did not answer: {0}', s.error) }];
  const c = s.counters;
  return [
    {
      label: t('Host: {0}', s.state ?? r.hostState),
      detail: t(
        'process {0} · up {1} s · started {2} time(s) in this window',
        s.pid ?? '?',
        ((s.uptimeMs ?? 0) / 1000).toFixed(1),
        r.starts,
      ),
    },
    s.model
      ? {
          label: t('Model: {0} on {1}', s.model.variant, s.model.provider),
          detail: t('{0} layers · context {1} tokens · {2}', s.model.layers, s.model.contextLength, s.model.bundle),
        }
      : { label: t('Model: none loaded yet'), detail: t('It loads on the first question.') },
    {
      label: t('Answers: {0}', c.requests ?? 0),
      detail: t(
        'image encoder runs: CLIP {0}, SAM {1} · image decodes {2} · cache hits {3} · {4} MB cached',
        c.visionEncoderRuns,
        c.samEncoderRuns,
        c.imageDecodes,
        c.cacheHits,
        (c.cacheBytes / 1e6).toFixed(1),
      ),
    },
  ];
}
