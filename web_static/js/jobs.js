// Jobs and their results: a card per job with its state, queue position, progress and a
// cancel button, followed live; results go to the staging strip, where the person steps
// through them and accepts one (a new layer scaled into the box) or discards it. Results that
// are neither pictures nor text (a fine-tune's adapter) are offered as downloads.

import { $, h } from "./dom.js";
import { isFinalState } from "./api.js";
import { Layer, context, makeCanvas } from "./document.js";
import { placeInBox, union } from "./geometry.js";
import { describeModel } from "./concepts.js";

const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "application/json": "json" };

/** A download name for an output: `<job>-<output>.<ext>`, the extension from its media type. */
export function fileName(jobId, name, mediaType) {
  const type = String(mediaType || "").toLowerCase();
  const ext = EXTENSIONS[type] ?? (type.endsWith("+safetensors") ? "safetensors" : type.startsWith("text/") ? "txt" : "bin");
  return `${jobId}-${name}.${ext}`;
}

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function ordinal(n) {
  const s = ["th", "st", "nd", "rd"], v = n % 100;
  return n + (s[(v - 20) % 10] || s[v] || s[0]);
}

export class JobsPanel {
  constructor(app) {
    this.app = app;
    this.list = $("#jobs");
    this.cards = new Map();
    this.items = [];
    this.index = 0;
    $("#staging-prev").onclick = () => this.step(-1);
    $("#staging-next").onclick = () => this.step(1);
    $("#staging-accept").onclick = () => this.accept();
    $("#staging-discard").onclick = () => this.discard();
    $("#staging-close").onclick = () => this.hide();
  }

  // -- following jobs ------------------------------------------------------------------------------

  /**
   * Show a just-submitted job and follow it until it ends; then fetch its results, to be
   * placed in `box` (noted when the picture's origin was `origin`). A job that `teaches` a
   * concept ({concept, version}) is followed on into the registry until its adapter is merged.
   */
  async follow(job, { task, box, origin = { x: 0, y: 0 }, teaches = null }) {
    const controller = new AbortController();
    const card = this.card(job, task, controller);
    this.update(card, job);
    let final = job;
    try {
      final = await this.app.api.watchJob(job.job_id, (j) => this.update(card, j), { signal: controller.signal });
    } catch (err) {
      card.message.textContent = err.message;
      this.app.reportError(err);
      return;
    }
    if (final?.state === "done") {
      try {
        const results = await this.app.api.results(job.job_id);
        const files = results.filter((r) => r.text === null && !r.mediaType.startsWith("image/"));
        const note = teaches && files.length ? `${files.map((r) => r.name).join(", ")} submitted for concept ${teaches.concept}` : "";
        await this.stage(results, { job: final, task, box, origin, note });
        card.message.textContent = results.length ? `${results.length} result${results.length === 1 ? "" : "s"} in the strip below the canvas.` : "Done (no outputs).";
        if (note) this.followConcept(card, note, teaches);
      } catch (err) {
        card.message.textContent = `Results could not be fetched: ${err.message}`;
        this.app.reportError(err);
      }
    }
  }

  /** Say what became of a submitted adapter: waiting for the merge, then the new version. */
  async followConcept(card, note, { concept, version }) {
    const say = (rest) => (card.message.textContent = `Done: ${note}${rest}`);
    say("; the registry merges it into the concept's model shortly.");
    card.el.dataset.concept = concept;
    const merged = await this.app.concepts.awaitMerge(concept, version);
    if (!card.el.isConnected) return;
    card.el.dataset.merged = String(Boolean(merged));
    say(merged ? `, and merged: ${concept} is now at ${describeModel(merged)}` : "; no merge seen yet (the concept's history shows it when it lands).");
  }

  card(job, task, controller) {
    const state = h("span", { class: "state" });
    const progress = h("progress", { max: 1, value: 0 });
    const message = h("div", { class: "message" });
    const cancel = h("button", { type: "button", class: "danger", title: "Cancel this job", onclick: () => this.cancel(job.job_id, card) }, "Cancel");
    const el = h("div", { class: "job", dataset: { jobId: job.job_id } },
      h("header", {}, h("strong", {}, task?.title || job.task), state, h("span", { class: "grow" }), cancel),
      progress,
      message,
    );
    this.list.prepend(el);
    const card = { el, state, progress, message, cancel, controller };
    this.cards.set(job.job_id, card);
    while (this.list.children.length > 12) this.list.lastElementChild.remove();
    return card;
  }

  update(card, job) {
    card.job = job;
    card.el.dataset.state = job.state;
    card.state.className = `state ${job.state}`;
    card.state.textContent = job.state;
    const final = isFinalState(job.state);
    card.cancel.hidden = final;
    if (job.state === "queued") {
      card.progress.removeAttribute("value");
      card.message.textContent = job.queue_position ? `Waiting: ${ordinal(job.queue_position)} in the queue.` : "Waiting for a host.";
    } else {
      card.progress.value = final && job.state === "done" ? 1 : job.progress || 0;
      const percent = `${Math.round((job.progress || 0) * 100)}%`;
      if (job.state === "faulted" || job.state === "expired") card.message.textContent = job.error || (job.faults || []).join("; ") || job.state;
      else if (job.state === "cancelled") card.message.textContent = "Cancelled.";
      else if (!final) card.message.textContent = `${percent}${job.progress_message ? ` · ${job.progress_message}` : ""}`;
    }
    card.el.dataset.progress = String(job.progress ?? 0);
  }

  async cancel(id, card) {
    card.cancel.disabled = true;
    try {
      const job = await this.app.api.cancel(id);
      this.update(card, job);
    } catch (err) {
      this.app.reportError(err);
    } finally {
      card.cancel.disabled = false;
    }
  }

  // -- the staging strip -----------------------------------------------------------------------------

  async stage(results, { job, task, box, origin = { x: 0, y: 0 }, note = "" }) {
    for (const r of results) {
      const item = { job, task, box, origin, name: r.name, mediaType: r.mediaType, text: r.text, blob: r.blob };
      if (r.text === null && !r.mediaType.startsWith("image/")) Object.assign(item, { file: fileName(job.job_id, r.name, r.mediaType), note });
      if (r.mediaType.startsWith("image/")) {
        const bitmap = await createImageBitmap(r.blob);
        item.canvas = makeCanvas(bitmap.width, bitmap.height);
        context(item.canvas).drawImage(bitmap, 0, 0);
        bitmap.close?.();
      }
      this.items.push(item);
    }
    if (results.length) this.index = this.items.length - results.length;
    this.render();
  }

  get current() {
    return this.items[this.index] ?? null;
  }

  get visible() {
    return !$("#staging").hidden;
  }

  /** Where a result goes in today's picture: its box, followed through crops and growth. */
  boxOf(item) {
    return this.app.doc.placeRect(item.box, item.origin);
  }

  /** What the canvas shows in the box while a result is looked at: {canvas, box} or null. */
  preview() {
    const item = this.current;
    return this.visible && item?.canvas ? { canvas: item.canvas, box: this.boxOf(item) } : null;
  }

  render() {
    const strip = $("#staging");
    strip.hidden = this.items.length === 0;
    this.index = Math.max(0, Math.min(this.index, this.items.length - 1));
    $("#staging-count").textContent = this.items.length ? `${this.index + 1} of ${this.items.length}` : "";
    $("#staging-prev").disabled = this.index <= 0;
    $("#staging-next").disabled = this.index >= this.items.length - 1;
    $("#staging-accept").disabled = !this.current?.canvas;
    $("#staging-discard").disabled = !this.current;
    $("#staging-items").replaceChildren(
      ...this.items.map((item, i) => {
        const label = `${item.task?.title || item.job.task} · ${item.name}`;
        if (item.canvas) {
          const thumb = h("button", { class: "staged", title: label, "aria-current": String(i === this.index), onclick: () => this.show(i) });
          thumb.style.backgroundImage = `url(${item.url ||= URL.createObjectURL(item.blob)})`;
          thumb.append(h("span", { class: "tag" }, `${item.canvas.width}×${item.canvas.height}`));
          return thumb;
        }
        if (item.file) {
          const link = h("a", { href: (item.url ||= URL.createObjectURL(item.blob)), download: item.file, class: "download" }, `Download ${item.file.split(".").pop()}`);
          return h("div", { class: "staged text file", title: label, "aria-current": String(i === this.index), onclick: (e) => e.target !== link && this.show(i) },
            h("strong", {}, item.name), ` · ${size(item.blob.size)}`, h("div", { class: "note" }, item.note || "Not a picture: download it."), link);
        }
        return h("button", { class: "staged text", title: label, "aria-current": String(i === this.index), onclick: () => this.show(i) }, h("strong", {}, `${item.name}: `), item.text ?? "");
      }),
    );
    this.app.canvasView.requestRender();
  }

  show(i) {
    this.index = i;
    this.render();
  }

  step(delta) {
    if (!this.items.length) return;
    this.show(Math.max(0, Math.min(this.items.length - 1, this.index + delta)));
  }

  hide() {
    $("#staging").hidden = true;
    this.app.canvasView.requestRender();
  }

  /** Place the current result as a new layer, scaled into the box it was made for; a box
   * reaching past the picture grows the picture to hold it. One undo step. */
  accept() {
    const item = this.current;
    if (!item?.canvas) return false;
    const doc = this.app.doc;
    const box = this.boxOf(item);
    const place = placeInBox(item.canvas.width, item.canvas.height, box);
    const layer = new Layer({ name: `${item.task?.title || item.job.task} result`, canvas: item.canvas, ...place });
    doc.history.begin("Accept result");
    const frame = union({ x: 0, y: 0, w: doc.width, h: doc.height }, box);
    if (frame.x < 0 || frame.y < 0 || frame.w > doc.width || frame.h > doc.height) {
      doc.setFrame(frame, "Extend picture");
      layer.x -= frame.x;
      layer.y -= frame.y;
    }
    doc.addLayer(layer, { label: "Place result" });
    doc.history.end();
    this.items.splice(this.index, 1);
    if (frame.x < 0 || frame.y < 0) this.app.canvasView.fit();
    this.render();
    this.app.toast("The result is a new layer.", "ok");
    return true;
  }

  discard() {
    if (!this.current) return false;
    const [item] = this.items.splice(this.index, 1);
    if (item.url) URL.revokeObjectURL(item.url);
    this.render();
    return true;
  }
}
