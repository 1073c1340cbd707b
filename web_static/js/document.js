// The picture being edited: its size, its layers (bottom to top), the inpainting mask, the
// selection and the generation box; every change goes through an operation that is recorded
// in the undo history. Layers keep their pixels in canvases and place them with a transform.

import { History } from "./history.js";
import { layerMatrix, intersect, roundRect } from "./geometry.js";
import { MASK_RGB, invertMask } from "./mask.js";

export function makeCanvas(width, height) {
  const w = Math.max(1, Math.round(width)), h = Math.max(1, Math.round(height));
  if (typeof OffscreenCanvas === "function") return new OffscreenCanvas(w, h);
  return Object.assign(document.createElement("canvas"), { width: w, height: h });
}

/** A 2D context for pixel work: the CPU-side backing makes getImageData cheap. */
export function context(canvas) {
  return canvas.getContext("2d", { willReadFrequently: true });
}

export function copyCanvas(source, rect = { x: 0, y: 0, w: source.width, h: source.height }) {
  const copy = makeCanvas(rect.w, rect.h);
  context(copy).drawImage(source, rect.x, rect.y, rect.w, rect.h, 0, 0, rect.w, rect.h);
  return copy;
}

/** Put `patch` back into `canvas` at `rect`, replacing what is there (transparency included). */
function restore(canvas, rect, patch) {
  const ctx = context(canvas);
  ctx.clearRect(rect.x, rect.y, rect.w, rect.h);
  ctx.drawImage(patch, rect.x, rect.y);
}

let lastId = 0;

export class Layer {
  constructor({ name = "Layer", canvas, x = 0, y = 0, scaleX = 1, scaleY = 1, rotation = 0, opacity = 1, visible = true, text = null }) {
    this.id = ++lastId;
    this.name = name;
    this.canvas = canvas;
    this.x = x;
    this.y = y;
    this.scaleX = scaleX;
    this.scaleY = scaleY;
    this.rotation = rotation;
    this.opacity = opacity;
    this.visible = visible;
    this.text = text; // for text layers: what to re-render when the text is edited
  }

  get width() {
    return this.canvas.width;
  }

  get height() {
    return this.canvas.height;
  }

  get matrix() {
    return layerMatrix(this);
  }

  get transform() {
    return { x: this.x, y: this.y, scaleX: this.scaleX, scaleY: this.scaleY, rotation: this.rotation };
  }
}

const TRANSFORM_KEYS = ["x", "y", "scaleX", "scaleY", "rotation"];

export class EditorDocument extends EventTarget {
  constructor(width = 1024, height = 1024, { history = new History() } = {}) {
    super();
    this.width = width;
    this.height = height;
    this.layers = [];
    this.activeId = null;
    this.mask = makeCanvas(width, height);
    this.selection = null;
    this.box = { x: 0, y: 0, w: Math.min(512, width), h: Math.min(512, height) };
    // Where the picture's first top-left corner is now: crops and growth move it, undoably, so
    // a rectangle noted before them (a sent job's box) can be found again (`placeRect`).
    this.origin = { x: 0, y: 0 };
    this.history = history;
    this.blank = true;
  }

  /** A new blank picture nobody has touched yet: opening a file replaces it. */
  get pristine() {
    return this.blank && !this.history.canUndo && !this.history.canRedo;
  }

  changed(kind) {
    this.dispatchEvent(new CustomEvent("change", { detail: { kind } }));
  }

  get active() {
    return this.layers.find((l) => l.id === this.activeId) ?? null;
  }

  layer(id) {
    return this.layers.find((l) => l.id === id) ?? null;
  }

  indexOf(id) {
    return this.layers.findIndex((l) => l.id === id);
  }

  setActive(id) {
    if (this.activeId !== id) {
      this.activeId = id;
      this.changed("active");
    }
  }

  /** Start over with a `width`×`height` picture and no history (opening a file, New). */
  reset(width, height) {
    this.width = width;
    this.height = height;
    this.layers = [];
    this.activeId = null;
    this.mask = makeCanvas(width, height);
    this.selection = null;
    this.box = { x: 0, y: 0, w: Math.min(512, width), h: Math.min(512, height) };
    this.origin = { x: 0, y: 0 };
    this.history.clear();
    this.changed("size");
  }

  // -- layers --------------------------------------------------------------------------------

  addLayer(layer, { index = null, label = `Add ${layer.name}` } = {}) {
    const previous = this.activeId;
    const at = index ?? this.layers.length;
    this.history.run({
      label,
      bytes: layer.width * layer.height * 4,
      redo: () => {
        this.layers.splice(at, 0, layer);
        this.activeId = layer.id;
        this.changed("layers");
      },
      undo: () => {
        this.layers.splice(this.indexOf(layer.id), 1);
        this.activeId = previous;
        this.changed("layers");
      },
    });
    return layer;
  }

  /** A new empty layer the size of the picture, above the active one. */
  addEmptyLayer(name = `Layer ${this.layers.length + 1}`) {
    const active = this.indexOf(this.activeId);
    return this.addLayer(new Layer({ name, canvas: makeCanvas(this.width, this.height) }), {
      index: active < 0 ? this.layers.length : active + 1,
    });
  }

  deleteLayer(id = this.activeId) {
    const at = this.indexOf(id);
    if (at < 0) return;
    const layer = this.layers[at];
    this.history.run({
      label: `Delete ${layer.name}`,
      redo: () => {
        this.layers.splice(at, 1);
        if (this.activeId === id) this.activeId = (this.layers[at] ?? this.layers[at - 1])?.id ?? null;
        this.changed("layers");
      },
      undo: () => {
        this.layers.splice(at, 0, layer);
        this.activeId = id;
        this.changed("layers");
      },
    });
  }

  duplicateLayer(id = this.activeId) {
    const layer = this.layer(id);
    if (!layer) return null;
    const copy = new Layer({ ...layer, name: `${layer.name} copy`, canvas: copyCanvas(layer.canvas), text: layer.text && { ...layer.text } });
    return this.addLayer(copy, { index: this.indexOf(id) + 1, label: `Duplicate ${layer.name}` });
  }

  /** Move a layer to position `to` in the stack (0 is the bottom). */
  moveLayer(id, to) {
    const from = this.indexOf(id);
    to = Math.max(0, Math.min(this.layers.length - 1, to));
    if (from < 0 || from === to) return;
    const move = (a, b) => {
      const [layer] = this.layers.splice(a, 1);
      this.layers.splice(b, 0, layer);
      this.changed("layers");
    };
    this.history.run({ label: to > from ? "Raise layer" : "Lower layer", redo: () => move(from, to), undo: () => move(to, from) });
  }

  /** Record a change of layer properties (name, opacity, visible, transform) made live. */
  commitLayerProps(layer, before, label) {
    const after = Object.fromEntries(Object.keys(before).map((k) => [k, layer[k]]));
    if (Object.keys(before).every((k) => before[k] === after[k])) return;
    const kind = Object.keys(before).some((k) => TRANSFORM_KEYS.includes(k)) ? "transform" : "layers";
    this.history.push({
      label,
      undo: () => {
        Object.assign(layer, before);
        this.changed(kind);
      },
      redo: () => {
        Object.assign(layer, after);
        this.changed(kind);
      },
    });
    this.changed(kind);
  }

  setLayerProps(layer, props, label) {
    const before = Object.fromEntries(Object.keys(props).map((k) => [k, layer[k]]));
    Object.assign(layer, props);
    this.commitLayerProps(layer, before, label);
  }

  mergeDown(id = this.activeId) {
    const at = this.indexOf(id);
    if (at <= 0) return;
    const top = this.layers[at], below = this.layers[at - 1];
    // The merged layer covers the picture, so whatever the two transforms were, nothing is lost
    // inside the picture's bounds.
    const merged = makeCanvas(this.width, this.height);
    const ctx = context(merged);
    for (const layer of [below, top]) {
      if (!layer.visible) continue;
      ctx.save();
      ctx.globalAlpha = layer.opacity;
      ctx.setTransform(...layer.matrix);
      ctx.drawImage(layer.canvas, 0, 0);
      ctx.restore();
    }
    const layer = new Layer({ name: below.name, canvas: merged });
    this.history.run({
      label: "Merge down",
      bytes: this.width * this.height * 4,
      redo: () => {
        this.layers.splice(at - 1, 2, layer);
        this.activeId = layer.id;
        this.changed("layers");
      },
      undo: () => {
        this.layers.splice(at - 1, 1, below, top);
        this.activeId = top.id;
        this.changed("layers");
      },
    });
  }

  // -- pixels --------------------------------------------------------------------------------

  /**
   * Record that `rect` of `canvas` changed, given a copy of what was there before; `owner` is
   * told of undo and redo (a layer's pixels, or the mask).
   */
  recordPatch(canvas, rect, before, label, kind = "pixels") {
    const after = copyCanvas(canvas, rect);
    this.history.push({
      label,
      bytes: rect.w * rect.h * 8,
      undo: () => {
        restore(canvas, rect, before);
        this.changed(kind);
      },
      redo: () => {
        restore(canvas, rect, after);
        this.changed(kind);
      },
    });
    this.changed(kind);
  }

  /** Replace a layer's pixels (and maybe its transform or text) in one undoable step. */
  replaceLayerCanvas(layer, canvas, label, props = {}) {
    const before = { canvas: layer.canvas, text: layer.text, ...Object.fromEntries(Object.keys(props).map((k) => [k, layer[k]])) };
    const after = { canvas, text: layer.text, ...props };
    this.history.run({
      label,
      bytes: (canvas.width * canvas.height + layer.width * layer.height) * 4,
      undo: () => {
        Object.assign(layer, before);
        this.changed("pixels");
      },
      redo: () => {
        Object.assign(layer, after);
        this.changed("pixels");
      },
    });
  }

  // -- the picture's frame -------------------------------------------------------------------

  /**
   * Make the picture `rect` (in current picture coordinates): smaller to crop, larger to add
   * room (the new area is transparent). Layers keep their pixels and move with the frame.
   */
  setFrame(rect, label = "Crop") {
    const r = roundRect(rect);
    if (r.w < 1 || r.h < 1) return;
    const old = { width: this.width, height: this.height, mask: this.mask, box: { ...this.box }, selection: this.selection, origin: this.origin };
    const mask = makeCanvas(r.w, r.h);
    context(mask).drawImage(this.mask, -r.x, -r.y);
    const shift = (dx, dy) => {
      for (const layer of this.layers) {
        layer.x += dx;
        layer.y += dy;
      }
    };
    this.history.run({
      label,
      bytes: r.w * r.h * 4,
      redo: () => {
        shift(-r.x, -r.y);
        Object.assign(this, { width: r.w, height: r.h, mask, selection: null, origin: { x: old.origin.x - r.x, y: old.origin.y - r.y } });
        this.box = { ...old.box, x: old.box.x - r.x, y: old.box.y - r.y };
        this.changed("size");
      },
      undo: () => {
        shift(r.x, r.y);
        Object.assign(this, { width: old.width, height: old.height, mask: old.mask, selection: old.selection, box: { ...old.box }, origin: old.origin });
        this.changed("size");
      },
    });
  }

  /** `rect`, noted when the picture's origin was `origin`, in today's picture coordinates. */
  placeRect(rect, origin) {
    return { ...rect, x: rect.x + this.origin.x - origin.x, y: rect.y + this.origin.y - origin.y };
  }

  // -- selection, box and mask -----------------------------------------------------------------

  setSelection(rect, label = rect ? "Select" : "Deselect") {
    const before = this.selection, after = rect ? roundRect(rect) : null;
    if (JSON.stringify(before) === JSON.stringify(after)) return;
    this.history.run({
      label,
      redo: () => {
        this.selection = after;
        this.changed("selection");
      },
      undo: () => {
        this.selection = before;
        this.changed("selection");
      },
    });
  }

  setBox(box, before = this.box, label = "Move generation box") {
    const after = { ...box };
    this.box = after;
    if (JSON.stringify(before) === JSON.stringify(after)) {
      this.changed("box");
      return;
    }
    this.history.push({
      label,
      undo: () => {
        this.box = { ...before };
        this.changed("box");
      },
      redo: () => {
        this.box = { ...after };
        this.changed("box");
      },
    });
    this.changed("box");
  }

  clearMask() {
    const before = copyCanvas(this.mask);
    context(this.mask).clearRect(0, 0, this.width, this.height);
    this.recordPatch(this.mask, { x: 0, y: 0, w: this.width, h: this.height }, before, "Clear mask", "mask");
  }

  invertMask() {
    const rect = { x: 0, y: 0, w: this.width, h: this.height };
    const before = copyCanvas(this.mask);
    const ctx = context(this.mask);
    const data = ctx.getImageData(0, 0, rect.w, rect.h);
    invertMask(data.data);
    ctx.putImageData(data, 0, 0);
    this.recordPatch(this.mask, rect, before, "Invert mask", "mask");
  }

  // -- reading the picture ---------------------------------------------------------------------

  /**
   * The visible layers composited over `rect` (default: the whole picture) at `scale`,
   * clipped to the picture's frame: what lies outside it is transparent.
   */
  flatten(rect = { x: 0, y: 0, w: this.width, h: this.height }, { scale = 1, overrides = null } = {}) {
    const out = makeCanvas(rect.w * scale, rect.h * scale);
    const ctx = context(out);
    const frame = intersect(rect, { x: 0, y: 0, w: this.width, h: this.height });
    if (!frame) return out;
    ctx.save();
    ctx.scale(scale, scale);
    ctx.translate(-rect.x, -rect.y);
    ctx.beginPath();
    ctx.rect(frame.x, frame.y, frame.w, frame.h);
    ctx.clip();
    const base = ctx.getTransform();
    for (const layer of this.layers) {
      if (!layer.visible || layer.opacity <= 0) continue;
      ctx.setTransform(base.multiply(new DOMMatrix(layer.matrix)));
      ctx.globalAlpha = layer.opacity;
      ctx.drawImage(overrides?.get(layer.id) ?? layer.canvas, 0, 0);
    }
    ctx.restore();
    return out;
  }

  /** The painted mask over `rect` (transparent outside the picture). */
  maskPixels(rect) {
    const out = makeCanvas(rect.w, rect.h);
    const ctx = context(out);
    ctx.drawImage(this.mask, -rect.x, -rect.y);
    return ctx.getImageData(0, 0, rect.w, rect.h);
  }
}

export const MASK_COLOR = `rgb(${MASK_RGB.join(",")})`;
