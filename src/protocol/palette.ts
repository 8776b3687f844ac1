// Mask colours shared by every surface: the host's overlay PNG, the notebook renderer and the chat panel draw mask i
// in PALETTE[i % PALETTE.length], so a mask has the same colour everywhere. The first is LISA's red ([255, 0, 0],
// what LISA's chat.py and app.py paint every mask with); the rest are well apart in hue and lightness.

export type Rgb = readonly [number, number, number];

export const PALETTE: readonly Rgb[] = [
  [255, 0, 0], // red (LISA)
  [0, 114, 255], // blue
  [0, 200, 83], // green
  [255, 196, 0], // amber
  [213, 0, 249], // violet
  [0, 229, 255], // cyan
  [255, 109, 0], // orange
  [118, 255, 3], // lime
  [255, 64, 129], // pink
  [101, 31, 255], // indigo
  [29, 233, 182], // teal
  [174, 234, 0], // yellow-green
];

/** Colour of mask `i` (cycles through the palette). */
export function maskColor(i: number, palette: readonly Rgb[] = PALETTE): Rgb {
  const n = palette.length;
  return palette[((i % n) + n) % n];
}
