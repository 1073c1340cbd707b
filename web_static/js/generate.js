// The Generate tab: tasks on offer (from their schemas), the generation box, the task's form,
// and submitting it. The box's picture and mask become the task's image inputs, image lists
// are picked from the layers, a concept from the registry (with its history shown); results
// come back through the jobs list into the staging strip.

import { $, h } from "./dom.js";
import { buildForm, readInputs, problemsByInput, taskEntries } from "./schema-form.js";
import { renderForm } from "./form-view.js";
import { snapBox, outpaintSplit, boxOverhang, intersect, lcm } from "./geometry.js";
import { exportMask, maskCoverage } from "./mask.js";
import { context, makeCanvas } from "./document.js";
import { ImageListField, canvasToBlob } from "./image-list-field.js";
import { ConceptHistory, conceptPicker } from "./concept-panel.js";
import { conceptInput, createsConcept } from "./concepts.js";

const TASK_KEY = "lightbox.task";
const SNAPS = [8, 64];

export class GeneratePanel {
  constructor(app) {
    this.app = app;
    this.picker = $("#task-picker");
    this.boxPanel = $("#box-panel");
    this.formEl = $("#task-form");
    this.entries = [];
    this.entry = null;
    this.form = null;
    this.view = null;
    this.listChoices = {};
    this.lists = new Map();
    this.thumbs = new Map();
    this.history = new ConceptHistory(app.api, app.concepts, $("#concept-history"));
    this.snap = Number(localStorage.getItem("lightbox.snap")) || 8;
    this.formEl.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submit();
    });
    this.renderPicker();
  }

  // -- tasks -----------------------------------------------------------------------------------

  async loadTasks() {
    try {
      const listing = await this.app.api.tasks();
      const entries = taskEntries(listing);
      const signature = JSON.stringify(entries.map((e) => [e.name, e.federated, e.hosts.map((x) => x.peerId), e.schema.version]));
      this.error = null;
      if (conceptInput(this.form)) this.app.concepts.load();
      if (signature !== this.signature) {
        this.signature = signature;
        this.entries = entries;
        this.renderPicker();
      }
    } catch (err) {
      // A passing failure keeps the list there is; only an empty list says why.
      this.error = err;
      if (!this.entries.length) this.renderPicker();
    }
  }

  renderPicker() {
    const entries = this.entries;
    if (!entries.length) {
      this.picker.replaceChildren(
        h("p", { class: "muted small" }, this.error ? `Cannot list tasks: ${this.error.message}` : "No task is on offer yet: no GPU host has announced one."),
        h("button", { type: "button", onclick: () => this.loadTasks() }, "Refresh"),
      );
      this.select(null);
      return;
    }
    const select = h("select", { id: "task-select", "aria-label": "Task" });
    for (const [label, federated] of [["On this network", false], ["Only on federated hosts", true]]) {
      const group = entries.filter((e) => e.federated === federated);
      if (!group.length) continue;
      select.append(h("optgroup", { label }, group.map((e) => h("option", { value: `${federated ? "f:" : ""}${e.name}` }, `${e.title}`))));
    }
    const wanted = this.entry ? `${this.entry.federated ? "f:" : ""}${this.entry.name}` : localStorage.getItem(TASK_KEY);
    const keys = entries.map((e) => `${e.federated ? "f:" : ""}${e.name}`);
    select.value = keys.includes(wanted) ? wanted : keys[0];
    select.addEventListener("change", () => this.pick(select.value));
    this.hostSelect = h("select", { id: "task-host", "aria-label": "Host" });
    this.picker.replaceChildren(h("label", { class: "field", htmlFor: "task-select" }, h("span", { class: "label" }, "Task")), select, h("div", { class: "hosts", id: "task-hosts" }));
    this.pick(select.value);
  }

  pick(key) {
    const federated = key.startsWith("f:");
    const name = federated ? key.slice(2) : key;
    const entry = this.entries.find((e) => e.name === name && e.federated === federated) ?? null;
    localStorage.setItem(TASK_KEY, key);
    this.select(entry);
  }

  select(entry) {
    const same = entry && this.entry && entry.name === this.entry.name && JSON.stringify(entry.schema.inputs) === JSON.stringify(this.entry.schema.inputs);
    const previous = same && this.view ? this.view.values() : null;
    this.entry = entry;
    this.form = entry ? buildForm(entry.schema) : null;
    if (!same) this.listChoices = {};
    this.renderHosts();
    this.renderBoxPanel();
    this.renderForm();
    if (previous) for (const [k, v] of Object.entries(previous)) this.view.set(k, v);
    this.app.setShowBox();
    if (this.form?.box) this.fitBoxToLimits();
  }

  renderHosts() {
    const el = $("#task-hosts");
    if (!el || !this.entry) return;
    const hosts = this.entry.hosts;
    if (this.entry.federated || hosts.length > 1) {
      this.hostSelect.replaceChildren(
        ...(this.entry.federated ? [] : [h("option", { value: "" }, "Any attached host")]),
        ...hosts.map((x) => h("option", { value: x.peerId }, x.label)),
      );
      el.replaceChildren(h("label", {}, "Host ", this.hostSelect));
    } else {
      el.replaceChildren(hosts.length ? `Runs on ${hosts.map((x) => x.label).join(", ")}` : "");
    }
  }

  // -- the box -----------------------------------------------------------------------------------

  limits() {
    const base = this.form?.box ?? { multiple: 8, minW: 8, maxW: 16384, minH: 8, maxH: 16384 };
    return { ...base, multiple: lcm(base.multiple, this.snap) };
  }

  fitBoxToLimits() {
    const doc = this.app.doc;
    const snapped = snapBox(doc.box, this.limits(), "center");
    if (JSON.stringify(snapped) !== JSON.stringify(doc.box)) {
      doc.box = snapped;
      doc.changed("box");
    }
  }

  renderBoxPanel() {
    const form = this.form;
    if (!form?.box) {
      this.boxPanel.replaceChildren();
      return;
    }
    const doc = this.app.doc;
    const l = this.limits();
    const size = (axis) => {
      const input = h("input", { type: "number", id: `box-${axis}`, min: axis === "w" ? l.minW : l.minH, max: Number.isFinite(axis === "w" ? l.maxW : l.maxH) ? (axis === "w" ? l.maxW : l.maxH) : undefined, step: l.multiple, value: doc.box[axis], "aria-label": axis === "w" ? "Box width" : "Box height" });
      input.addEventListener("change", () => {
        const before = { ...doc.box };
        doc.setBox(snapBox({ ...doc.box, [axis]: Number(input.value) || doc.box[axis] }, this.limits(), "center"), before, "Resize generation box");
      });
      return input;
    };
    const snap = h("select", { id: "box-snap", "aria-label": "Snap to" }, SNAPS.map((s) => h("option", { value: s }, `×${s}`)));
    snap.value = String(this.snap);
    snap.addEventListener("change", () => {
      this.snap = Number(snap.value);
      localStorage.setItem("lightbox.snap", snap.value);
      const before = { ...doc.box };
      doc.setBox(snapBox(doc.box, this.limits(), "center"), before, "Snap generation box");
      this.renderBoxPanel();
    });
    const over = boxOverhang(doc.box, doc);
    const outpaint = over.left || over.right || over.top || over.bottom;
    this.boxPanel.replaceChildren(
      h("div", { class: "row" }, h("strong", {}, "Generation box"), h("span", { class: "grow" }), h("button", { type: "button", title: "Move and resize the box on the canvas (G)", onclick: () => this.app.setTool("box") }, "Edit (G)")),
      h("div", { class: "row" }, size("w"), "×", size("h"), "px", h("span", { class: "grow" }), h("label", { class: "small" }, "snap ", snap)),
      h("div", { class: "row buttons" },
        h("button", { type: "button", onclick: () => this.boxFromPicture() }, "Fit picture"),
        h("button", { type: "button", disabled: !doc.selection, onclick: () => this.boxFromSelection() }, "From selection"),
      ),
      h("div", { class: "muted small", id: "box-note" },
        `Sides are multiples of ${l.multiple}, ${l.minW}–${Number.isFinite(l.maxW) ? l.maxW : "∞"} px.`,
        outpaint ? " The box reaches past the picture: the new area will be painted (outpainting)." : ""),
    );
  }

  boxFromPicture() {
    const doc = this.app.doc;
    const before = { ...doc.box };
    doc.setBox(snapBox({ x: 0, y: 0, w: doc.width, h: doc.height }, this.limits(), "center"), before, "Fit box to picture");
  }

  boxFromSelection() {
    const doc = this.app.doc;
    if (!doc.selection) return;
    const before = { ...doc.box };
    doc.setBox(snapBox(doc.selection, this.limits(), "center"), before, "Box from selection");
  }

  /** Called when the box or the picture changed: sizes, previews and notes follow. */
  boxChanged(live = false) {
    if (!this.form) return;
    const doc = this.app.doc;
    const b = this.form.bindings;
    if (b.width) this.view?.set(b.width, doc.box.w);
    if (b.height) this.view?.set(b.height, doc.box.h);
    if (!live) {
      this.renderBoxPanel();
      this.updateThumbs();
    } else {
      const w = $("#box-w"), hh = $("#box-h");
      if (w) w.value = doc.box.w;
      if (hh) hh.value = doc.box.h;
    }
  }

  /** The rectangle of the picture an image input gets: the box, or its inside part when the
   * task takes the outside as extensions (left/right/top/bottom). */
  imageRect() {
    const doc = this.app.doc;
    if (this.form?.bindings.overhang) {
      const split = outpaintSplit(doc.box, doc, this.form.box?.multiple || 8);
      return split ? split.image : intersect(doc.box, { x: 0, y: 0, w: doc.width, h: doc.height });
    }
    return doc.box;
  }

  // -- the form -----------------------------------------------------------------------------------

  renderForm() {
    const form = this.form;
    this.thumbs.clear();
    this.lists.clear();
    if (!form) {
      this.formEl.replaceChildren();
      this.view = null;
      this.history.hide();
      return;
    }
    const container = h("div");
    const creates = createsConcept(form);
    this.view = renderForm(container, form, {
      imageField: (f) => this.imageField(f),
      conceptField: (f, { id, described }) => conceptPicker(this.app.concepts, f, { id, described, creates, onPick: (name) => this.history.show(name) }),
    });
    const concept = conceptInput(form);
    if (concept) this.history.show(this.view.values()[concept]);
    else this.history.hide();
    const b = form.bindings;
    for (const name of [b.width, b.height, ...(b.overhang ? Object.values(b.overhang) : [])]) {
      const control = name && this.view.controls.get(name);
      if (control) {
        control.el.readOnly = name !== b.width && name !== b.height;
        control.el.title = "Set by the generation box";
      }
    }
    if (b.width || b.height) {
      for (const name of [b.width, b.height]) {
        const el = name && this.view.controls.get(name)?.el;
        el?.addEventListener("change", () => {
          const doc = this.app.doc;
          const before = { ...doc.box };
          const key = name === b.width ? "w" : "h";
          doc.setBox(snapBox({ ...doc.box, [key]: Number(el.value) || doc.box[key] }, this.limits(), "nw"), before, "Resize generation box");
        });
      }
    }
    const submit = h("button", { type: "submit", class: "primary", id: "task-submit", title: "Run (Ctrl+Enter)" }, `Run ${form.title}`);
    container.append(h("div", { class: "submit-row" }, submit));
    this.formEl.replaceChildren(container);
    this.boxChanged();
  }

  imageField(f) {
    if (f.widget === "image") {
      const canvas = h("canvas", { width: 112, height: 112 });
      const note = h("span");
      this.thumbs.set(f.name, { canvas, note, kind: "image" });
      return h("div", { class: "from-box" }, canvas, h("div", {}, note, h("div", {}, "The picture inside the generation box.")));
    }
    if (f.widget === "mask") {
      const canvas = h("canvas", { width: 112, height: 112 });
      const note = h("span");
      this.thumbs.set(f.name, { canvas, note, kind: "mask" });
      const showMask = h("input", { type: "checkbox", checked: this.app.showMask, dataset: { showMask: "" }, onchange: (e) => this.app.setShowMask(e.target.checked) });
      return h("div", {},
        h("div", { class: "from-box" }, canvas, h("div", {}, note, h("div", {}, "Paint over the picture with the mask tool (K): white is repainted."))),
        h("div", { class: "row buttons" },
          h("button", { type: "button", onclick: () => this.app.setTool("mask") }, "Paint (K)"),
          h("button", { type: "button", onclick: () => this.app.doc.invertMask() }, "Invert"),
          h("button", { type: "button", onclick: () => this.app.doc.clearMask() }, "Clear"),
          h("label", { class: "check small" }, showMask, "show"),
        ),
      );
    }
    const list = new ImageListField(this.app, f, (this.listChoices[f.name] ||= { layers: new Set(), extras: [] }));
    this.lists.set(f.name, list);
    return list.el;
  }

  /** Redraw the small previews of what the box will send (throttled by the caller). */
  updateThumbs() {
    for (const list of this.lists.values()) list.layersChanged();
    if (!this.thumbs.size) return;
    const doc = this.app.doc;
    const rect = this.imageRect();
    if (!rect) return;
    for (const [name, t] of this.thumbs) {
      const ctx = t.canvas.getContext("2d");
      ctx.clearRect(0, 0, t.canvas.width, t.canvas.height);
      const s = Math.min(t.canvas.width / rect.w, t.canvas.height / rect.h);
      const w = rect.w * s, hh = rect.h * s;
      if (t.kind === "image") {
        ctx.drawImage(doc.flatten(rect, { scale: Math.min(1, s * 2) }), (t.canvas.width - w) / 2, (t.canvas.height - hh) / 2, w, hh);
        t.note.textContent = `${rect.w} × ${rect.h} px`;
      } else {
        const mask = this.maskImage(rect);
        const small = makeCanvas(rect.w, rect.h);
        context(small).putImageData(mask, 0, 0);
        ctx.drawImage(small, (t.canvas.width - w) / 2, (t.canvas.height - hh) / 2, w, hh);
        t.note.textContent = `${Math.round(maskCoverage(doc.maskPixels(rect).data) * 100)}% painted`;
      }
      void name;
    }
  }

  /** The grey mask image for `rect` (white = repaint; outside the picture: white). */
  maskImage(rect) {
    const doc = this.app.doc;
    const pixels = doc.maskPixels(rect);
    const inside = intersect(rect, { x: 0, y: 0, w: doc.width, h: doc.height });
    const local = inside ? { x: inside.x - rect.x, y: inside.y - rect.y, w: inside.w, h: inside.h } : { x: 0, y: 0, w: 0, h: 0 };
    return new ImageData(exportMask(pixels.data, rect.w, rect.h, { inside: local }), rect.w, rect.h);
  }

  // -- submitting --------------------------------------------------------------------------------

  /** The values the box provides: images as PNG blobs, sizes, extensions. */
  async boxValues() {
    const form = this.form, doc = this.app.doc, b = form.bindings;
    const images = {}, numbers = {};
    for (const [name, list] of this.lists) {
      const items = await list.values();
      if (items.length) images[name] = items;
    }
    if (!form.box) return { images, numbers, rect: null };
    const rect = this.imageRect();
    if (!rect) throw new Error("The generation box does not cover the picture.");
    for (const name of b.images) images[name] = await canvasToBlob(doc.flatten(rect));
    for (const m of b.masks) {
      const mask = makeCanvas(rect.w, rect.h);
      context(mask).putImageData(this.maskImage(rect), 0, 0);
      images[m.name] = await canvasToBlob(mask);
    }
    if (b.width) numbers[b.width] = doc.box.w;
    if (b.height) numbers[b.height] = doc.box.h;
    if (b.overhang) {
      const split = outpaintSplit(doc.box, doc, form.box?.multiple || 8);
      if (split) for (const side of ["left", "right", "top", "bottom"]) numbers[b.overhang[side]] = split[side];
    }
    return { images, numbers, rect };
  }

  async submit() {
    const app = this.app;
    if (!this.form || !this.view) return;
    const form = this.form;
    // Where the results go, noted before the pictures are read: the box may move while they are sent.
    const place = { box: { ...app.doc.box }, origin: { ...app.doc.origin } };
    let values;
    try {
      values = await this.boxValues();
    } catch (err) {
      this.view.showProblems({ "": [err.message] });
      return;
    }
    const raw = { ...this.view.values() };
    for (const [k, v] of Object.entries(values.numbers)) raw[k] = String(v);
    for (const [k, v] of Object.entries(values.numbers)) this.view.set(k, v);
    const { inputs, problems } = readInputs(form, raw, { ...Object.fromEntries(Object.keys(values.images).map((k) => [k, values.images[k]])) });
    const byInput = problemsByInput(form, problems);
    this.view.showProblems(byInput);
    if (problems.length) {
      app.toast("Some fields need attention before the task can run.", "warn");
      return;
    }
    const host = this.hostSelect?.value || (this.entry.federated ? this.entry.hosts[0]?.peerId : null) || null;
    const button = $("#task-submit");
    button.disabled = true;
    try {
      const job = await app.api.submitJob(form.task, inputs, host);
      const concept = inputs[conceptInput(form)] ?? null;
      const teaches = concept && createsConcept(form) ? { concept, version: app.concepts.find(concept)?.version ?? 0 } : null;
      app.jobs.follow(job, { task: this.entry, ...place, teaches });
      this.view.showProblems({});
    } catch (err) {
      if (err.kind === "invalid" && (err.problems?.length || err.field)) {
        const listed = err.problems?.length ? err.problems : [{ field: err.field, message: err.detail }];
        this.view.showProblems(problemsByInput(form, listed));
        app.toast("The node refused some fields; see the messages next to them.", "warn");
      } else {
        this.view.showProblems({ "": [err.message] });
        app.reportError(err);
      }
    } finally {
      button.disabled = false;
    }
  }
}
