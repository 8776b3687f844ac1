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
  const r1 = taps(LOW, SAM, rh);
  const c1 = taps(LOW, SAM, rw);
  const s1 = new Float64Array(rw * rh);
  for (let x = 0; x < rw; x++) {
    const a = offset + c1.i0[x];
    const b = offset + c1.i1[x];
    const wb = c1.w1[x];
    const wa = 1 - wb;
    for (let y = 0, o = x * rh; y < rh; y++, o++) {
      const p = r1.i0[y] * LOW;
      const q = r1.i1[y] * LOW;
      const wq = r1.w1[y];
      s1[o] = (1 - wq) * (wa * lowRes[p + a] + wb * lowRes[p + b]) + wq * (wa * lowRes[q + a] + wb * lowRes[q + b]);
    }
  }

  // rh x rw -> h x w. Output rows with the same lower source row i make one group: rows first[i] .. first[i + 1] - 1.
  const r2 = taps(rh, h);
  const c2 = taps(rw, w);
  const first = new Int32Array(rh + 1).fill(h);
  for (let y = h - 1; y >= 0; y--) first[r2.i0[y]] = y;
  for (let i = rh - 1; i >= 0; i--) if (first[i] > first[i + 1]) first[i] = first[i + 1];

  let counts = new Uint32Array(1024);
  let k = 0;
  let cur = 0; // the value of the run being counted; COCO counts start with a run of zeros
  let run = 0;
  const emit = (v: number, len: number) => {
    if (v === cur) {
      run += len;
      return;
    }
    if (k === counts.length) {
      const c = new Uint32Array(k * 2);
      c.set(counts);
      counts = c;
    }
    counts[k++] = run;
    cur = v;
    run = len;
  };
  const col = new Float64Array(rh);
  for (let x = 0; x < w; x++) {
    const a = c2.i0[x] * rh;
    const b = c2.i1[x] * rh;
    const wb = c2.w1[x];
    const wa = 1 - wb;
    for (let i = 0; i < rh; i++) col[i] = wa * s1[a + i] + wb * s1[b + i];
    for (let i = 0; i < rh; i++) {
      const ys = first[i];
      const ye = first[i + 1];
      if (ys === ye) continue;
      const p = col[i];
      const q = col[r2.i1[ys]];
      if (p > threshold && q > threshold) emit(1, ye - ys);
      else if (p <= threshold && q <= threshold) emit(0, ye - ys);
      else
        for (let y = ys; y < ye; y++) {
          const wy = r2.w1[y];
          emit((1 - wy) * p + wy * q > threshold ? 1 : 0, 1);
        }
    }
  }
  emit(cur ^ 1, 0); // close the last run
  return counts.slice(0, k);
}
