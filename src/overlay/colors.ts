// Mask colours for the overlay: the project palette (src/protocol/palette.ts), so a mask has the same colour in the
// host's overlay PNG, the notebook renderer and the chat panel. Mask colour is chosen by segIndex (the [SEG] that made
// it), so a chip in the explanation and its mask always match.

import { maskColor as paletteColor, type Rgb } from '../protocol/palette';

export type { Rgb };

/** Colour of the mask made by the `segIndex`-th [SEG] (cycles through the palette). */
export function maskColor(segIndex: number): Rgb {
  return paletteColor(Math.floor(segIndex));
}

export function cssColor(c: Rgb, alpha = 1): string {
  return alpha >= 1 ? `rgb(${c[0]}, ${c[1]}, ${c[2]})` : `rgba(${c[0]}, ${c[1]}, ${c[2]}, ${alpha})`;
}

/** Black or white, whichever reads better on `c` (WCAG relative luminance). */
export function textOn(c: Rgb): string {
  const lin = (v: number) => {
    const s = v / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  const l = 0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2]);
  return l > 0.179 ? '#000' : '#fff';
}
