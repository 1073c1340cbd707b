// Effects on pixels: brightness, contrast, saturation, hue, blur, pixelate, noise, invert.
// Pure: each works in place on an ImageData-like {data: Uint8ClampedArray (RGBA), width,
// height}, so the same code runs on the main thread, in a worker and in unit tests.

/** The effects a person can apply, with their one parameter. */
export const EFFECTS = Object.freeze([
  { name: "brightness", label: "Brightness", min: -100, max: 100, step: 1, default: 20, neutral: 0, unit: "" },
  { name: "contrast", label: "Contrast", min: -100, max: 100, step: 1, default: 20, neutral: 0, unit: "" },
  { name: "saturation", label: "Saturation", min: -100, max: 100, step: 1, default: 30, neutral: 0, unit: "" },
  { name: "hue", label: "Hue", min: -180, max: 180, step: 1, default: 30, neutral: 0, unit: "°" },
  { name: "blur", label: "Blur", min: 0, max: 64, step: 0.5, default: 4, neutral: 0, unit: "px", scales: true },
  { name: "pixelate", label: "Pixelate", min: 1, max: 128, step: 1, default: 8, neutral: 1, unit: "px", scales: true },
  { name: "noise", label: "Noise", min: 0, max: 100, step: 1, default: 20, neutral: 0, unit: "" },
  { name: "invert", label: "Invert", min: 0, max: 100, step: 1, default: 100, neutral: 0, unit: "%" },
]);

export function effectInfo(name) {
  const info = EFFECTS.find((e) => e.name === name);
  if (!info) throw new Error(`no effect named ${JSON.stringify(name)}`);
  return info;
}

export function isNeutral(name, amount) {
  return Number(amount) === effectInfo(name).neutral;
}

/**
 * Apply effect `name` with `amount` to `image` in place and return it. `scale` is the image's
 * size relative to the full-size layer (a preview at half size passes 0.5), so that blur
 * radii and pixel blocks look the same in a preview as in the result. `seed` makes noise
 * repeatable.
 */
export function applyEffect(image, name, amount, { scale = 1, seed = 1 } = {}) {
  amount = Number(amount);
  const info = effectInfo(name);
  amount = Math.min(info.max, Math.max(info.min, amount));
  if (amount === info.neutral) return image;
  switch (name) {
    case "brightness":
      return applyLut(image, brightnessLut(amount));
    case "contrast":
      return applyLut(image, contrastLut(amount));
    case "invert":
      return applyLut(image, invertLut(amount));
    case "saturation":
      return applyMatrix(image, saturationMatrix(1 + amount / 100));
    case "hue":
      return applyMatrix(image, hueMatrix((amount * Math.PI) / 180));
    case "blur":
      return blur(image, amount * scale);
    case "pixelate":
      return pixelate(image, Math.max(1, Math.round(amount * scale)));
    case "noise":
      return noise(image, amount, seed);
  }
  return image;
}

// -- colour: lookup tables and matrices --------------------------------------------------------

const clamp255 = (v) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

export function brightnessLut(amount) {
  const lut = new Uint8ClampedArray(256);
  for (let v = 0; v < 256; v++) lut[v] = clamp255(v + amount * 2.55);
  return lut;
}

/** The classic contrast curve around mid-grey: -100 makes everything grey. */
export function contrastLut(amount) {
  const c = amount * 2.55;
  const f = (259 * (c + 255)) / (255 * (259 - c));
  const lut = new Uint8ClampedArray(256);
  for (let v = 0; v < 256; v++) lut[v] = clamp255(f * (v - 128) + 128);
  return lut;
}

export function invertLut(amount) {
  const t = amount / 100;
  const lut = new Uint8ClampedArray(256);
  for (let v = 0; v < 256; v++) lut[v] = clamp255(v + (255 - 2 * v) * t);
  return lut;
}

export function applyLut(image, lut) {
  const d = image.data;
  for (let i = 0, n = d.length; i < n; i += 4) {
    d[i] = lut[d[i]];
    d[i + 1] = lut[d[i + 1]];
    d[i + 2] = lut[d[i + 2]];
  }
  return image;
}

/** The CSS `saturate()` matrix (Rec. 709 luma), as 9 numbers row by row. */
export function saturationMatrix(s) {
  return [
    0.2126 + 0.7874 * s, 0.7152 - 0.7152 * s, 0.0722 - 0.0722 * s,
    0.2126 - 0.2126 * s, 0.7152 + 0.2848 * s, 0.0722 - 0.0722 * s,
    0.2126 - 0.2126 * s, 0.7152 - 0.7152 * s, 0.0722 + 0.9278 * s,
  ];
}

/** The CSS `hue-rotate()` matrix: turns hue while keeping luma. */
export function hueMatrix(radians) {
  const c = Math.cos(radians), s = Math.sin(radians);
  return [
    0.213 + c * 0.787 - s * 0.213, 0.715 - c * 0.715 - s * 0.715, 0.072 - c * 0.072 + s * 0.928,
    0.213 - c * 0.213 + s * 0.143, 0.715 + c * 0.285 + s * 0.14, 0.072 - c * 0.072 - s * 0.283,
    0.213 - c * 0.213 - s * 0.787, 0.715 - c * 0.715 + s * 0.715, 0.072 + c * 0.928 + s * 0.072,
  ];
}

export function applyMatrix(image, m) {
  // Nine tables of products turn 9 multiplications per pixel into lookups.
  const t = Array.from(m, (k) => {
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) table[v] = k * v;
    return table;
  });
  const [t0, t1, t2, t3, t4, t5, t6, t7, t8] = t;
  const d = image.data;
  for (let i = 0, n = d.length; i < n; i += 4) {
    const r = d[i], g = d[i + 1], b = d[i + 2];
    d[i] = t0[r] + t1[g] + t2[b];
    d[i + 1] = t3[r] + t4[g] + t5[b];
    d[i + 2] = t6[r] + t7[g] + t8[b];
  }
  return image;
}

// -- noise -------------------------------------------------------------------------------------

/** A small fast seeded generator (mulberry32) giving 32-bit integers. */
export function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Monochrome grain: the same offset on R, G and B, uniform in ±amount×1.27. */
export function noise(image, amount, seed = 1) {
  const next = mulberry32(seed);
  const spread = amount * 2.55; // a full-range offset at 100
  const d = image.data;
  for (let i = 0, n = d.length; i < n; i += 4) {
    const offset = ((next() & 0xffff) / 0xffff - 0.5) * spread;
    d[i] += offset;
    d[i + 1] += offset;
    d[i + 2] += offset;
  }
  return image;
}

// -- pixelate ----------------------------------------------------------------------------------

/** Each block×block cell takes its average colour (weighted by alpha) and average alpha. */
export function pixelate(image, block) {
  const { data: d, width: w, height: h } = image;
  if (block <= 1) return image;
  for (let by = 0; by < h; by += block) {
    const y1 = Math.min(h, by + block);
    for (let bx = 0; bx < w; bx += block) {
      const x1 = Math.min(w, bx + block);
      let r = 0, g = 0, b = 0, a = 0;
      for (let y = by; y < y1; y++) {
        for (let i = (y * w + bx) * 4, end = (y * w + x1) * 4; i < end; i += 4) {
          const alpha = d[i + 3];
          r += d[i] * alpha;
          g += d[i + 1] * alpha;
          b += d[i + 2] * alpha;
          a += alpha;
        }
      }
      const count = (y1 - by) * (x1 - bx);
      const R = a ? r / a : 0, G = a ? g / a : 0, B = a ? b / a : 0, A = a / count;
      for (let y = by; y < y1; y++) {
        for (let i = (y * w + bx) * 4, end = (y * w + x1) * 4; i < end; i += 4) {
          d[i] = R;
          d[i + 1] = G;
          d[i + 2] = B;
          d[i + 3] = A;
        }
      }
    }
  }
  return image;
}

// -- blur --------------------------------------------------------------------------------------

/** Widths of three box blurs whose sequence approximates a Gaussian of deviation `sigma`. */
export function boxesForGauss(sigma, n = 3) {
  const ideal = Math.sqrt((12 * sigma * sigma) / n + 1);
  let wl = Math.floor(ideal);
  if (wl % 2 === 0) wl--;
  const wu = wl + 2;
  const m = Math.round((12 * sigma * sigma - n * wl * wl - 4 * n * wl - 3 * n) / (-4 * wl - 4));
  return Array.from({ length: n }, (_, i) => (i < m ? wl : wu));
}

/**
 * A Gaussian-like blur of deviation `sigma` pixels: three box blurs, each a pass along rows
 * and one down columns with running sums. Transparent pixels do not bleed their colour: the
 * passes work on premultiplied colour. From sigma 3 up the blur runs on a copy reduced k
 * times (k ≈ sigma / 1.5) and is scaled back bilinearly: a blurred picture has no detail a
 * reduced copy would lose, and the work falls by k².
 */
export function blur(image, sigma) {
  if (!(sigma > 0.3)) return image;
  const { data: d, width: w, height: h } = image;
  const k = Math.max(1, Math.min(16, Math.floor(sigma / 1.5), Math.floor(Math.min(w, h) / 4)));
  const opaque = isOpaque(d);
  const sw = Math.ceil(w / k), sh = Math.ceil(h / k);
  let a = reducePremultiplied(d, w, h, k, opaque);
  let b = new Uint16Array(a.length);
  // A k×k average already blurs by a variance of (k² - 1) / 12 full-size pixels².
  const reducedSigma = Math.sqrt(Math.max(0, sigma * sigma - (k * k - 1) / 12)) / k;
  if (reducedSigma > 0.3) {
    for (const size of boxesForGauss(reducedSigma)) {
      const r = (size - 1) >> 1;
      if (r < 1) continue;
      boxRows(a, b, sw, sh, r);
      boxColumns(b, a, sw, sh, r);
    }
  }
  b = null;
  expandUnpremultiplied(a, sw, sh, k, d, w, h, opaque);
  return image;
}

function isOpaque(d) {
  for (let i = 3; i < d.length; i += 4) if (d[i] !== 255) return false;
  return true;
}

/** The image reduced k times (block averages), premultiplied, in fixed point ×128. */
function reducePremultiplied(d, w, h, k, opaque) {
  const sw = Math.ceil(w / k), sh = Math.ceil(h / k);
  const out = new Uint16Array(sw * sh * 4);
  if (k === 1) {
    for (let i = 0; i < d.length; i += 4) {
      const m = opaque ? 128 : (d[i + 3] * 128) / 255;
      out[i] = d[i] * m + 0.5;
      out[i + 1] = d[i + 1] * m + 0.5;
      out[i + 2] = d[i + 2] * m + 0.5;
      out[i + 3] = d[i + 3] * 128;
    }
    return out;
  }
  const acc = new Float64Array(sw * 4), count = new Uint32Array(sw);
  for (let sy = 0; sy < sh; sy++) {
    acc.fill(0);
    count.fill(0);
    for (let y = sy * k, y1 = Math.min(h, y + k); y < y1; y++) {
      for (let x = 0, i = y * w * 4; x < w; x++, i += 4) {
        const s = (x / k) | 0, o = s * 4;
        const m = opaque ? 1 : d[i + 3] / 255;
        acc[o] += d[i] * m;
        acc[o + 1] += d[i + 1] * m;
        acc[o + 2] += d[i + 2] * m;
        acc[o + 3] += d[i + 3];
        count[s]++;
      }
    }
    for (let s = 0, o = sy * sw * 4; s < sw; s++, o += 4) {
      const f = 128 / count[s];
      out[o] = acc[s * 4] * f + 0.5;
      out[o + 1] = acc[s * 4 + 1] * f + 0.5;
      out[o + 2] = acc[s * 4 + 2] * f + 0.5;
      out[o + 3] = acc[s * 4 + 3] * f + 0.5;
    }
  }
  return out;
}

/** Write the reduced premultiplied image back at full size (bilinear), unpremultiplied. */
function expandUnpremultiplied(src, sw, sh, k, d, w, h, opaque) {
  if (k === 1) {
    writeRow(src, 0, d, 0, d.length, opaque);
    return;
  }
  // Source position of each output column: its left neighbour, the right one, and the weight.
  const x0 = new Uint32Array(w), x1 = new Uint32Array(w), fx = new Float32Array(w);
  for (let x = 0; x < w; x++) {
    const u = Math.min(sw - 1, Math.max(0, (x + 0.5) / k - 0.5));
    x0[x] = Math.floor(u);
    x1[x] = Math.min(sw - 1, x0[x] + 1);
    fx[x] = u - x0[x];
  }
  // Rows of the reduced image widened to full width, kept for the two source rows in use.
  const widen = (sy, row) => {
    const base = sy * sw * 4;
    for (let x = 0; x < w; x++) {
      const a = base + x0[x] * 4, b = base + x1[x] * 4, t = fx[x], o = x * 4;
      row[o] = src[a] + (src[b] - src[a]) * t;
      row[o + 1] = src[a + 1] + (src[b + 1] - src[a + 1]) * t;
      row[o + 2] = src[a + 2] + (src[b + 2] - src[a + 2]) * t;
      row[o + 3] = src[a + 3] + (src[b + 3] - src[a + 3]) * t;
    }
    return row;
  };
  let top = new Float32Array(w * 4), bottom = new Float32Array(w * 4);
  const mixed = new Float32Array(w * 4);
  let topIndex = -1;
  for (let y = 0; y < h; y++) {
    const v = Math.min(sh - 1, Math.max(0, (y + 0.5) / k - 0.5));
    const y0 = Math.floor(v), t = v - y0, y1 = Math.min(sh - 1, y0 + 1);
    if (y0 !== topIndex) {
      if (topIndex >= 0 && y0 === topIndex + 1) [top, bottom] = [bottom, top];
      else widen(y0, top);
      widen(y1, bottom);
      topIndex = y0;
    }
    for (let x = 0; x < w * 4; x++) mixed[x] = top[x] + (bottom[x] - top[x]) * t;
    writeRow(mixed, 0, d, y * w * 4, w * 4, opaque);
  }
}

/** Fixed-point premultiplied values (×128) back into straight 8-bit RGBA. */
function writeRow(src, from, d, at, length, opaque) {
  if (opaque) {
    for (let i = 0; i < length; i++) d[at + i] = src[from + i] / 128;
    return;
  }
  for (let i = 0; i < length; i += 4) {
    const a = src[from + i + 3];
    if (a > 0) {
      const f = 255 / a;
      d[at + i] = src[from + i] * f;
      d[at + i + 1] = src[from + i + 1] * f;
      d[at + i + 2] = src[from + i + 2] * f;
    }
    d[at + i + 3] = a / 128;
  }
}

/** A box blur of radius `r` along each row, four channels at once; edges repeat. */
function boxRows(src, dst, w, h, r) {
  const norm = 1 / (2 * r + 1);
  for (let y = 0; y < h; y++) {
    const row = y * w * 4, lastPx = row + (w - 1) * 4;
    let s0 = src[row] * (r + 1), s1 = src[row + 1] * (r + 1);
    let s2 = src[row + 2] * (r + 1), s3 = src[row + 3] * (r + 1);
    for (let k = 1; k <= r; k++) {
      const at = row + Math.min(k, w - 1) * 4;
      s0 += src[at];
      s1 += src[at + 1];
      s2 += src[at + 2];
      s3 += src[at + 3];
    }
    for (let x = 0; x < w; x++) {
      const o = row + x * 4;
      dst[o] = s0 * norm + 0.5;
      dst[o + 1] = s1 * norm + 0.5;
      dst[o + 2] = s2 * norm + 0.5;
      dst[o + 3] = s3 * norm + 0.5;
      const add = x + r + 1 < w ? row + (x + r + 1) * 4 : lastPx;
      const drop = x - r > 0 ? row + (x - r) * 4 : row;
      s0 += src[add] - src[drop];
      s1 += src[add + 1] - src[drop + 1];
      s2 += src[add + 2] - src[drop + 2];
      s3 += src[add + 3] - src[drop + 3];
    }
  }
}

/** A box blur of radius `r` down each column, keeping one running sum per column so that
 * memory is read row by row (cache friendly); edges repeat. */
function boxColumns(src, dst, w, h, r) {
  const norm = 1 / (2 * r + 1);
  const stride = w * 4;
  const sums = new Float64Array(stride);
  const lastRow = (h - 1) * stride;
  for (let i = 0; i < stride; i++) sums[i] = src[i] * (r + 1);
  for (let k = 1; k <= r; k++) {
    const row = Math.min(k, h - 1) * stride;
    for (let i = 0; i < stride; i++) sums[i] += src[row + i];
  }
  for (let y = 0; y < h; y++) {
    const out = y * stride;
    const add = y + r + 1 < h ? (y + r + 1) * stride : lastRow;
    const drop = y - r > 0 ? (y - r) * stride : 0;
    for (let i = 0; i < stride; i++) {
      dst[out + i] = sums[i] * norm + 0.5;
      sums[i] += src[add + i] - src[drop + i];
    }
  }
}
