// The inpainting mask: painted as alpha over the document, sent as a grey image the size of
// the task's picture (white = repaint, black = keep). Pure: works on RGBA typed arrays.

/** The colour the mask is painted and shown in (its alpha is what counts). */
export const MASK_RGB = [255, 48, 96];

/**
 * The mask a task receives, as opaque grey RGBA: each pixel's grey is the painted alpha, or
 * 255 - alpha when `invert`. Pixels outside `inside` (the part of the box that covers the
 * document, in box coordinates) are white whatever `invert` says: there is no picture there,
 * so it must be painted (outpainting by mask).
 */
export function exportMask(rgba, width, height, { invert = false, inside = null } = {}) {
  if (rgba.length !== width * height * 4) throw new RangeError("mask data does not match its size");
  const out = new Uint8ClampedArray(width * height * 4);
  const x0 = inside ? inside.x : 0, y0 = inside ? inside.y : 0;
  const x1 = inside ? inside.x + inside.w : width, y1 = inside ? inside.y + inside.h : height;
  for (let y = 0; y < height; y++) {
    const inRow = y >= y0 && y < y1;
    for (let x = 0, i = y * width * 4; x < width; x++, i += 4) {
      let v;
      if (!inRow || x < x0 || x >= x1) v = 255;
      else v = invert ? 255 - rgba[i + 3] : rgba[i + 3];
      out[i] = v;
      out[i + 1] = v;
      out[i + 2] = v;
      out[i + 3] = 255;
    }
  }
  return out;
}

/** The share of pixels (0 to 1) whose painted alpha is at least half. */
export function maskCoverage(rgba) {
  let on = 0;
  const n = rgba.length / 4;
  for (let i = 3; i < rgba.length; i += 4) if (rgba[i] >= 128) on++;
  return n ? on / n : 0;
}

/** Invert a painted mask in place: painted becomes clear and clear becomes painted. */
export function invertMask(rgba) {
  const [r, g, b] = MASK_RGB;
  for (let i = 0; i < rgba.length; i += 4) {
    rgba[i] = r;
    rgba[i + 1] = g;
    rgba[i + 2] = b;
    rgba[i + 3] = 255 - rgba[i + 3];
  }
  return rgba;
}

/** Is anything painted at all? (A task with a mask needs some of it.) */
export function isMaskEmpty(rgba) {
  for (let i = 3; i < rgba.length; i += 4) if (rgba[i]) return false;
  return true;
}
