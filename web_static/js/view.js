// The canvas on screen: draws the picture with the view's pan and zoom, the overlays (mask,
// selection, generation box, crop, handles), and routes pointer input to the active tool.

import { apply, toDoc, toScreen, viewMatrix, zoomAt, fitView, multiply, boxOverhang } from "./geometry.js";

const HANDLE = 5;

export class CanvasView {
  constructor(app, host) {
    this.app = app;
    this.host = host;
    this.canvas = document.createElement("canvas");
    this.canvas.id = "view";
    this.canvas.tabIndex = 0;
    host.append(this.canvas);
    this.ctx = this.canvas.getContext("2d");
    this.view = { zoom: 1, panX: 0, panY: 0 };
    this.pointer = null;
    this.panning = null;
    this.spaceDown = false;
    this.pending = false;
    this.checker = this.makeChecker();
    new ResizeObserver(() => this.resize()).observe(host);
    this.resize();
    this.listen();
  }

  makeChecker() {
    const tile = document.createElement("canvas");
    tile.width = tile.height = 16;
    const c = tile.getContext("2d");
    c.fillStyle = "#cfcfcf";
    c.fillRect(0, 0, 16, 16);
    c.fillStyle = "#f4f4f4";
    c.fillRect(0, 0, 8, 8);
    c.fillRect(8, 8, 8, 8);
    return this.ctx.createPattern(tile, "repeat");
  }

  get width() {
    return this.host.clientWidth;
  }

  get height() {
    return this.host.clientHeight;
  }

  resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, this.width), h = Math.max(1, this.height);
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(h * dpr);
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${h}px`;
    if (!this.fitted && w > 1) {
      this.fitted = true;
      this.fit();
    }
    this.requestRender();
  }

  fit() {
    const doc = this.app.doc;
    this.setView(fitView(doc.width, doc.height, this.width, this.height));
  }

  setView(view) {
    this.view = view;
    this.app.onViewChange?.();
    this.requestRender();
  }

  zoomBy(factor, sx = this.width / 2, sy = this.height / 2) {
    this.setView(zoomAt(this.view, factor, sx, sy));
  }

  zoomTo(zoom) {
    this.zoomBy(zoom / this.view.zoom);
  }

  toDoc(event) {
    const r = this.canvas.getBoundingClientRect();
    return toDoc(this.view, event.clientX - r.left, event.clientY - r.top);
  }

  requestRender() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  // -- input ---------------------------------------------------------------------------------

  listen() {
    const c = this.canvas;
    c.addEventListener("pointerdown", (e) => this.down(e));
    c.addEventListener("pointermove", (e) => this.move(e));
    c.addEventListener("pointerup", (e) => this.up(e));
    c.addEventListener("pointercancel", (e) => this.up(e, true));
    c.addEventListener("pointerleave", () => {
      this.hover = null;
      this.requestRender();
    });
    c.addEventListener("contextmenu", (e) => e.preventDefault());
    c.addEventListener("dblclick", (e) => this.app.tool.dblclick?.(this.toDoc(e), e));
    c.addEventListener("wheel", (e) => {
      e.preventDefault();
      const r = c.getBoundingClientRect();
      if (e.ctrlKey || e.metaKey || !e.shiftKey) {
        this.zoomBy(Math.exp(-e.deltaY * (e.ctrlKey ? 0.01 : 0.0015)), e.clientX - r.left, e.clientY - r.top);
      } else {
        this.setView({ ...this.view, panX: this.view.panX - e.deltaX, panY: this.view.panY - e.deltaY });
      }
    }, { passive: false });
  }

  down(e) {
    // No mousedown default: focus is set here, and a tool may move it (the text box).
    e.preventDefault();
    this.canvas.focus({ preventScroll: true });
    if (e.button === 1 || (e.button === 0 && (this.spaceDown || this.app.toolName === "hand"))) {
      this.panning = { x: e.clientX, y: e.clientY, panX: this.view.panX, panY: this.view.panY };
      this.canvas.setPointerCapture(e.pointerId);
      this.canvas.style.cursor = "grabbing";
      return;
    }
    if (e.button !== 0) return;
    this.canvas.setPointerCapture(e.pointerId);
    this.pointer = e.pointerId;
    this.app.tool.down?.(this.toDoc(e), e);
    this.requestRender();
  }

  move(e) {
    const p = this.toDoc(e);
    this.hover = p;
    this.app.onPointer?.(p);
    if (this.panning) {
      this.setView({ ...this.view, panX: this.panning.panX + e.clientX - this.panning.x, panY: this.panning.panY + e.clientY - this.panning.y });
      return;
    }
    if (this.pointer === e.pointerId) {
      const events = e.getCoalescedEvents?.() ?? [e];
      for (const ev of events.length ? events : [e]) this.app.tool.move?.(this.toDoc(ev), ev);
    } else {
      this.app.tool.hover?.(p, e);
      this.canvas.style.cursor = this.app.tool.cursor?.(p, e) ?? "default";
    }
    this.requestRender();
  }

  up(e, cancelled = false) {
    if (this.panning) {
      this.panning = null;
      this.canvas.style.cursor = "";
      return;
    }
    if (this.pointer !== e.pointerId) return;
    this.pointer = null;
    if (cancelled) this.app.tool.cancel?.();
    else this.app.tool.up?.(this.toDoc(e), e);
    this.requestRender();
  }

  // -- drawing -----------------------------------------------------------------------------------

  render() {
    const { ctx, view } = this;
    const app = this.app, doc = app.doc;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#1d1f23";
    ctx.fillRect(0, 0, this.width, this.height);
    const tl = toScreen(view, 0, 0);
    const dw = doc.width * view.zoom, dh = doc.height * view.zoom;
    ctx.save();
    ctx.beginPath();
    ctx.rect(tl.x, tl.y, dw, dh);
    ctx.clip();
    ctx.fillStyle = this.checker;
    ctx.fillRect(tl.x, tl.y, dw, dh);
    ctx.imageSmoothingQuality = view.zoom < 1 ? "medium" : "low";
    ctx.imageSmoothingEnabled = view.zoom < 4; // past 4× show the pixels themselves
    const base = multiply([dpr, 0, 0, dpr, 0, 0], viewMatrix(view));
    for (const layer of doc.layers) {
      if (!layer.visible || layer.opacity <= 0) continue;
      const preview = app.previews.get(layer.id);
      ctx.globalAlpha = layer.opacity;
      if (preview) {
        // A preview is a reduced copy of the layer: stretch it over the layer's own size.
        ctx.setTransform(...multiply(base, layer.matrix));
        ctx.drawImage(preview, 0, 0, layer.width, layer.height);
      } else {
        ctx.setTransform(...multiply(base, layer.matrix));
        ctx.drawImage(layer.canvas, 0, 0);
      }
    }
    ctx.globalAlpha = 1;
    if (app.showMask) {
      ctx.setTransform(...base);
      ctx.globalAlpha = 0.5;
      ctx.drawImage(doc.mask, 0, 0);
      ctx.globalAlpha = 1;
    }
    ctx.restore();
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.strokeStyle = "#0008";
    ctx.strokeRect(tl.x - 0.5, tl.y - 0.5, dw + 1, dh + 1);
    this.drawStaged(base);
    if (app.showBox) this.drawBox();
    if (doc.selection) this.dashedRect(doc.selection);
    app.tool.overlay?.(ctx, this);
    this.drawBrushCursor();
  }

  drawStaged(base) {
    const staged = this.app.stagedPreview?.();
    if (!staged) return;
    const { canvas, box } = staged;
    const { ctx } = this;
    ctx.save();
    ctx.setTransform(...base);
    ctx.drawImage(canvas, box.x, box.y, box.w, box.h);
    ctx.restore();
  }

  screenRect(r) {
    const a = toScreen(this.view, r.x, r.y);
    return { x: a.x, y: a.y, w: r.w * this.view.zoom, h: r.h * this.view.zoom };
  }

  dashedRect(r, colors = ["#000", "#fff"]) {
    const { ctx } = this;
    const s = this.screenRect(r);
    ctx.save();
    ctx.lineWidth = 1;
    ctx.setLineDash([5, 4]);
    ctx.strokeStyle = colors[0];
    ctx.strokeRect(Math.round(s.x) + 0.5, Math.round(s.y) + 0.5, Math.round(s.w), Math.round(s.h));
    ctx.lineDashOffset = 5;
    ctx.strokeStyle = colors[1];
    ctx.strokeRect(Math.round(s.x) + 0.5, Math.round(s.y) + 0.5, Math.round(s.w), Math.round(s.h));
    ctx.restore();
  }

  drawBox() {
    const { ctx } = this;
    const doc = this.app.doc;
    const box = doc.box;
    const s = this.screenRect(box);
    const over = boxOverhang(box, doc);
    ctx.save();
    if (over.left || over.right || over.top || over.bottom) {
      // The part past the picture's edge will be painted anew (outpainting): hatch it.
      ctx.beginPath();
      ctx.rect(s.x, s.y, s.w, s.h);
      const inside = over.inside && this.screenRect(over.inside);
      if (inside) ctx.rect(inside.x + inside.w, inside.y, -inside.w, inside.h);
      ctx.clip("evenodd");
      ctx.strokeStyle = "#7cc4ff55";
      ctx.lineWidth = 1;
      for (let d = -s.h; d < s.w; d += 10) {
        ctx.beginPath();
        ctx.moveTo(s.x + d, s.y + s.h);
        ctx.lineTo(s.x + d + s.h, s.y);
        ctx.stroke();
      }
    }
    ctx.restore();
    ctx.save();
    ctx.strokeStyle = "#3ea6ff";
    ctx.lineWidth = 2;
    ctx.setLineDash([8, 5]);
    ctx.strokeRect(s.x, s.y, s.w, s.h);
    ctx.setLineDash([]);
    const label = `${box.w} × ${box.h}`;
    ctx.font = "12px system-ui, sans-serif";
    const tw = ctx.measureText(label).width + 10;
    // The size label sits above the box, or inside it where the view's edge would cut it.
    const lx = Math.max(4, Math.min(s.x, this.width - tw - 4));
    const ly = s.y - 20 < 2 ? Math.max(2, s.y + 2) : s.y - 20;
    ctx.fillStyle = "#3ea6ff";
    ctx.fillRect(lx, ly, tw, 18);
    ctx.fillStyle = "#00131f";
    ctx.fillText(label, lx + 5, ly + 13);
    if (this.app.toolName === "box") for (const h of boxHandles(s)) this.handle(h.x, h.y);
    ctx.restore();
  }

  handle(x, y, round = false) {
    const { ctx } = this;
    ctx.save();
    ctx.fillStyle = "#fff";
    ctx.strokeStyle = "#1877d2";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    if (round) ctx.arc(x, y, HANDLE, 0, Math.PI * 2);
    else ctx.rect(x - HANDLE, y - HANDLE, HANDLE * 2, HANDLE * 2);
    ctx.fill();
    ctx.stroke();
    ctx.restore();
  }

  drawBrushCursor() {
    const app = this.app;
    if (!this.hover || !app.tool.brushSize) return;
    const size = app.tool.brushSize() * this.view.zoom;
    const p = toScreen(this.view, this.hover.x, this.hover.y);
    const { ctx } = this;
    ctx.save();
    ctx.beginPath();
    ctx.arc(p.x, p.y, Math.max(1, size / 2), 0, Math.PI * 2);
    ctx.strokeStyle = "#000a";
    ctx.lineWidth = 2;
    ctx.stroke();
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 1;
    ctx.stroke();
    ctx.restore();
  }

  /** The screen position of a layer-local point of `layer`. */
  layerToScreen(layer, x, y) {
    const p = apply(layer.matrix, x, y);
    return toScreen(this.view, p.x, p.y);
  }
}

/** The eight resize handles of a box in screen space, each with the edges it moves. */
export function boxHandles(s) {
  const xs = { w: s.x, c: s.x + s.w / 2, e: s.x + s.w };
  const ys = { n: s.y, c: s.y + s.h / 2, s: s.y + s.h };
  return [
    { edge: "nw", x: xs.w, y: ys.n }, { edge: "n", x: xs.c, y: ys.n }, { edge: "ne", x: xs.e, y: ys.n },
    { edge: "e", x: xs.e, y: ys.c }, { edge: "se", x: xs.e, y: ys.s }, { edge: "s", x: xs.c, y: ys.s },
    { edge: "sw", x: xs.w, y: ys.s }, { edge: "w", x: xs.w, y: ys.c },
  ];
}

export const HANDLE_RADIUS = HANDLE + 3;
