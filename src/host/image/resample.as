// WebAssembly SIMD kernels of the Pillow-exact resampler (AssemblyScript; built into out/src/host/image/resample.wasm
// by build-wasm.mjs). They compute exactly what Pillow's 8-bit ImagingResample computes: int32 accumulators that start
// at 1 << 21, `acc >> 22` clipped to 0..255. resample.ts computes the fixed-point coefficients (PRECISION_BITS 22) and
// drives these kernels row by row; see the top of resample.ts.
//
// Memory is imported (shared, so that the CLIP worker thread can read the same pixels); all pointers are byte offsets
// into it. Loads may read up to 15 bytes past a row or buffer (resample.ts leaves that slack); stores never write
// outside their row.

const HALF: i32 = 1 << 21;
const ONE: f64 = <f64>(1 << 22);
const HI_LIMIT: i32 = 32767;

// ---- coefficients: Pillow's precompute_coeffs + normalize_coeffs_8bpc, in float64 exactly as Resample.c ----

function bilinearFilter(x: f64): f64 {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

function bicubicFilter(x: f64): f64 {
  // a = -0.5, written as Pillow writes it (same operation order, so the same doubles)
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((-0.5 + 2.0) * x - (-0.5 + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * -0.5;
  return 0.0;
}

// Output indices [from, from + count) of a resize inSize -> outSize (box 0..inSize): per index its first input index
// and number of taps in `bounds` (2 i32), its fixed-point weights in `kk` (ksize i32, the unused ones left as they
// are); `w` is room for ksize f64. Per output index: center = (i + 0.5) * scale, filterscale = max(scale, 1),
// support = filter support * filterscale, taps from int(center - support + 0.5) to int(center + support + 0.5) clamped
// to the image, weights filter((x + xmin - center + 0.5) / filterscale) normalised by their sum, then rounded to
// PRECISION_BITS 22 half away from zero (C truncation of +-0.5 offsets).
export function coeffs(
  inSize: i32, outSize: i32, cubic: i32, from: i32, count: i32, ksize: i32, bounds: usize, kk: usize, w: usize,
): void {
  const scale: f64 = <f64>inSize / <f64>outSize; // (double)(in1 - in0) / outSize with in0 = 0, in1 = (float)inSize
  const filterscale: f64 = scale < 1.0 ? 1.0 : scale;
  const support: f64 = (cubic ? 2.0 : 1.0) * filterscale;
  const ss: f64 = 1.0 / filterscale;
  for (let i = 0; i < count; i++) {
    const center: f64 = (<f64>(from + i) + 0.5) * scale;
    let ww: f64 = 0.0;
    let xmin = <i32>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = <i32>(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (let x = 0; x < xmax; x++) {
      const arg: f64 = (<f64>(x + xmin) - center + 0.5) * ss;
      const v: f64 = cubic ? bicubicFilter(arg) : bilinearFilter(arg);
      store<f64>(w + (<usize>x << 3), v);
      ww += v;
    }
    const kb = kk + (<usize>(i * ksize) << 2);
    for (let x = 0; x < xmax; x++) {
      const wx = load<f64>(w + (<usize>x << 3));
      const v: f64 = ww != 0.0 ? wx / ww : wx;
      store<i32>(kb + (<usize>x << 2), v < 0 ? <i32>(-0.5 + v * ONE) : <i32>(0.5 + v * ONE));
    }
    store<i32>(bounds + (<usize>i << 3), xmin);
    store<i32>(bounds + (<usize>i << 3), xmax, 4);
  }
}

// hrow's table (below) for `count` output pixels with coefficients (bounds, kk, ksize), offsets relative to source
// column x0; the tap pairs go to `cp`. Returns the bytes of pairs written, or -1 if a weight's high half does not fit
// 16 bits (normalised weights stay under ~1.2, so 2^22 * w >> 8 < 20000; this would take a weight over 2).
export function htable(bounds: usize, kk: usize, ksize: i32, count: i32, x0: i32, pb: usize, cp: usize): i32 {
  const cp0 = cp;
  for (let x = 0; x < count; x++) {
    const n = load<i32>(bounds + (<usize>x << 3), 4);
    const np = (n + 1) >> 1;
    const e = pb + <usize>(x * 12);
    store<i32>(e, (load<i32>(bounds + (<usize>x << 3)) - x0) * 3);
    store<i32>(e, np, 4);
    store<i32>(e, <i32>cp, 8);
    const kb = kk + (<usize>(x * ksize) << 2);
    for (let t = 0; t < np; t++) {
      const ka = load<i32>(kb + (<usize>(2 * t) << 2));
      const kb2 = 2 * t + 1 < n ? load<i32>(kb + (<usize>(2 * t + 1) << 2)) : 0;
      const ha = ka >> 8;
      const hb = kb2 >> 8;
      if (ha > HI_LIMIT || ha < -HI_LIMIT || hb > HI_LIMIT || hb < -HI_LIMIT) return -1;
      // i16 lanes [ha hb ha hb ha hb 0 0] then [la lb la lb la lb 0 0]
      const hi = (ha & 0xffff) | (hb << 16);
      const lo = (ka & 255) | ((kb2 & 255) << 16);
      store<i32>(cp, hi);
      store<i32>(cp, hi, 4);
      store<i32>(cp, hi, 8);
      store<i32>(cp, 0, 12);
      store<i32>(cp, lo, 16);
      store<i32>(cp, lo, 20);
      store<i32>(cp, lo, 24);
      store<i32>(cp, 0, 28);
      cp += 32;
    }
  }
  return <i32>(cp - cp0);
}

// ---- the passes ----

// Horizontal pass of one row of 8-bit RGB.
//
// `pb` holds 3 i32 per output pixel: the byte offset of its first tap in `src`, its number of tap pairs, and the byte
// offset of its coefficients. Each tap pair (a, b) has 32 bytes of coefficients: two i16x8 vectors
// [ka_hi kb_hi ka_hi kb_hi ka_hi kb_hi 0 0] and the same with the low parts, where k = (k >> 8) * 256 + (k & 255), so
// sum(p * k) = (sum(p * k_hi) << 8) + sum(p * k_lo) exactly (wrapping int32 arithmetic, as Pillow's). A pair's two
// pixels are rearranged to i16 lanes [Ra Rb Ga Gb Ba Bb 0 0] and multiplied-and-added pairwise by i32x4.dot_i16x8_s,
// giving the R, G, B partial sums in lanes 0..2. An odd last tap has kb = 0.
export function hrow(src: usize, pb: usize, outW: i32, dst: usize): void {
  const zero = i32x4.splat(0);
  const half = i32x4.splat(HALF);
  // swizzle masks: pixels 0,1 and 2,3 of a 16-byte load, channel-major, zero-extended to i16 (lanes >= 16 give 0)
  const m01 = v128(0, -128, 3, -128, 1, -128, 4, -128, 2, -128, 5, -128, -128, -128, -128, -128);
  const m23 = v128(6, -128, 9, -128, 7, -128, 10, -128, 8, -128, 11, -128, -128, -128, -128, -128);
  let o = dst;
  const last = outW - 1;
  for (let x = 0; x < outW; x++) {
    const e = pb + <usize>(x * 12);
    let p = src + <usize>load<i32>(e);
    const np = load<i32>(e, 4);
    let cp = <usize>load<i32>(e, 8);
    let hi = zero;
    let lo = zero;
    let t = 0;
    for (; t + 1 < np; t += 2) {
      const v = v128.load(p);
      const ab = i8x16.swizzle(v, m01);
      const cd = i8x16.swizzle(v, m23);
      hi = i32x4.add(hi, i32x4.add(i32x4.dot_i16x8_s(ab, v128.load(cp)), i32x4.dot_i16x8_s(cd, v128.load(cp, 32))));
      lo = i32x4.add(lo, i32x4.add(i32x4.dot_i16x8_s(ab, v128.load(cp, 16)), i32x4.dot_i16x8_s(cd, v128.load(cp, 48))));
      p += 12;
      cp += 64;
    }
    if (t < np) {
      const ab = i8x16.swizzle(v128.load(p), m01);
      hi = i32x4.add(hi, i32x4.dot_i16x8_s(ab, v128.load(cp)));
      lo = i32x4.add(lo, i32x4.dot_i16x8_s(ab, v128.load(cp, 16)));
    }
    const acc = i32x4.shr_s(i32x4.add(i32x4.add(i32x4.shl(hi, 8), lo), half), 22);
    const w = i16x8.narrow_i32x4_s(acc, acc);
    const b = i8x16.narrow_i16x8_u(w, w);
    if (x < last) {
      v128.store32_lane(o, b, 0); // the 4th byte is overwritten by the next pixel
    } else {
      v128.store16_lane(o, b, 0);
      v128.store8_lane(o, b, 2, 2);
    }
    o += 3;
  }
}

// hrow on two rows at once (same table): each coefficient vector is loaded once for both.
export function hrow2(src0: usize, src1: usize, pb: usize, outW: i32, dst0: usize, dst1: usize): void {
  const zero = i32x4.splat(0);
  const half = i32x4.splat(HALF);
  const m01 = v128(0, -128, 3, -128, 1, -128, 4, -128, 2, -128, 5, -128, -128, -128, -128, -128);
  const m23 = v128(6, -128, 9, -128, 7, -128, 10, -128, 8, -128, 11, -128, -128, -128, -128, -128);
  const last = outW - 1;
  for (let x = 0; x < outW; x++) {
    const e = pb + <usize>(x * 12);
    const off = <usize>load<i32>(e);
    let p0 = src0 + off;
    let p1 = src1 + off;
    const np = load<i32>(e, 4);
    let cp = <usize>load<i32>(e, 8);
    let hi0 = zero;
    let lo0 = zero;
    let hi1 = zero;
    let lo1 = zero;
    let t = 0;
    for (; t + 1 < np; t += 2) {
      const kh01 = v128.load(cp);
      const kl01 = v128.load(cp, 16);
      const kh23 = v128.load(cp, 32);
      const kl23 = v128.load(cp, 48);
      const v0 = v128.load(p0);
      const a0 = i8x16.swizzle(v0, m01);
      const c0 = i8x16.swizzle(v0, m23);
      hi0 = i32x4.add(hi0, i32x4.add(i32x4.dot_i16x8_s(a0, kh01), i32x4.dot_i16x8_s(c0, kh23)));
      lo0 = i32x4.add(lo0, i32x4.add(i32x4.dot_i16x8_s(a0, kl01), i32x4.dot_i16x8_s(c0, kl23)));
      const v1 = v128.load(p1);
      const a1 = i8x16.swizzle(v1, m01);
      const c1 = i8x16.swizzle(v1, m23);
      hi1 = i32x4.add(hi1, i32x4.add(i32x4.dot_i16x8_s(a1, kh01), i32x4.dot_i16x8_s(c1, kh23)));
      lo1 = i32x4.add(lo1, i32x4.add(i32x4.dot_i16x8_s(a1, kl01), i32x4.dot_i16x8_s(c1, kl23)));
      p0 += 12;
      p1 += 12;
      cp += 64;
    }
    if (t < np) {
      const kh = v128.load(cp);
      const kl = v128.load(cp, 16);
      const a0 = i8x16.swizzle(v128.load(p0), m01);
      hi0 = i32x4.add(hi0, i32x4.dot_i16x8_s(a0, kh));
      lo0 = i32x4.add(lo0, i32x4.dot_i16x8_s(a0, kl));
      const a1 = i8x16.swizzle(v128.load(p1), m01);
      hi1 = i32x4.add(hi1, i32x4.dot_i16x8_s(a1, kh));
      lo1 = i32x4.add(lo1, i32x4.dot_i16x8_s(a1, kl));
    }
    const acc0 = i32x4.shr_s(i32x4.add(i32x4.add(i32x4.shl(hi0, 8), lo0), half), 22);
    const acc1 = i32x4.shr_s(i32x4.add(i32x4.add(i32x4.shl(hi1, 8), lo1), half), 22);
    const w = i16x8.narrow_i32x4_s(acc0, acc1);
    const b = i8x16.narrow_i16x8_u(w, w); // bytes 0..3: row 0, 4..7: row 1
    const o = <usize>(x * 3);
    if (x < last) {
      v128.store32_lane(dst0 + o, b, 0);
      v128.store32_lane(dst1 + o, b, 1);
    } else {
      v128.store16_lane(dst0 + o, b, 0);
      v128.store8_lane(dst0 + o, b, 2, 2);
      v128.store16_lane(dst1 + o, b, 2);
      v128.store8_lane(dst1 + o, b, 6, 2);
    }
  }
}

// Vertical pass producing one output row of `rowBytes` bytes: dst[i] = clip8((HALF + sum_t rows[t][i] * k[t]) >> 22).
// `rows` holds n i32 byte offsets (one per tap), `k` the n i32 fixed-point coefficients.
export function vrow(rows: usize, k: usize, n: i32, rowBytes: i32, dst: usize): void {
  if (rowBytes < 16) {
    for (let i = 0; i < rowBytes; i++) {
      let s = HALF;
      for (let t = 0; t < n; t++) {
        s += <i32>load<u8>(<usize>load<i32>(rows + (<usize>t << 2)) + <usize>i) * load<i32>(k + (<usize>t << 2));
      }
      s >>= 22;
      store<u8>(dst + <usize>i, <u8>(s < 0 ? 0 : s > 255 ? 255 : s));
    }
    return;
  }
  const half = i32x4.splat(HALF);
  const end = rowBytes - 16;
  let c = 0;
  while (true) {
    if (c > end) c = end; // the last block overlaps the one before: same values written twice, nothing past the row
    let a0 = half;
    let a1 = half;
    let a2 = half;
    let a3 = half;
    for (let t = 0; t < n; t++) {
      const kv = v128.load32_splat(k + (<usize>t << 2));
      const v = v128.load(<usize>load<i32>(rows + (<usize>t << 2)) + <usize>c);
      const l = i16x8.extend_low_i8x16_u(v);
      const h = i16x8.extend_high_i8x16_u(v);
      a0 = i32x4.add(a0, i32x4.mul(i32x4.extend_low_i16x8_u(l), kv));
      a1 = i32x4.add(a1, i32x4.mul(i32x4.extend_high_i16x8_u(l), kv));
      a2 = i32x4.add(a2, i32x4.mul(i32x4.extend_low_i16x8_u(h), kv));
      a3 = i32x4.add(a3, i32x4.mul(i32x4.extend_high_i16x8_u(h), kv));
    }
    const w0 = i16x8.narrow_i32x4_s(i32x4.shr_s(a0, 22), i32x4.shr_s(a1, 22));
    const w1 = i16x8.narrow_i32x4_s(i32x4.shr_s(a2, 22), i32x4.shr_s(a3, 22));
    v128.store(dst + <usize>c, i8x16.narrow_i16x8_u(w0, w1));
    if (c === end) break;
    c += 16;
  }
}
