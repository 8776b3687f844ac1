// LISA's postprocess_masks (segment_anything's Sam.postprocess_masks) then `> threshold`, from the mask decoder's
// 256x256 low-res logits straight to the mask's COCO run lengths, for the refine path (src/host/refine.ts): the
// sam_prompt_decoder graph stops at low_res_masks, so a refine does not upsample a float mask to the whole photo
// (12 MP: 48 MB of floats) only to threshold it. postprocess_masks is two bilinear resizes (align_corners=False):
// 256x256 -> 1024x1024, cropped to the resized image (resize_size), then -> the original size. Each output is a
// weighted mean of the (at most) four inputs around it with weights >= 0, so where those inputs are all above the
// threshold, or all at or below it, the output is too, and only the outputs between inputs on both sides of it are
// computed. The arithmetic is PyTorch's (source coordinates in float32, the horizontal pass inside the vertical),
// accumulated in float64; the refine goldens (masks from PyTorch) check it.

const LOW = 256;
const SAM = 1024;

/** `a` with twice the room, its values kept (the segment and run lists grow as they fill). */
function doubled<T extends Int32Array | Uint8Array | Uint32Array>(a: T): T {
  const b = new (a.constructor as new (n: number) => T)(a.length * 2);
  b.set(a);
  return b;
}

/** Source taps of a 1-D bilinear resize from `inSize` to `outSize` (PyTorch, align_corners=False), for the first
 * `count` outputs: lower index i0, upper index i1 (i0 + 1 except at the edge) and the upper weight w1. */
interface Taps {
  i0: Int32Array;
  i1: Int32Array;
  w1: Float64Array;
}

function taps(inSize: number, outSize: number, count = outSize): Taps {
  const f = Math.fround;
  const scale = f(inSize / outSize); // area_pixel_compute_scale in float
  const t: Taps = { i0: new Int32Array(count), i1: new Int32Array(count), w1: new Float64Array(count) };
  for (let d = 0; d < count; d++) {
    const src = Math.max(f(f(scale * (d + 0.5)) - 0.5), 0); // area_pixel_compute_source_index
    const i0 = Math.floor(src);
    t.i0[d] = i0;
    t.i1[d] = i0 < inSize - 1 ? i0 + 1 : i0;
    t.w1[d] = f(src - i0);
  }
  return t;
}

/**
 * The mask of one low-res logit map (`lowRes[offset ..]`, 256x256 row-major) at the original image size h x w, as
 * column-major run lengths (COCO RLE counts, the first run counting pixels outside). `resize` is [newh, neww], the
 * image's size inside SAM's 1024x1024 input (emb.resizeSize).
 */
export function lowResMaskCounts(
  lowRes: Float32Array,
  resize: readonly [number, number],
  h: number,
  w: number,
  threshold = 0,
  offset = 0,
): Uint32Array {
  const [rh, rw] = resize;
  if (!(rh >= 1 && rw >= 1 && rh <= SAM && rw <= SAM))
    throw new RangeError(`resize size ${rh}x${rw} is not inside SAM's ${SAM}x${SAM} input`);
  if (lowRes.length < offset + LOW * LOW)
    throw new RangeError(`low-res mask logits have ${lowRes.length - offset} values, expected ${LOW}*${LOW}`);
  if (!(h >= 1 && w >= 1)) throw new RangeError(`image size ${h}x${w}`);

  // 256 -> 1024, only the crop [0, rh) x [0, rw); stored column-major (s1[x * rh + y]) for the column walk below.
  // Separable, as PyTorch's sums are: the horizontal pass of each low-res row (hc[x * LOW + row]), then vertical.
  const r1 = taps(LOW, SAM, rh);
  const c1 = taps(LOW, SAM, rw);
  const hc = new Float64Array(rw * LOW);
  for (let x = 0; x < rw; x++) {
    const a = offset + c1.i0[x];
    const b = offset + c1.i1[x];
    const wb = c1.w1[x];
    const wa = 1 - wb;
    for (let row = 0, o = x * LOW, p = 0; row < LOW; row++, o++, p += LOW)
      hc[o] = wa * lowRes[p + a] + wb * lowRes[p + b];
  }
  const s1 = new Float64Array(rw * rh);
  for (let x = 0; x < rw; x++) {
    const base = x * LOW;
    for (let y = 0, o = x * rh; y < rh; y++, o++) {
      const wq = r1.w1[y];
      s1[o] = (1 - wq) * hc[base + r1.i0[y]] + wq * hc[base + r1.i1[y]];
    }
  }

  // rh x rw -> h x w. Output rows with the same lower source row i make one group: rows first[i] .. first[i + 1] - 1,
  // between source rows i and i + 1 (i at the last row); output columns likewise between source columns a and a + 1.
  const r2 = taps(rh, h);
  const c2 = taps(rw, w);
  const first = new Int32Array(rh + 1).fill(h);
  for (let y = h - 1; y >= 0; y--) first[r2.i0[y]] = y;
  for (let i = rh - 1; i >= 0; i--) if (first[i] > first[i + 1]) first[i] = first[i + 1];

  // Each cell of source columns (a, a + 1) and rows (i, i + 1): 1 when its four values are all above the threshold,
  // 0 when all are at or below it, 2 otherwise; kept per column a as segments of equal class (segRow: first row,
  // segClass), column a's segments at segOff[a] .. segOff[a + 1] - 1.
  let segRow = new Int32Array(4 * rw);
  let segClass = new Uint8Array(segRow.length);
  const segOff = new Int32Array(rw + 1);
  let ns = 0;
  for (let a = 0; a < rw; a++) {
    const pa = a * rh;
    const pb = (a < rw - 1 ? a + 1 : a) * rh;
    let prev = -1;
    for (let i = 0; i < rh; i++) {
      const i1 = i < rh - 1 ? i + 1 : i;
      const u = s1[pa + i];
      const v = s1[pb + i];
      const x = s1[pa + i1];
      const y = s1[pb + i1];
      const cls =
        u > threshold && v > threshold && x > threshold && y > threshold
          ? 1
          : u <= threshold && v <= threshold && x <= threshold && y <= threshold
            ? 0
            : 2;
      if (cls === prev) continue;
      if (ns === segRow.length) {
        segRow = doubled(segRow);
        segClass = doubled(segClass);
      }
      segRow[ns] = i;
      segClass[ns++] = cls;
      prev = cls;
    }
    segOff[a + 1] = ns;
  }

  let counts = new Uint32Array(1024);
  let k = 0;
  let cur = 0; // the value of the run being counted; COCO counts start with a run of zeros
  let run = 0;
  const emit = (v: number, len: number) => {
    if (len === 0) return; // a segment of source rows that no output row falls between (downsampling)
    if (v === cur) {
      run += len;
      return;
    }
    if (k === counts.length) counts = doubled(counts);
    counts[k++] = run;
    cur = v;
    run = len;
  };
  for (let x = 0; x < w; x++) {
    const a = c2.i0[x];
    const pa = a * rh;
    const pb = c2.i1[x] * rh;
    const wb = c2.w1[x];
    const wa = 1 - wb;
    for (let sg = segOff[a], end = segOff[a + 1]; sg < end; sg++) {
      const iS = segRow[sg];
      const iE = sg + 1 < end ? segRow[sg + 1] : rh;
      if (segClass[sg] !== 2) {
        emit(segClass[sg], first[iE] - first[iS]);
        continue;
      }
      for (let i = iS; i < iE; i++) {
        const ys = first[i];
        const ye = first[i + 1];
        if (ys === ye) continue;
        const i1 = i < rh - 1 ? i + 1 : i;
        const p = wa * s1[pa + i] + wb * s1[pb + i];
        const q = wa * s1[pa + i1] + wb * s1[pb + i1];
        if (p > threshold && q > threshold) emit(1, ye - ys);
        else if (p <= threshold && q <= threshold) emit(0, ye - ys);
        else
          for (let y = ys; y < ye; y++) {
            const wy = r2.w1[y];
            emit((1 - wy) * p + wy * q > threshold ? 1 : 0, 1);
          }
      }
    }
  }
  if (k === counts.length) counts = doubled(counts);
  counts[k++] = run; // the last run
  return counts.slice(0, k);
}
