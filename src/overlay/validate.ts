// The shape check of a result payload before any drawing: a clear message instead of an exception deep inside the
// drawing code. It is the protocol's own validator (src/protocol/validate.ts), so what the renderer and the chat panel
// draw is exactly what the host and the other surfaces accept; extra fields are allowed.

import { RESULT_FORMAT, type SegmentResult } from '../protocol/result';
import { describe, validateSegmentResult } from '../protocol/validate';

export type Checked = { ok: true; result: SegmentResult } | { ok: false; title: string; detail: string };

export function checkResult(value: unknown): Checked {
  const format = typeof value === 'object' && value !== null ? (value as { format?: unknown }).format : undefined;
  if (typeof format === 'string' && format !== RESULT_FORMAT) {
    return {
      ok: false,
      title: 'Unknown result format',
      detail:
        `This output uses the format "${format}"; this version of Reason Segment shows "${RESULT_FORMAT}". ` +
        'Update the extension, or run the cell again with the installed version.',
    };
  }
  // Not deep: a mask whose RLE string is corrupt is reported by the drawing code while the other masks still draw.
  const problems =
    typeof value === 'object' && value !== null && !Array.isArray(value)
      ? validateSegmentResult(value, { deep: false }).map(inField)
      : [`Expected a JSON object, got ${describe(value)}`];
  if (problems.length === 0) return { ok: true, result: value as SegmentResult };
  const more = problems.length > 3 ? ` (and ${problems.length - 3} more)` : '';
  return {
    ok: false,
    title: 'This Reason Segment result cannot be shown',
    detail: `${problems.slice(0, 3).join('; ')}${more}.`,
  };
}

/** "image.width: must be >= 1, got 0" -> 'In "image": image.width must be >= 1, got 0'; "text: ..." -> '"text": ...'. */
function inField(problem: string): string {
  const m = /^([A-Za-z0-9_]+)([^:]*): (.*)$/.exec(problem);
  if (!m) return problem;
  return m[2] ? `In "${m[1]}": ${m[1]}${m[2]} ${m[3]}` : `"${m[1]}": ${m[3]}`;
}
