// The editor: composes the document, the canvas view, the tools, the panels and the API
// client, and owns what is shared between them (settings, shortcuts, messages, files).

import { $, $$, h } from "./dom.js";
import { LightboxApi } from "./api.js";
import { EditorDocument, Layer, context, makeCanvas } from "./document.js";
import { CanvasView } from "./view.js";
import { MoveTool, PaintTool, MaskTool, TextTool, SelectTool, CropTool, BoxTool, HandTool } from "./tools.js";
import { LayersPanel } from "./layers-panel.js";
import { EffectsPanel } from "./effects-panel.js";
import { GeneratePanel } from "./generate.js";
import { JobsPanel } from "./jobs.js";
import { AccountPanel } from "./account.js";
import { ConceptRegistry } from "./concept-panel.js";
import { SHORTCUTS, WHILE_TYPING, commandFor, displayChord } from "./shortcuts.js";
import { renderText, FONTS, fontOf } from "./text.js";
import { toScreen, invert } from "./geometry.js";

const ICONS = {
  move: "M12 3v18M3 12h18M12 3l-3 3M12 3l3 3M12 21l-3-3M12 21l3-3M3 12l3-3M3 12l3 3M21 12l-3-3M21 12l-3 3",
  brush: "M4 20c3 0 5-2 5-4.5a2.5 2.5 0 0 0-5 0C4 18 4 20 4 20zM9 14l10-10 1 1-10 10",
  eraser: "M8 20h12M5 15l9-9 5 5-7 7H9z M9 11l5 5",
  text: "M5 6V4h14v2M12 4v16M9 20h6",
  select: "M4 8V4h4M16 4h4v4M20 16v4h-4M8 20H4v-4M11 4h2M11 20h2M4 11v2M20 11v2",
  crop: "M6 2v16h16M2 6h16v16",
  box: "M4 4h16v16H4zM9 4v16M15 4v16M4 9h16M4 15h16",
  mask: "M12 3c4 5 6 8 6 11a6 6 0 0 1-12 0c0-3 2-6 6-11z",
  hand: "M8 12V5a1.5 1.5 0 0 1 3 0v6M11 11V4a1.5 1.5 0 0 1 3 0v7M14 11V6a1.5 1.5 0 0 1 3 0v8c0 4-3 7-7 7s-5-2-7-5l-1.5-3a1.5 1.5 0 0 1 2.6-1.5L8 13",
};
const TOOL_ORDER = [
  ["move", "Move, scale, rotate (V)"], ["brush", "Brush (B)"], ["eraser", "Eraser (E)"], ["text", "Text (T)"],
  ["select", "Selection box (M)"], ["crop", "Crop (C)"], ["box", "Generation box (G)"], ["mask", "Paint mask (K)"], ["hand", "Hand (H, or hold Space)"],
];

export class Editor {
  constructor() {
    this.api = new LightboxApi();
    this.doc = new EditorDocument(1024, 768);
    this.previews = new Map();
    this.showMask = false;
    this.activeTab = "layers";
    this.settings = {
      brush: { size: 24, color: "#e4572e", opacity: 100, hardness: 80 },
      eraser: { size: 48, opacity: 100, hardness: 80 },
      mask: { size: 64, hardness: 60, erase: false },
      text: { font: "system-ui", size: 64, color: "#ffffff", bold: true, italic: false, align: "left" },
    };
    this.tools = {
      move: new MoveTool(this), brush: new PaintTool(this, "brush"), eraser: new PaintTool(this, "eraser"),
      text: new TextTool(this), select: new SelectTool(this), crop: new CropTool(this), box: new BoxTool(this),
      mask: new MaskTool(this), hand: new HandTool(this),
    };
    this.toolName = "brush";
    this.canvasView = new CanvasView(this, $("#canvas-host"));
    this.layers = new LayersPanel(this);
    this.effects = new EffectsPanel(this);
    this.jobs = new JobsPanel(this);
    this.concepts = new ConceptRegistry(this.api);
    this.generate = new GeneratePanel(this);
    this.account = new AccountPanel(this);
    this.buildToolbar();
    this.bindMenu();
    this.bindTabs();
    this.bindKeys();
    this.bindDrop();
    this.doc.addEventListener("change", (e) => this.docChanged(e.detail.kind));
    this.doc.history.onChange(() => this.historyChanged());
    this.newPicture(1024, 768, "#ffffff");
    this.setTool("brush");
    this.historyChanged();
    this.pollStatus();
    setInterval(() => this.pollStatus(), 10_000);
    this.generate.loadTasks();
    setInterval(() => this.activeTab === "generate" && this.generate.loadTasks(), 15_000);
  }

  get tool() {
    return this.tools[this.toolName];
  }

  // -- the picture ---------------------------------------------------------------------------------

  newPicture(width, height, background = "#ffffff") {
    this.doc.reset(width, height);
    const canvas = makeCanvas(width, height);
    if (background !== "transparent") {
      const ctx = context(canvas);
      ctx.fillStyle = background;
      ctx.fillRect(0, 0, width, height);
    }
    this.doc.addLayer(new Layer({ name: "Background", canvas }));
    this.doc.history.clear();
    this.doc.blank = true;
    this.canvasView.fit();
    this.afterStructureChange();
  }

  /** Open image files: the first replaces an untouched picture, the others become layers. */
  async openFiles(files) {
    const images = [...files].filter((f) => /^image\/(png|jpeg|webp)$/.test(f.type) || /\.(png|jpe?g|webp)$/i.test(f.name));
    if (!images.length) return this.toast("Open PNG, JPEG or WebP images.", "warn");
    for (const file of images) {
      let bitmap;
      try {
        bitmap = await createImageBitmap(file);
      } catch {
        this.toast(`${file.name} is not an image this browser can read.`, "error");
        continue;
      }
      const canvas = makeCanvas(bitmap.width, bitmap.height);
      context(canvas).drawImage(bitmap, 0, 0);
      bitmap.close?.();
      const name = file.name.replace(/\.[^.]+$/, "") || "Image";
      const doc = this.doc;
      if (doc.pristine) {
        doc.reset(canvas.width, canvas.height);
        doc.addLayer(new Layer({ name, canvas }));
        doc.history.clear();
        doc.blank = false;
        this.canvasView.fit();
      } else {
        const s = Math.min(1, doc.width / canvas.width, doc.height / canvas.height);
        doc.addLayer(new Layer({ name, canvas, scaleX: s, scaleY: s, x: Math.round((doc.width - canvas.width * s) / 2), y: Math.round((doc.height - canvas.height * s) / 2) }), { label: `Open ${name}` });
      }
      this.toast(`Opened ${file.name} (${canvas.width}×${canvas.height}).`, "ok");
    }
    this.afterStructureChange();
    this.opened = (this.opened || 0) + 1;
  }

  async exportPng() {
    const canvas = this.doc.flatten();
    const blob = canvas.convertToBlob ? await canvas.convertToBlob({ type: "image/png" }) : await new Promise((r) => canvas.toBlob(r, "image/png"));
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: "lightbox.png" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30_000);
    this.toast(`Exported ${this.doc.width}×${this.doc.height} PNG.`, "ok");
  }

  // -- change notifications -------------------------------------------------------------------------

  docChanged(kind) {
    this.canvasView.requestRender();
    if (kind.endsWith("-live")) {
      if (kind === "box-live") this.generate.boxChanged(true);
      return;
    }
    if (["pixels", "layers", "size", "active", "transform"].includes(kind)) {
      this.effects.clear();
      if (this.activeTab === "adjust" && kind !== "pixels") this.effects.preview();
    }
    if (kind === "pixels" || kind === "size" || kind === "layers") this.layers.invalidate();
    if (kind !== "box" && kind !== "mask" && kind !== "selection") this.layers.refresh();
    if (kind === "size") $("#status-size").textContent = `${this.doc.width} × ${this.doc.height} px`;
    if (["box", "size", "pixels", "mask", "layers", "transform", "selection"].includes(kind)) this.scheduleThumbs();
    if (kind === "box" || kind === "size" || kind === "selection") {
      this.generate.renderBoxPanel();
      this.generate.boxChanged(true);
    }
  }

  scheduleThumbs() {
    clearTimeout(this.thumbTimer);
    this.thumbTimer = setTimeout(() => {
      this.generate.updateThumbs();
      this.generate.boxChanged();
    }, 120);
  }

  afterStructureChange() {
    $("#empty-hint").hidden = !this.doc.pristine;
    this.layers.invalidate();
    this.layers.refresh();
    $("#status-size").textContent = `${this.doc.width} × ${this.doc.height} px`;
    this.generate.renderBoxPanel();
    this.canvasView.requestRender();
  }

  historyChanged() {
    const history = this.doc.history;
    $("#empty-hint").hidden = !this.doc.pristine;
    $("#undo").disabled = !history.canUndo;
    $("#redo").disabled = !history.canRedo;
    $("#undo").title = history.canUndo ? `Undo ${history.undoLabel} (Ctrl+Z)` : "Nothing to undo";
    $("#redo").title = history.canRedo ? `Redo ${history.redoLabel} (Ctrl+Shift+Z)` : "Nothing to redo";
    $("#status-history").textContent = history.canUndo ? `Last: ${history.undoLabel}` : "";
  }

  onViewChange() {
    if (!this.canvasView) return;
    $("#zoom-label").textContent = `${Math.round(this.canvasView.view.zoom * 1000) / 10}%`;
    if (this.textEdit) this.placeTextEditor();
  }

  onPointer(p) {
    $("#status-pointer").textContent = `${Math.floor(p.x)}, ${Math.floor(p.y)}`;
  }

  setShowMask(on) {
    this.showMask = on;
    for (const box of $$("input[data-show-mask]")) box.checked = on;
    this.canvasView.requestRender();
    this.renderOptions();
  }

  /** The box shows while its tool is in hand or a task that uses it is open. */
  get showBox() {
    return this.toolName === "box" || (this.activeTab === "generate" && Boolean(this.generate?.form?.box));
  }

  setShowBox() {
    this.canvasView?.requestRender();
  }

  boxLimits() {
    return this.generate.limits();
  }

  stagedPreview() {
    return this.jobs?.preview() ?? null;
  }

  // -- messages ----------------------------------------------------------------------------------------

  toast(text, kind = "info") {
    const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
    $("#toasts").append(el);
    setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
    $("#status-message").textContent = text;
  }

  /** An API error as a message; signing in is offered where that is the fix. */
  reportError(err) {
    this.toast(err.message || String(err), err.kind === "rate_limited" || err.kind === "out_of_trust" ? "warn" : "error");
    if (err.kind === "unauthorized" || err.kind === "expired") this.account.open(err.kind === "expired" ? "login" : null);
  }

  async pollStatus() {
    const el = $("#node-status");
    try {
      const s = await this.api.status();
      el.textContent = `${s.network} · ${s.peer_id.slice(0, 10)}… · ${s.roles.join(", ")}`;
      el.title = `Node ${s.peer_id}, version ${s.version}, at ${this.api.server}`;
      el.classList.remove("offline");
    } catch (err) {
      el.textContent = "node unreachable";
      el.title = err.message;
      el.classList.add("offline");
    }
  }

  // -- tools -----------------------------------------------------------------------------------------

  buildToolbar() {
    const bar = $("#toolbar");
    for (const [name, title] of TOOL_ORDER) {
      const svg = `<svg viewBox="0 0 24 24" aria-hidden="true"><path d="${ICONS[name]}"/></svg>`;
      const button = h("button", { title, "aria-label": title, "aria-pressed": "false", dataset: { tool: name }, onclick: () => this.setTool(name) });
      button.innerHTML = svg;
      bar.append(button);
    }
  }

  setTool(name) {
    if (!this.tools[name]) return;
    if (this.toolName !== name) this.tool.cancel?.();
    this.commitText();
    this.toolName = name;
    this.tool.activate?.();
    for (const b of $$("#toolbar button")) b.setAttribute("aria-pressed", String(b.dataset.tool === name));
    if (name === "mask") this.showMask = true;
    this.renderOptions();
    this.canvasView.canvas.style.cursor = "";
    this.canvasView.requestRender();
  }

  onToolState() {
    this.renderOptions();
  }

  renderOptions() {
    const bar = $("#options");
    const name = this.toolName;
    const title = TOOL_ORDER.find(([n]) => n === name)[1].replace(/ \(.*\)$/, "");
    const parts = [h("span", { class: "tool-name" }, title)];
    const slider = (label, obj, key, min, max, unit = "") => {
      const out = h("output", {}, `${obj[key]}${unit}`);
      const input = h("input", { type: "range", min, max, value: obj[key], "aria-label": label, dataset: { setting: `${name}.${key}` } });
      input.addEventListener("input", () => {
        obj[key] = Number(input.value);
        out.textContent = `${input.value}${unit}`;
        this.canvasView.requestRender();
      });
      return h("label", {}, label, input, out);
    };
    const s = this.settings[name];
    if (name === "brush" || name === "eraser") {
      parts.push(slider("Size", s, "size", 1, 500, " px"), slider("Opacity", s, "opacity", 1, 100, "%"), slider("Hardness", s, "hardness", 0, 100, "%"));
      if (name === "brush") {
        const color = h("input", { type: "color", value: s.color, "aria-label": "Colour", dataset: { setting: "brush.color" } });
        color.addEventListener("input", () => (s.color = color.value));
        parts.push(h("label", {}, "Colour", color));
      } else {
        parts.push(h("span", { class: "muted small" }, "Erases to transparency"));
      }
    } else if (name === "mask") {
      parts.push(slider("Size", s, "size", 1, 500, " px"), slider("Hardness", s, "hardness", 0, 100, "%"));
      const erase = h("input", { type: "checkbox", checked: s.erase, onchange: (e) => (s.erase = e.target.checked) });
      const show = h("input", { type: "checkbox", checked: this.showMask, dataset: { showMask: "" }, onchange: (e) => this.setShowMask(e.target.checked) });
      parts.push(h("label", {}, erase, "Erase (or hold Alt)"), h("button", { onclick: () => this.doc.invertMask() }, "Invert"), h("button", { onclick: () => this.doc.clearMask() }, "Clear"), h("label", {}, show, "Show mask"));
    } else if (name === "text") {
      const t = this.settings.text;
      const restyle = () => this.restyleActiveText();
      const font = h("select", { "aria-label": "Font" }, FONTS.map((f) => h("option", { value: f }, f)));
      font.value = t.font;
      font.onchange = () => ((t.font = font.value), restyle());
      const size = h("input", { type: "number", min: 4, max: 2000, value: t.size, "aria-label": "Font size" });
      size.onchange = () => ((t.size = Math.max(4, Number(size.value) || t.size)), restyle());
      const color = h("input", { type: "color", value: t.color, "aria-label": "Text colour" });
      color.onchange = () => ((t.color = color.value), restyle());
      const toggle = (key, label, text) => h("button", { "aria-pressed": String(t[key]), title: label, onclick: (e) => { t[key] = !t[key]; e.currentTarget.setAttribute("aria-pressed", String(t[key])); restyle(); } }, text);
      const align = h("select", { "aria-label": "Alignment" }, ["left", "center", "right"].map((a) => h("option", { value: a }, a)));
      align.value = t.align;
      align.onchange = () => ((t.align = align.value), restyle());
      parts.push(h("label", {}, "Font", font), h("label", {}, "Size", size), h("label", {}, "Colour", color), toggle("bold", "Bold", "B"), toggle("italic", "Italic", "I"), h("label", {}, "Align", align), h("span", { class: "muted small" }, "Click to write; click a text layer to edit it; Ctrl+Enter to finish"));
    } else if (name === "select") {
      parts.push(
        h("button", { onclick: () => this.run("select:all") }, "Select all"),
        h("button", { onclick: () => this.run("select:none") }, "Deselect"),
        h("button", { onclick: () => this.run("delete") }, "Clear pixels"),
        h("button", { onclick: () => this.generate.boxFromSelection() }, "Box from selection"),
        h("span", { class: "muted small" }, this.doc.selection ? `${this.doc.selection.w} × ${this.doc.selection.h} at ${this.doc.selection.x}, ${this.doc.selection.y}` : "Drag to select; brush and effects stay inside"),
      );
    } else if (name === "crop") {
      const rect = this.tools.crop.rect;
      parts.push(
        h("button", { class: "primary", disabled: !rect, onclick: () => this.tools.crop.commit() }, "Apply crop (Enter)"),
        h("button", { disabled: !rect, onclick: () => this.tools.crop.cancel() }, "Cancel (Esc)"),
        h("span", { class: "muted small" }, rect ? `${Math.round(rect.w)} × ${Math.round(rect.h)}` : "Drag the new frame over the picture"),
      );
    } else if (name === "box") {
      parts.push(h("span", { class: "muted small" }, "Drag inside to move, the handles to resize, outside to draw a new box. Sizes snap to the task's multiples."), h("button", { onclick: () => this.generate.boxFromPicture() }, "Fit picture"));
    } else if (name === "move") {
      parts.push(h("span", { class: "muted small" }, "Drag to move · corners scale (Shift: free) · round handle rotates (Shift: 15°) · arrows nudge"));
    } else {
      parts.push(h("span", { class: "muted small" }, "Drag to pan · wheel zooms"));
    }
    bar.replaceChildren(...parts);
  }

  // -- text -------------------------------------------------------------------------------------------

  /** Open the text box over the canvas: for `layer` (editing) or at picture point `at`. */
  editText(layer, at = null) {
    this.commitText();
    const t = layer?.text ?? { ...this.settings.text };
    if (layer?.text) Object.assign(this.settings.text, layer.text);
    // A new text starts with its first line centred on the click.
    this.textEdit = { layer, at: layer ? { x: layer.x, y: layer.y } : { x: at.x - t.size * 0.15, y: at.y - t.size * 0.78 }, spec: { ...t } };
    const area = $("#text-editor");
    area.value = layer?.text?.content ?? "";
    area.hidden = false;
    this.placeTextEditor();
    if (layer) layer.visible = false;
    this.canvasView.requestRender();
    area.oninput = () => this.placeTextEditor();
    area.onkeydown = (e) => {
      e.stopPropagation();
      if (e.key === "Escape") this.commitText(false);
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) this.commitText(true);
    };
    area.onblur = () => setTimeout(() => this.commitText(true), 0);
    this.renderOptions();
    area.focus();
  }

  placeTextEditor() {
    const edit = this.textEdit;
    if (!edit) return;
    const area = $("#text-editor");
    const spec = { ...this.settings.text };
    const zoom = this.canvasView.view.zoom;
    const size = spec.size * zoom;
    const p = toScreen(this.canvasView.view, edit.at.x, edit.at.y);
    const lines = area.value.split("\n");
    const probe = (this.textProbe ||= document.createElement("canvas").getContext("2d"));
    probe.font = fontOf({ ...spec, size });
    const width = Math.max(size, ...lines.map((l) => probe.measureText(l).width));
    const pad = Math.ceil(spec.size * 0.15) * zoom;
    Object.assign(area.style, {
      left: `${p.x}px`, top: `${p.y}px`, font: fontOf({ ...spec, size }), color: spec.color, textAlign: spec.align,
      padding: `${pad}px`, lineHeight: `${Math.ceil(spec.size * 1.25) * zoom}px`,
      width: `${width + pad * 2 + size}px`, height: `${lines.length * Math.ceil(spec.size * 1.25) * zoom + pad * 2}px`,
    });
  }

  commitText(save = true) {
    const edit = this.textEdit;
    if (!edit) return;
    this.textEdit = null;
    const area = $("#text-editor");
    area.hidden = true;
    area.onblur = null;
    const content = area.value.replace(/\s+$/, "");
    const spec = { ...this.settings.text, content };
    if (edit.layer) edit.layer.visible = true;
    if (save && content) {
      const canvas = renderText(spec);
      if (edit.layer) this.doc.replaceLayerCanvas(edit.layer, canvas, "Edit text", { text: spec });
      else this.doc.addLayer(new Layer({ name: content.split("\n")[0].slice(0, 24), canvas, x: Math.round(edit.at.x), y: Math.round(edit.at.y), text: spec }), { label: "Add text" });
    }
    this.doc.changed("layers");
  }

  restyleActiveText() {
    if (this.textEdit) return this.placeTextEditor();
    const layer = this.doc.active;
    if (!layer?.text) return;
    const spec = { ...this.settings.text, content: layer.text.content };
    this.doc.replaceLayerCanvas(layer, renderText(spec), "Restyle text", { text: spec });
  }

  // -- commands and keys -------------------------------------------------------------------------------

  /** Run an editor command by name (buttons and shortcuts share these). Returns true if done. */
  run(command, event = null) {
    const doc = this.doc;
    if (command.startsWith("tool:")) return this.setTool(command.slice(5)), true;
    switch (command) {
      case "undo":
        this.commitText();
        return Boolean(doc.history.undo());
      case "redo":
        return Boolean(doc.history.redo());
      case "open":
        return $("#open-file").click(), true;
      case "export":
        return this.exportPng(), true;
      case "new":
        return this.askNew(), true;
      case "layer:add":
        return doc.addEmptyLayer(), true;
      case "layer:duplicate":
        return doc.duplicateLayer(), true;
      case "layer:merge":
        return doc.mergeDown(), true;
      case "layer:up":
        return doc.moveLayer(doc.activeId, doc.indexOf(doc.activeId) + 1), true;
      case "layer:down":
        return doc.moveLayer(doc.activeId, doc.indexOf(doc.activeId) - 1), true;
      case "select:all":
        doc.setSelection({ x: 0, y: 0, w: doc.width, h: doc.height });
        return this.renderOptions(), true;
      case "select:none":
        doc.setSelection(null);
        return this.renderOptions(), true;
      case "delete":
        if (this.jobs.visible && this.jobs.current && !doc.selection) return this.jobs.discard();
        return this.clearSelectionPixels();
      case "commit":
        if (this.toolName === "crop" && this.tools.crop.commit()) return true;
        if (this.jobs.visible && this.jobs.current) return this.jobs.accept();
        return false;
      case "cancel":
        this.tool.cancel?.();
        if (this.previews.size) {
          this.effects.choose(this.effects.name, false);
          this.effects.clear();
        }
        return true;
      case "zoom:fit":
        return this.canvasView.fit(), true;
      case "zoom:100":
        return this.canvasView.zoomTo(1), true;
      case "zoom:in":
        return this.canvasView.zoomBy(1.25), true;
      case "zoom:out":
        return this.canvasView.zoomBy(0.8), true;
      case "brush:smaller":
      case "brush:larger": {
        const s = this.settings[this.toolName];
        if (!s?.size) return false;
        s.size = Math.max(1, Math.min(500, Math.round(s.size * (command === "brush:larger" ? 1.25 : 0.8))));
        this.renderOptions();
        return this.canvasView.requestRender(), true;
      }
      case "nudge": {
        const layer = doc.active;
        if (!layer || !event) return false;
        const step = event.shiftKey ? 10 : 1;
        const d = { arrowleft: [-step, 0], arrowright: [step, 0], arrowup: [0, -step], arrowdown: [0, step] }[event.key.toLowerCase()];
        doc.setLayerProps(layer, { x: layer.x + d[0], y: layer.y + d[1] }, "Nudge layer");
        return true;
      }
      case "staging:prev":
        return this.jobs.step(-1), true;
      case "staging:next":
        return this.jobs.step(1), true;
      case "generate":
        this.selectTab("generate");
        return this.generate.submit(), true;
      case "help":
        return this.showHelp(), true;
    }
    return false;
  }

  clearSelectionPixels() {
    const doc = this.doc, layer = doc.active, sel = doc.selection;
    if (!layer || !sel) return false;
    const before = makeCanvas(layer.width, layer.height);
    context(before).drawImage(layer.canvas, 0, 0);
    const ctx = context(layer.canvas);
    ctx.save();
    ctx.setTransform(...invert(layer.matrix));
    ctx.clearRect(sel.x, sel.y, sel.w, sel.h);
    ctx.restore();
    doc.recordPatch(layer.canvas, { x: 0, y: 0, w: layer.width, h: layer.height }, before, "Clear selection");
    return true;
  }

  bindKeys() {
    window.addEventListener("keydown", (e) => {
      const typing = e.target.closest?.("input, textarea, select, [contenteditable]") && e.target.type !== "range" && e.target.type !== "checkbox";
      if (e.key === " " && !typing) {
        this.canvasView.spaceDown = true;
        if (e.target === document.body || e.target === this.canvasView.canvas) e.preventDefault();
        return;
      }
      if ($("dialog[open]")) return;
      const command = commandFor(e);
      if (!command) return;
      if (typing && !WHILE_TYPING.has(command)) return;
      if (this.run(command, e) !== false) e.preventDefault();
    });
    window.addEventListener("keyup", (e) => {
      if (e.key === " ") this.canvasView.spaceDown = false;
    });
  }

  showHelp() {
    const list = $("#help-list");
    const keys = (s) => (s.command === "nudge" ? ["arrowleft", "arrowright", "arrowup", "arrowdown"] : s.keys.slice(0, 2));
    list.replaceChildren(...SHORTCUTS.flatMap((s) => [h("span", {}, ...keys(s).flatMap((k, i) => [i ? (s.command === "nudge" ? " " : " / ") : "", h("kbd", {}, displayChord(k))])), h("span", {}, s.label)]));
    $("#help-dialog").showModal();
  }

  askNew() {
    const dialog = $("#new-dialog");
    $("#new-width").value = this.doc.width;
    $("#new-height").value = this.doc.height;
    dialog.returnValue = "";
    dialog.showModal();
    dialog.onclose = () => {
      if (dialog.returnValue !== "ok") return;
      const w = Math.max(1, Math.min(16384, Number($("#new-width").value) || 1024));
      const hh = Math.max(1, Math.min(16384, Number($("#new-height").value) || 1024));
      this.newPicture(w, hh, $("#new-background").value);
    };
  }

  bindMenu() {
    $("#new-doc").onclick = () => this.askNew();
    $("#open-button").onclick = () => $("#open-file").click();
    $("#open-file").addEventListener("change", async (e) => {
      await this.openFiles(e.target.files);
      e.target.value = "";
    });
    $("#export-png").onclick = () => this.exportPng();
    $("#undo").onclick = () => this.run("undo");
    $("#redo").onclick = () => this.run("redo");
    $("#zoom-in").onclick = () => this.run("zoom:in");
    $("#zoom-out").onclick = () => this.run("zoom:out");
    // The zoom label toggles between fitting the window and actual pixels.
    $("#zoom-label").onclick = () => {
      this.run(this.lastFit ? "zoom:100" : "zoom:fit");
      this.lastFit = !this.lastFit;
    };
    $("#help-button").onclick = () => this.showHelp();
    $("#crop-selection").onclick = () => {
      if (!this.doc.selection) return this.toast("Select an area first (M).", "warn");
      this.doc.setFrame(this.doc.selection, "Crop to selection");
      this.canvasView.fit();
    };
    $("#crop-tool").onclick = () => this.setTool("crop");
  }

  bindTabs() {
    for (const tab of $$("#sidebar [role=tab]")) tab.onclick = () => this.selectTab(tab.dataset.tab);
  }

  selectTab(name) {
    this.activeTab = name;
    for (const tab of $$("#sidebar [role=tab]")) tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
    for (const panel of $$("#sidebar .tab")) panel.hidden = panel.id !== `tab-${name}`;
    if (name !== "adjust") this.effects.clear();
    else this.effects.preview();
    this.setShowBox();
    if (name === "generate") this.generate.loadTasks();
  }

  bindDrop() {
    const stage = $("#stage"), hint = $("#drop-hint");
    let depth = 0;
    const hasFiles = (e) => [...(e.dataTransfer?.types || [])].includes("Files");
    stage.addEventListener("dragenter", (e) => {
      if (!hasFiles(e)) return;
      depth++;
      hint.hidden = false;
    });
    stage.addEventListener("dragleave", () => {
      if (--depth <= 0) hint.hidden = true;
    });
    stage.addEventListener("dragover", (e) => hasFiles(e) && e.preventDefault());
    stage.addEventListener("drop", (e) => {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      hint.hidden = true;
      this.openFiles(e.dataTransfer.files);
    });
    window.addEventListener("paste", (e) => {
      const files = [...(e.clipboardData?.files || [])];
      if (files.length && !e.target.closest?.("input, textarea")) this.openFiles(files);
    });
  }
}

window.lightbox = new Editor();
