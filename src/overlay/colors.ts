// Mask colours for the overlay. The project palette lives in src/protocol/palette.ts once it lands; until then a
// local copy of a colour-blind-friendly qualitative palette (Okabe-Ito order, then Tableau-like extras) stands in.
// Everything that draws a mask asks `maskColor(segIndex)` so the switch is one line.

export type Rgb = readonly [number, number, number];

const FALLBACK: readonly Rgb[] = [
  [230, 159, 0],
  [86, 180, 233],
  [0, 158, 115],
  [240, 228, 66],
  [0, 114, 178],
  [213, 94, 0],
  [204, 121, 167],
  [148, 103, 189],
];

/** Colour of the mask made by the `segIndex`-th [SEG] (cycles for large indices). */
export function maskColor(segIndex: number): Rgb {
  const i = ((Math.floor(segIndex) % FALLBACK.length) + FALLBACK.length) % FALLBACK.length;
  return FALLBACK[i];
}

export function cssColor(c: Rgb, alpha = 1): string {
  return alpha >= 1 ? `rgb(${c[0]}, ${c[1]}, ${c[2]})` : `rgba(${c[0]}, ${c[1]}, ${c[2]}, ${alpha})`;
}

/** Black or white, whichever reads better on `c` (WCAG relative luminance). */
export function textOn(c: Rgb): string {
  const lin = (v: number) => {
    const s = v / 255;
    return s <= 0.03928 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4);
  };
  const l = 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  return l > 0.179 ? '#000' : '#fff';
}
