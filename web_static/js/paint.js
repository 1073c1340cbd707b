// Brush strokes: round dabs of a given size, hardness and colour stamped along the pointer's
// path into a scratch canvas, composited onto the target (a layer or the mask) with the
// stroke's opacity — painting, or erasing to real transparency. One stroke is one undo step.

import { apply, invert, union, intersect } from "./geometry.js";
import { context, copyCanvas, makeCanvas } from "./document.js";

/** A round dab: solid to `hardness` of its radius, then fading to nothing at the edge. */
export function makeDab(diameter, hardness, color) {
  const size = Math.max(1, Math.ceil(diameter) + 2);
  const canvas = makeCanvas(size, size);
  const ctx = context(canvas);
  const r = Math.max(0.5, diameter / 2), c = size / 2;
  if (hardness >= 0.99) {
    ctx.fillStyle = color;
    ctx.beginPath();
    ctx.arc(c, c, r, 0, Math.PI * 2);
    ctx.fill();
  } else {
    const gradient = ctx.createRadialGradient(c, c, r * Math.max(0, hardness), c, c, r);
    gradient.addColorStop(0, color);
    gradient.addColorStop(1, colorWithAlpha(color, 0));
    ctx.fillStyle = gradient;
    ctx.fillRect(0, 0, size, size);
  }
  return canvas;
}

function colorWithAlpha(color, alpha) {
  const hex = /^#([0-9a-f]{6})$/i.exec(color);
  if (hex) {
    const n = parseInt(hex[1], 16);
    return `rgba(${n >> 16},${(n >> 8) & 255},${n & 255},${alpha})`;
  }
  return `rgba(0,0,0,${alpha})`;
}

/**
 * One stroke on `target` (a canvas) whose pixels map to the picture by `matrix`. The target is
 * updated as the stroke goes, from a copy taken at the start, so what is shown is exactly what
 * the stroke will leave. `clip` (a rectangle in picture coordinates) limits it.
 */
export class Stroke {
  constructor(target, matrix, { size, hardness = 1, opacity = 1, color = "#000000", erase = false, clip = null }) {
    this.target = target;
    this.toLocal = invert(matrix);
    const sx = Math.hypot(matrix[0], matrix[1]), sy = Math.hypot(matrix[2], matrix[3]);
    this.scale = (sx + sy) / 2;
    this.size = Math.max(1, size / this.scale);
    this.opacity = opacity;
    this.erase = erase;
    this.dab = makeDab(this.size, hardness, erase ? "#000000" : color);
    this.base = copyCanvas(target);
    this.scratch = makeCanvas(target.width, target.height);
    this.scratchCtx = context(this.scratch);
    if (clip) {
      this.scratchCtx.setTransform(...this.toLocal);
      this.scratchCtx.beginPath();
      this.scratchCtx.rect(clip.x, clip.y, clip.w, clip.h);
      this.scratchCtx.clip();
      this.scratchCtx.setTransform(1, 0, 0, 1, 0, 0);
    }
    this.bounds = null;
    this.last = null;
    this.spacing = Math.max(0.5, this.size * 0.12);
  }

  /** Continue the stroke to picture point `p`. Returns the changed rectangle (target pixels). */
  to(p) {
    const q = apply(this.toLocal, p.x, p.y);
    const dirty = [];
    if (!this.last) {
      dirty.push(this.stamp(q.x, q.y));
      this.last = q;
      this.carry = 0;
    } else {
      const dx = q.x - this.last.x, dy = q.y - this.last.y;
      const distance = Math.hypot(dx, dy);
      let t = this.spacing - this.carry;
      while (t <= distance) {
        dirty.push(this.stamp(this.last.x + (dx * t) / distance, this.last.y + (dy * t) / distance));
        t += this.spacing;
      }
      this.carry = distance - (t - this.spacing);
      this.last = q;
    }
    const rect = dirty.reduce(union, null);
    if (rect) this.composite(rect);
    return rect;
  }

  stamp(x, y) {
    const half = this.dab.width / 2;
    this.scratchCtx.drawImage(this.dab, x - half, y - half);
    const rect = { x: Math.floor(x - half), y: Math.floor(y - half), w: this.dab.width + 2, h: this.dab.height + 2 };
    const clipped = intersect(rect, { x: 0, y: 0, w: this.target.width, h: this.target.height });
    if (clipped) this.bounds = union(this.bounds, clipped);
    return clipped;
  }

  /** Redraw `rect` of the target: its pixels before the stroke, then the stroke over them. */
  composite(rect) {
    const ctx = context(this.target);
    ctx.save();
    ctx.clearRect(rect.x, rect.y, rect.w, rect.h);
    ctx.drawImage(this.base, rect.x, rect.y, rect.w, rect.h, rect.x, rect.y, rect.w, rect.h);
    ctx.globalAlpha = this.opacity;
    ctx.globalCompositeOperation = this.erase ? "destination-out" : "source-over";
    ctx.drawImage(this.scratch, rect.x, rect.y, rect.w, rect.h, rect.x, rect.y, rect.w, rect.h);
    ctx.restore();
  }

  /** The changed rectangle and a copy of what it held before, for the undo history. */
  finish() {
    if (!this.bounds) return null;
    return { rect: this.bounds, before: copyCanvas(this.base, this.bounds) };
  }
}
