// The tools: what a press, a drag and a release on the canvas do for each of them.
// Each tool is an object with optional down/move/up(point, event), hover, cursor, overlay
// (drawn in screen space), cancel and commit; `app` gives them the document and settings.

import { apply, layerCorners, rectFromPoints, snapBox, toScreen, hitsLayer, contains, intersect } from "./geometry.js";
import { MASK_COLOR } from "./document.js";
import { Stroke } from "./paint.js";
import { boxHandles, HANDLE_RADIUS } from "./view.js";

const near = (a, b, r = HANDLE_RADIUS) => Math.hypot(a.x - b.x, a.y - b.y) <= r;
const ROTATE_OFFSET = 28;

function layerCenter(layer) {
  const c = layer.matrix;
  return apply(c, layer.width / 2, layer.height / 2);
}

/** Move, scale (corners; Shift for free) and rotate (the round handle; Shift snaps 15°). */
export class MoveTool {
  constructor(app) {
    this.app = app;
    this.name = "move";
  }

  handles(view, layer) {
    const corners = layerCorners(layer).map((p) => toScreen(view.view, p.x, p.y));
    const top = { x: (corners[0].x + corners[1].x) / 2, y: (corners[0].y + corners[1].y) / 2 };
    const c = toScreen(view.view, ...Object.values(layerCenter(layer)));
    const len = Math.hypot(top.x - c.x, top.y - c.y) || 1;
    const rot = { x: top.x + ((top.x - c.x) / len) * ROTATE_OFFSET, y: top.y + ((top.y - c.y) / len) * ROTATE_OFFSET };
    return { corners, top, rot };
  }

  modeAt(p) {
    return this.grab(p)?.mode ?? null;
  }

  /** What the pointer is on: the rotation handle, a corner (which one), or the layer. */
  grab(p) {
    const layer = this.app.doc.active;
    if (!layer) return null;
    const view = this.app.canvasView;
    const s = toScreen(view.view, p.x, p.y);
    const h = this.handles(view, layer);
    if (near(s, h.rot)) return { mode: "rotate" };
    const corner = h.corners.findIndex((c) => near(s, c));
    if (corner >= 0) return { mode: "scale", corner };
    return { mode: "move" };
  }

  cursor(p) {
    return { rotate: "grab", scale: "nwse-resize", move: "move" }[this.modeAt(p)] ?? "default";
  }

  down(p) {
    const doc = this.app.doc;
    const grabbed = this.grab(p);
    let mode = grabbed?.mode ?? null;
    if (mode === "move" && doc.active && !hitsLayer(doc.active, p)) {
      // Clicking another layer's pixels picks that layer, as people expect of a move tool.
      const hit = [...doc.layers].reverse().find((l) => l.visible && hitsLayer(l, p));
      if (hit) doc.setActive(hit.id);
    }
    const layer = doc.active;
    if (!layer) return;
    mode ??= "move";
    this.drag = { mode, start: p, layer, before: layer.transform, center: layerCenter(layer) };
    if (mode === "scale") {
      const local = [[0, 0], [layer.width, 0], [layer.width, layer.height], [0, layer.height]];
      const grabbedCorner = local[grabbed.corner], anchor = local[(grabbed.corner + 2) % 4];
      this.drag.anchorLocal = anchor;
      this.drag.anchor = apply(layer.matrix, ...anchor);
      this.drag.reach = [grabbedCorner[0] - anchor[0], grabbedCorner[1] - anchor[1]];
    }
  }

  move(p, e) {
    const d = this.drag;
    if (!d) return;
    const { layer, before, center } = d;
    if (d.mode === "move") {
      layer.x = Math.round(before.x + p.x - d.start.x);
      layer.y = Math.round(before.y + p.y - d.start.y);
    } else if (d.mode === "rotate") {
      let angle = before.rotation + Math.atan2(p.y - center.y, p.x - center.x) - Math.atan2(d.start.y - center.y, d.start.x - center.x);
      if (e.shiftKey) angle = Math.round(angle / (Math.PI / 12)) * (Math.PI / 12);
      layer.rotation = angle;
    } else {
      // A corner scales about the opposite corner (Alt: about the centre); Shift frees the
      // aspect ratio. Work in the layer's own turned frame.
      const about = e.altKey ? center : d.anchor;
      const cos = Math.cos(before.rotation), sin = Math.sin(before.rotation);
      const vx = p.x - about.x, vy = p.y - about.y;
      const lx = cos * vx + sin * vy, ly = -sin * vx + cos * vy;
      const reach = e.altKey ? [d.reach[0] / 2, d.reach[1] / 2] : d.reach;
      const rx = reach[0] * before.scaleX, ry = reach[1] * before.scaleY;
      let sx, sy;
      if (e.shiftKey) {
        sx = Math.max(0.01, (lx / rx) * before.scaleX);
        sy = Math.max(0.01, (ly / ry) * before.scaleY);
      } else {
        const f = Math.max(0.01 / Math.min(before.scaleX, before.scaleY), (lx * rx + ly * ry) / (rx * rx + ry * ry));
        sx = before.scaleX * f;
        sy = before.scaleY * f;
      }
      layer.scaleX = sx;
      layer.scaleY = sy;
      // Put the layer where the fixed point stays fixed.
      let cx = center.x, cy = center.y;
      if (!e.altKey) {
        const ox = (d.anchorLocal[0] - layer.width / 2) * sx, oy = (d.anchorLocal[1] - layer.height / 2) * sy;
        cx = d.anchor.x - (cos * ox - sin * oy);
        cy = d.anchor.y - (sin * ox + cos * oy);
      }
      layer.x = cx - (layer.width * sx) / 2;
      layer.y = cy - (layer.height * sy) / 2;
    }
    this.app.doc.changed("transform-live");
  }

  up() {
    const d = this.drag;
    this.drag = null;
    if (!d) return;
    const label = { move: "Move layer", rotate: "Rotate layer", scale: "Scale layer" }[d.mode];
    this.app.doc.commitLayerProps(d.layer, d.before, label);
  }

  cancel() {
    if (this.drag) Object.assign(this.drag.layer, this.drag.before);
    this.drag = null;
    this.app.doc.changed("transform");
  }

  overlay(ctx, view) {
    const layer = this.app.doc.active;
    if (!layer || !layer.visible) return;
    const h = this.handles(view, layer);
    ctx.save();
    ctx.strokeStyle = "#1877d2";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    h.corners.forEach((c, i) => (i ? ctx.lineTo(c.x, c.y) : ctx.moveTo(c.x, c.y)));
    ctx.closePath();
    ctx.moveTo(h.top.x, h.top.y);
    ctx.lineTo(h.rot.x, h.rot.y);
    ctx.stroke();
    ctx.restore();
    for (const c of h.corners) view.handle(c.x, c.y);
    view.handle(h.rot.x, h.rot.y, true);
  }
}

/** Brush and eraser: strokes on the active layer, clipped to the selection. */
export class PaintTool {
  constructor(app, name) {
    this.app = app;
    this.name = name;
  }

  get settings() {
    return this.app.settings[this.name];
  }

  brushSize() {
    return this.settings.size;
  }

  cursor() {
    return "crosshair";
  }

  down(p) {
    const doc = this.app.doc;
    const layer = doc.active;
    if (!layer) return this.app.toast("Add a layer first (Layers ▸ +).", "warn");
    if (!layer.visible) return this.app.toast("The active layer is hidden: show it to paint on it.", "warn");
    const s = this.settings;
    this.layer = layer;
    this.stroke = new Stroke(layer.canvas, layer.matrix, {
      size: s.size,
      hardness: s.hardness / 100,
      opacity: s.opacity / 100,
      color: s.color,
      erase: this.name === "eraser",
      clip: doc.selection,
    });
    this.stroke.to(p);
    doc.changed("pixels-live");
  }

  move(p) {
    if (!this.stroke) return;
    this.stroke.to(p);
    this.app.doc.changed("pixels-live");
  }

  up() {
    const stroke = this.stroke;
    this.stroke = null;
    if (!stroke) return;
    const done = stroke.finish();
    if (!done) return;
    const doc = this.app.doc;
    doc.history.begin(this.name === "eraser" ? "Erase" : "Brush stroke");
    doc.recordPatch(this.layer.canvas, done.rect, done.before, "stroke");
    if (this.layer.text) doc.setLayerProps(this.layer, { text: null }, "Rasterize text");
    doc.history.end();
  }

  cancel() {
    this.up();
  }
}

/** Paints the inpainting mask over the picture; Alt (or the Erase option) clears it. */
export class MaskTool {
  constructor(app) {
    this.app = app;
    this.name = "mask";
  }

  brushSize() {
    return this.app.settings.mask.size;
  }

  cursor() {
    return "crosshair";
  }

  down(p, e) {
    const s = this.app.settings.mask;
    this.app.setShowMask(true);
    this.stroke = new Stroke(this.app.doc.mask, [1, 0, 0, 1, 0, 0], {
      size: s.size,
      hardness: s.hardness / 100,
      opacity: 1,
      color: MASK_COLOR,
      erase: s.erase || e.altKey,
    });
    this.stroke.to(p);
    this.app.doc.changed("mask-live");
  }

  move(p) {
    if (!this.stroke) return;
    this.stroke.to(p);
    this.app.doc.changed("mask-live");
  }

  up() {
    const stroke = this.stroke;
    this.stroke = null;
    const done = stroke?.finish();
    if (done) this.app.doc.recordPatch(this.app.doc.mask, done.rect, done.before, stroke.erase ? "Erase mask" : "Paint mask", "mask");
  }

  cancel() {
    this.up();
  }
}

/** Click to write a new text; click a text layer to edit it. */
export class TextTool {
  constructor(app) {
    this.app = app;
    this.name = "text";
  }

  cursor() {
    return "text";
  }

  down(p) {
    const doc = this.app.doc;
    const hit = [...doc.layers].reverse().find((l) => l.text && l.visible && hitsLayer(l, p));
    if (hit) {
      doc.setActive(hit.id);
      this.app.editText(hit);
    } else {
      this.app.editText(null, p);
    }
  }
}

/** A rectangle that limits painting and effects, and that crop and the box can use. */
export class SelectTool {
  constructor(app) {
    this.app = app;
    this.name = "select";
  }

  cursor() {
    return "crosshair";
  }

  down(p) {
    this.start = p;
    this.rect = null;
  }

  move(p) {
    if (!this.start) return;
    this.rect = rectFromPoints(this.start, p);
  }

  up() {
    const doc = this.app.doc;
    const rect = this.rect && intersect(this.rect, { x: 0, y: 0, w: doc.width, h: doc.height });
    this.start = null;
    this.rect = null;
    doc.setSelection(rect && rect.w >= 1 && rect.h >= 1 ? rect : null);
  }

  cancel() {
    this.start = this.rect = null;
  }

  overlay(ctx, view) {
    if (this.rect) view.dashedRect(this.rect);
  }
}

/** Drag the new frame; Enter (or Apply) crops, Escape forgets it. */
export class CropTool {
  constructor(app) {
    this.app = app;
    this.name = "crop";
    this.rect = null;
  }

  activate() {
    const doc = this.app.doc;
    this.rect = doc.selection ? { ...doc.selection } : null;
  }

  cursor() {
    return "crosshair";
  }

  down(p) {
    this.start = p;
  }

  move(p) {
    if (this.start) this.rect = rectFromPoints(this.start, p);
  }

  up() {
    this.start = null;
    if (this.rect && (this.rect.w < 2 || this.rect.h < 2)) this.rect = null;
    this.app.onToolState?.();
  }

  commit() {
    if (!this.rect) return false;
    this.app.doc.setFrame(this.rect, "Crop");
    this.rect = null;
    this.app.canvasView.fit();
    this.app.onToolState?.();
    return true;
  }

  cancel() {
    this.rect = null;
    this.start = null;
    this.app.onToolState?.();
  }

  overlay(ctx, view) {
    if (!this.rect) return;
    const s = view.screenRect(this.rect);
    ctx.save();
    ctx.fillStyle = "#000a";
    ctx.beginPath();
    ctx.rect(0, 0, view.width, view.height);
    ctx.rect(s.x + s.w, s.y, -s.w, s.h);
    ctx.fill("evenodd");
    ctx.restore();
    view.dashedRect(this.rect, ["#fff", "#000"]);
  }
}

/** The generation box: drag inside to move it, a handle to resize it, outside to draw anew. */
export class BoxTool {
  constructor(app) {
    this.app = app;
    this.name = "box";
  }

  handleAt(p) {
    const view = this.app.canvasView;
    const s = toScreen(view.view, p.x, p.y);
    return boxHandles(view.screenRect(this.app.doc.box)).find((h) => near(s, h))?.edge ?? null;
  }

  cursor(p) {
    const edge = this.handleAt(p);
    if (edge) return { n: "ns-resize", s: "ns-resize", e: "ew-resize", w: "ew-resize", nw: "nwse-resize", se: "nwse-resize", ne: "nesw-resize", sw: "nesw-resize" }[edge];
    return contains(this.app.doc.box, p) ? "move" : "crosshair";
  }

  down(p) {
    const box = this.app.doc.box;
    const edge = this.handleAt(p);
    this.drag = { start: p, before: { ...box }, mode: edge ? "resize" : contains(box, p) ? "move" : "draw", edge };
  }

  move(p) {
    const d = this.drag;
    if (!d) return;
    const limits = this.app.boxLimits();
    const b = d.before;
    const dx = p.x - d.start.x, dy = p.y - d.start.y;
    let box;
    if (d.mode === "move") {
      box = { ...b, x: Math.round(b.x + dx), y: Math.round(b.y + dy) };
    } else if (d.mode === "draw") {
      const r = rectFromPoints(d.start, p);
      const anchor = (p.y < d.start.y ? "s" : "n") + (p.x < d.start.x ? "e" : "w");
      box = snapBox(r, limits, anchor);
    } else {
      const e = d.edge;
      let { x, y, w, h } = b;
      if (e.includes("e")) w = b.w + dx;
      if (e.includes("s")) h = b.h + dy;
      if (e.includes("w")) {
        x = b.x + dx;
        w = b.w - dx;
      }
      if (e.includes("n")) {
        y = b.y + dy;
        h = b.h - dy;
      }
      const anchor = (e.includes("n") ? "s" : "n") + (e.includes("w") ? "e" : "w");
      box = snapBox({ x, y, w: Math.max(1, w), h: Math.max(1, h) }, limits, anchor);
    }
    this.app.doc.box = box;
    this.app.doc.changed("box-live");
  }

  up() {
    const d = this.drag;
    this.drag = null;
    if (!d) return;
    const box = this.app.doc.box;
    if (d.mode === "draw" && Math.abs(box.w) < 2) {
      this.app.doc.box = d.before;
      return;
    }
    this.app.doc.setBox(box, d.before, d.mode === "move" ? "Move generation box" : "Resize generation box");
  }

  cancel() {
    if (this.drag) this.app.doc.box = this.drag.before;
    this.drag = null;
    this.app.doc.changed("box");
  }
}

/** Space-drag does the same from any tool. */
export class HandTool {
  constructor(app) {
    this.app = app;
    this.name = "hand";
  }

  cursor() {
    return "grab";
  }
}
