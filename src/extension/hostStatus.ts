// "Show Host Status" as lines a person reads (the host's status answer is JSON). Never imports vscode: the caller
// passes its translator.
import type { StatusResult } from '../protocol/rpc';

export type Translate = (message: string, ...args: Array<string | number>) => string;

export interface HostStatusReport {
  /** The extension's view of the host process (stopped, starting, running, crashed). */
  hostState: string;
  starts: number;
  /** The host's own answer; undefined when no host runs, `{ error }` when it did not answer. */
  status: StatusResult | { error: string } | undefined;
}

export function formatHostStatus(r: HostStatusReport, t: Translate): string[] {
  const s = r.status;
  if (!s) return [t('Host: {0}, not running.', r.hostState)];
  if ('error' in s) return [t('Host: {0}; it did not answer: {1}', r.hostState, s.error)];
  const lines = [
    t(
      'Host: {0}, process {1}, up {2} s, started {3} time(s) in this window.',
      s.state ?? r.hostState,
      s.pid ?? '?',
      ((s.uptimeMs ?? 0) / 1000).toFixed(1),
      r.starts,
    ),
  ];
  lines.push(
    s.model
      ? t(
          'Model: {0} on {1}, {2} layers, context {3} tokens, from {4}',
          s.model.variant,
          s.model.provider,
          s.model.layers,
          s.model.contextLength,
          s.model.bundle,
        )
      : t('Model: none loaded yet (it loads on the first question).'),
  );
  const c = s.counters;
  lines.push(
    t(
      'Answers {0}; image encoder runs: CLIP {1}, SAM {2}; image decodes {3}; cache hits {4}, {5} MB cached.',
      c.requests ?? 0,
      c.visionEncoderRuns,
      c.samEncoderRuns,
      c.imageDecodes,
      c.cacheHits,
      (c.cacheBytes / 1e6).toFixed(1),
    ),
  );
  return lines;
}
