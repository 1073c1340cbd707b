// Geometry of the editor: affine matrices, rectangles, the view's pan and zoom, box snapping.
// Pure: no DOM, no canvas; every function takes plain numbers and objects and returns new ones.

/** An affine matrix [a, b, c, d, e, f], as in canvas `setTransform(a, b, c, d, e, f)`. */
export const IDENTITY = Object.freeze([1, 0, 0, 1, 0, 0]);

export function multiply(m, n) {
  return [
    m[0] * n[0] + m[2] * n[1],
    m[1] * n[0] + m[3] * n[1],
    m[0] * n[2] + m[2] * n[3],
    m[1] * n[2] + m[3] * n[3],
    m[0] * n[4] + m[2] * n[5] + m[4],
    m[1] * n[4] + m[3] * n[5] + m[5],
  ];
}

export function invert(m) {
  const det = m[0] * m[3] - m[1] * m[2];
  if (!det) throw new Error("the matrix cannot be inverted (a layer scaled to zero)");
  return [
    m[3] / det,
    -m[1] / det,
    -m[2] / det,
    m[0] / det,
    (m[2] * m[5] - m[3] * m[4]) / det,
    (m[1] * m[4] - m[0] * m[5]) / det,
  ];
}

export function apply(m, x, y) {
  return { x: m[0] * x + m[2] * y + m[4], y: m[1] * x + m[3] * y + m[5] };
}

export const translate = (x, y) => [1, 0, 0, 1, x, y];
export const scale = (sx, sy = sx) => [sx, 0, 0, sy, 0, 0];
export function rotate(radians) {
  const c = Math.cos(radians), s = Math.sin(radians);
  return [c, s, -s, c, 0, 0];
}

/**
 * A layer's matrix from its own pixels to document pixels. `x, y` is where the layer's
 * top-left corner lands when it is not rotated; rotation turns it about its centre.
 */
export function layerMatrix(layer) {
  const w = layer.width * layer.scaleX, h = layer.height * layer.scaleY;
  let m = translate(layer.x + w / 2, layer.y + h / 2);
  m = multiply(m, rotate(layer.rotation));
  m = multiply(m, scale(layer.scaleX, layer.scaleY));
  return multiply(m, translate(-layer.width / 2, -layer.height / 2));
}

/** The four corners of a layer in document pixels (clockwise from its own top-left). */
export function layerCorners(layer) {
  const m = layerMatrix(layer);
  return [
    apply(m, 0, 0), apply(m, layer.width, 0), apply(m, layer.width, layer.height), apply(m, 0, layer.height),
  ];
}

export function boundsOfPoints(points) {
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  const x = Math.min(...xs), y = Math.min(...ys);
  return { x, y, w: Math.max(...xs) - x, h: Math.max(...ys) - y };
}

/** The rectangle spanned by two corners, whichever way it was dragged. */
export function rectFromPoints(a, b) {
  return { x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), w: Math.abs(a.x - b.x), h: Math.abs(a.y - b.y) };
}

export function roundRect(r) {
  const x = Math.round(r.x), y = Math.round(r.y);
  return { x, y, w: Math.round(r.x + r.w) - x, h: Math.round(r.y + r.h) - y };
}

export function intersect(a, b) {
  const x = Math.max(a.x, b.x), y = Math.max(a.y, b.y);
  const w = Math.min(a.x + a.w, b.x + b.w) - x, h = Math.min(a.y + a.h, b.y + b.h) - y;
  return w > 0 && h > 0 ? { x, y, w, h } : null;
}

export function union(a, b) {
  if (!a) return b;
  if (!b) return a;
  const x = Math.min(a.x, b.x), y = Math.min(a.y, b.y);
  return { x, y, w: Math.max(a.x + a.w, b.x + b.w) - x, h: Math.max(a.y + a.h, b.y + b.h) - y };
}

export function contains(r, p) {
  return p.x >= r.x && p.y >= r.y && p.x <= r.x + r.w && p.y <= r.y + r.h;
}

/** Is the document point inside the layer's (possibly rotated) rectangle? */
export function hitsLayer(layer, p) {
  const local = apply(invert(layerMatrix(layer)), p.x, p.y);
  return local.x >= 0 && local.y >= 0 && local.x <= layer.width && local.y <= layer.height;
}

// -- the view -------------------------------------------------------------------------------

export const MIN_ZOOM = 1 / 64;
export const MAX_ZOOM = 64;

/** screen = doc * zoom + pan */
export function viewMatrix(view) {
  return [view.zoom, 0, 0, view.zoom, view.panX, view.panY];
}

export function toDoc(view, sx, sy) {
  return { x: (sx - view.panX) / view.zoom, y: (sy - view.panY) / view.zoom };
}

export function toScreen(view, x, y) {
  return { x: x * view.zoom + view.panX, y: y * view.zoom + view.panY };
}

/** Zoom by `factor` keeping the document point under the screen point (sx, sy) in place. */
export function zoomAt(view, factor, sx, sy) {
  const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, view.zoom * factor));
  const doc = toDoc(view, sx, sy);
  return { zoom, panX: sx - doc.x * zoom, panY: sy - doc.y * zoom };
}

/** The view that shows a `w`×`h` document whole and centred in a viewport, with a margin. */
export function fitView(w, h, viewportW, viewportH, margin = 24) {
  const zoom = Math.min(
    MAX_ZOOM,
    Math.max(MIN_ZOOM, Math.min((viewportW - 2 * margin) / w, (viewportH - 2 * margin) / h)),
  );
  return { zoom, panX: (viewportW - w * zoom) / 2, panY: (viewportH - h * zoom) / 2 };
}

// -- the generation box ---------------------------------------------------------------------

/** The nearest multiple of `multiple` to `value` within [min, max] (bounds rounded inwards). */
export function snapSide(value, multiple, min = multiple, max = Infinity) {
  const m = Math.max(1, Math.round(multiple));
  const low = Math.max(m, Math.ceil(min / m) * m);
  const high = Math.floor(max / m) * m;
  if (high < low) return low; // no multiple fits: the smallest legal one is the best answer
  return Math.min(high, Math.max(low, Math.round(value / m) * m));
}

export function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return Math.abs(a);
}

export function lcm(a, b) {
  return a && b ? Math.abs(a * b) / gcd(a, b) : Math.max(a, b);
}

/**
 * The box with its sides snapped to `limits.multiple` and bounded by `limits` (minW, maxW,
 * minH, maxH), its position on whole pixels. `anchor` says which corner stays put while the
 * size changes ("nw" keeps the top-left, "se" the bottom-right, "center" the centre).
 */
export function snapBox(box, limits, anchor = "nw") {
  const m = limits.multiple || 8;
  const w = snapSide(box.w, m, limits.minW ?? m, limits.maxW ?? Infinity);
  const h = snapSide(box.h, m, limits.minH ?? m, limits.maxH ?? Infinity);
  let x = box.x, y = box.y;
  if (anchor === "center") {
    x = box.x + (box.w - w) / 2;
    y = box.y + (box.h - h) / 2;
  } else {
    if (anchor.includes("e")) x = box.x + box.w - w;
    if (anchor.includes("s")) y = box.y + box.h - h;
  }
  return { x: Math.round(x), y: Math.round(y), w, h };
}

/**
 * How far the box reaches past each edge of the document (0 where it stays inside), and the
 * part of the box that is inside. Outpainting is a box that reaches past an edge.
 */
export function boxOverhang(box, doc) {
  const inside = intersect(box, { x: 0, y: 0, w: doc.width, h: doc.height });
  return {
    left: Math.max(0, -box.x),
    top: Math.max(0, -box.y),
    right: Math.max(0, box.x + box.w - doc.width),
    bottom: Math.max(0, box.y + box.h - doc.height),
    inside,
  };
}

/**
 * For a task that takes an image plus extensions on each side: the part of the box inside the
 * document, shrunk so that its sides are multiples of `multiple`, and the extensions rounded
 * to multiples of `multiple` so that image + extensions covers the box.
 */
export function outpaintSplit(box, doc, multiple = 8) {
  const o = boxOverhang(box, doc);
  if (!o.inside) return null;
  const m = Math.max(1, multiple);
  // Rounding the overhangs up keeps the image part inside the document.
  const up = (v) => Math.ceil(v / m) * m;
  const left = up(o.left), top = up(o.top), right = up(o.right), bottom = up(o.bottom);
  const w = Math.floor((box.w - left - right) / m) * m, h = Math.floor((box.h - top - bottom) / m) * m;
  if (w < m || h < m) return null;
  const image = { x: box.x + left, y: box.y + top, w, h };
  return {
    image,
    left,
    top,
    right: box.w - left - image.w,
    bottom: box.h - top - image.h,
  };
}

/** The scale and offset that fit an image of `w`×`h` into `box` (stretching to fill it). */
export function placeInBox(w, h, box) {
  return { x: box.x, y: box.y, scaleX: box.w / w, scaleY: box.h / h };
}
