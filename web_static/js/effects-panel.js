// The Adjust tab: pick an effect, drag its amount and watch a live preview on the canvas;
// Apply runs it on the full-size layer (in a worker) as one undoable step.

import { $, h } from "./dom.js";
import { EFFECTS, applyEffect, effectInfo, isNeutral } from "./effects.js";
import { context, copyCanvas, makeCanvas } from "./document.js";
import { invert } from "./geometry.js";

const PREVIEW_SIDE = 1280;
const DRAFT_SIDE = 640;
/** While the amount is being dragged the preview is drawn from a smaller copy (a quarter of
 * the work); the sharper one follows once the slider rests. */
const SETTLE_MS = 180;

export class EffectsPanel {
  constructor(app) {
    this.app = app;
    this.name = "brightness";
    this.amount = $("#effect-amount");
    this.out = $("#effect-amount-out");
    this.status = $("#effect-status");
    this.source = null; // {layerId, canvas, scale, data}
    this.seed = 1;
    this.busy = false;
    this.timings = [];
    this.buttons = EFFECTS.map((e) =>
      h("button", { "aria-pressed": "false", dataset: { effect: e.name }, onclick: () => this.choose(e.name) }, e.label),
    );
    $("#effect-list").replaceChildren(...this.buttons);
    this.amount.addEventListener("input", () => {
      this.preview(DRAFT_SIDE);
      clearTimeout(this.settleTimer);
      this.settleTimer = setTimeout(() => this.preview(), SETTLE_MS);
    });
    $("#effect-apply").onclick = () => this.apply();
    $("#effect-reset").onclick = () => this.choose(this.name);
    this.choose("brightness", false);
  }

  choose(name, preview = true) {
    const info = effectInfo(name);
    this.name = name;
    for (const b of this.buttons) b.setAttribute("aria-pressed", String(b.dataset.effect === name));
    Object.assign(this.amount, { min: info.min, max: info.max, step: info.step });
    this.amount.value = info.default;
    this.seed = (Math.random() * 2 ** 31) | 0;
    if (preview) this.preview();
    else this.showAmount();
  }

  showAmount() {
    const info = effectInfo(this.name);
    this.out.textContent = `${this.amount.value}${info.unit}`;
  }

  /** Forget the preview (another layer, another tab, the pixels changed). */
  clear() {
    this.source = null;
    this.sources?.clear();
    if (this.app.previews.size) {
      this.app.previews.clear();
      this.app.canvasView.requestRender();
    }
  }

  /** The active layer reduced to at most PREVIEW_SIDE pixels a side, its pixels kept. */
  previewSource(layer, side) {
    this.sources ??= new Map();
    if (this.source?.layerId !== layer.id || this.source.canvasRef !== layer.canvas) this.sources.clear();
    const cached = this.sources.get(side);
    if (cached) return (this.source = cached);
    const scale = Math.min(1, side / Math.max(layer.width, layer.height));
    const w = Math.max(1, Math.round(layer.width * scale)), h = Math.max(1, Math.round(layer.height * scale));
    const canvas = makeCanvas(w, h);
    const ctx = context(canvas);
    ctx.drawImage(layer.canvas, 0, 0, w, h);
    this.source = { layerId: layer.id, canvasRef: layer.canvas, canvas, scale: w / layer.width, data: ctx.getImageData(0, 0, w, h) };
    this.sources.set(side, this.source);
    return this.source;
  }

  preview(side = PREVIEW_SIDE) {
    this.showAmount();
    const layer = this.app.doc.active;
    if (!layer || this.app.activeTab !== "adjust") return;
    const amount = Number(this.amount.value);
    if (isNeutral(this.name, amount)) {
      this.app.previews.delete(layer.id);
      this.app.canvasView.requestRender();
      return;
    }
    const started = performance.now();
    const src = this.previewSource(layer, side);
    const image = new ImageData(new Uint8ClampedArray(src.data.data), src.data.width, src.data.height);
    applyEffect(image, this.name, amount, { scale: src.scale, seed: this.seed });
    const canvas = makeCanvas(image.width, image.height);
    const ctx = context(canvas);
    ctx.putImageData(image, 0, 0);
    const clipped = this.clipToSelection(layer, src.canvas, canvas, src.scale);
    this.app.previews.set(layer.id, clipped);
    this.app.canvasView.requestRender();
    const ms = performance.now() - started;
    if (side === DRAFT_SIDE) this.lastDraftMs = ms;
    else this.lastPreviewMs = ms;
    this.status.textContent = `Preview: ${Math.round(ms)} ms at ${image.width}×${image.height}`;
  }

  /** Where there is a selection, the effect shows only inside it. */
  clipToSelection(layer, original, effected, scale) {
    const selection = this.app.doc.selection;
    if (!selection) return effected;
    const out = copyCanvas(original);
    const ctx = context(out);
    ctx.save();
    ctx.scale(scale, scale);
    ctx.transform(...invert(layer.matrix));
    ctx.beginPath();
    ctx.rect(selection.x, selection.y, selection.w, selection.h);
    ctx.restore();
    ctx.save();
    ctx.clip();
    ctx.drawImage(effected, 0, 0);
    ctx.restore();
    return out;
  }

  worker() {
    if (this.effectWorker === undefined) {
      try {
        this.effectWorker = new Worker(new URL("./effects-worker.js", import.meta.url), { type: "module" });
      } catch {
        this.effectWorker = null;
      }
    }
    return this.effectWorker;
  }

  /** Run the effect on the pixels, in the worker when there is one. */
  run(image, name, amount, seed) {
    const worker = this.worker();
    if (!worker) return Promise.resolve(applyEffect(image, name, amount, { seed }));
    return new Promise((resolve, reject) => {
      const id = Math.random();
      const onMessage = (event) => {
        if (event.data.id !== id) return;
        worker.removeEventListener("message", onMessage);
        resolve(new ImageData(new Uint8ClampedArray(event.data.buffer), image.width, image.height));
      };
      worker.addEventListener("message", onMessage);
      worker.addEventListener("error", reject, { once: true });
      worker.postMessage({ id, buffer: image.data.buffer, width: image.width, height: image.height, name, amount, seed }, [image.data.buffer]);
    });
  }

  async apply() {
    const app = this.app, doc = app.doc, layer = doc.active;
    if (!layer) return app.toast("Select a layer to apply the effect to.", "warn");
    const amount = Number(this.amount.value);
    if (isNeutral(this.name, amount)) return app.toast("Move the amount away from zero first.", "warn");
    if (this.busy) return;
    this.busy = true;
    $("#effect-apply").disabled = true;
    this.status.textContent = `Applying ${effectInfo(this.name).label.toLowerCase()} to ${layer.width}×${layer.height}…`;
    const started = performance.now();
    try {
      const ctx = context(layer.canvas);
      const image = ctx.getImageData(0, 0, layer.width, layer.height);
      const done = await this.run(image, this.name, amount, this.seed);
      const canvas = makeCanvas(layer.width, layer.height);
      context(canvas).putImageData(done, 0, 0);
      const result = this.clipToSelection(layer, layer.canvas, canvas, 1);
      doc.replaceLayerCanvas(layer, result, `${effectInfo(this.name).label} ${amount}${effectInfo(this.name).unit}`);
      const ms = performance.now() - started;
      this.timings.push({ effect: this.name, amount, width: layer.width, height: layer.height, ms });
      this.status.textContent = `${effectInfo(this.name).label} applied in ${Math.round(ms)} ms (${layer.width}×${layer.height}).`;
      this.clear();
      this.amount.value = effectInfo(this.name).neutral;
      this.showAmount();
    } catch (err) {
      app.toast(`The effect failed: ${err.message || err}`, "error");
    } finally {
      this.busy = false;
      $("#effect-apply").disabled = false;
    }
  }
}
