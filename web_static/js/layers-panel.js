// The Layers tab: the stack top first, with visibility, renaming, drag to reorder, opacity,
// and the buttons that add, duplicate, merge, raise, lower and delete layers.

import { $, $$, h, icon } from "./dom.js";

export class LayersPanel {
  constructor(app) {
    this.app = app;
    this.list = $("#layer-list");
    this.opacity = $("#layer-opacity");
    this.opacityOut = $("#layer-opacity-out");
    this.thumbs = new Map();
    for (const button of $$("#tab-layers [data-icon]")) button.append(icon(button.dataset.icon));
    const doc = () => app.doc;
    $("#layer-add").onclick = () => doc().addEmptyLayer();
    $("#layer-duplicate").onclick = () => doc().duplicateLayer();
    $("#layer-merge").onclick = () => doc().mergeDown();
    $("#layer-delete").onclick = () => doc().deleteLayer();
    $("#layer-up").onclick = () => app.run("layer:up");
    $("#layer-down").onclick = () => app.run("layer:down");
    $("#layer-reset").onclick = () => {
      const layer = doc().active;
      if (layer) doc().setLayerProps(layer, { scaleX: 1, scaleY: 1, rotation: 0 }, "Reset transform");
    };
    $("#layer-fit").onclick = () => {
      const layer = doc().active, d = doc();
      if (!layer) return;
      const s = Math.min(d.width / layer.width, d.height / layer.height);
      d.setLayerProps(layer, { scaleX: s, scaleY: s, rotation: 0, x: (d.width - layer.width * s) / 2, y: (d.height - layer.height * s) / 2 }, "Fit layer");
    };
    this.opacity.addEventListener("input", () => {
      const layer = doc().active;
      if (!layer) return;
      this.opacityBefore ??= { opacity: layer.opacity };
      layer.opacity = this.opacity.value / 100;
      this.opacityOut.textContent = `${this.opacity.value}%`;
      doc().changed("opacity-live");
    });
    this.opacity.addEventListener("change", () => {
      const layer = doc().active;
      if (layer && this.opacityBefore) doc().commitLayerProps(layer, this.opacityBefore, "Layer opacity");
      this.opacityBefore = null;
    });
  }

  /** Rebuild the list (cheap: a handful of rows) and refresh thumbnails of changed layers. */
  refresh() {
    const doc = this.app.doc;
    const rows = [...doc.layers].reverse().map((layer) => this.row(layer));
    this.list.replaceChildren(...rows);
    const active = doc.active;
    this.opacity.disabled = !active;
    if (active && !this.opacityBefore) {
      this.opacity.value = Math.round(active.opacity * 100);
      this.opacityOut.textContent = `${this.opacity.value}%`;
    }
    const at = doc.indexOf(doc.activeId);
    $("#layer-up").disabled = !active || at === doc.layers.length - 1;
    $("#layer-down").disabled = !active || at <= 0;
    $("#layer-merge").disabled = !active || at <= 0;
    $("#layer-delete").disabled = !active;
    $("#layer-duplicate").disabled = !active;
    $("#layer-transform").textContent = active
      ? `${active.width}×${active.height} px at ${Math.round(active.x)}, ${Math.round(active.y)} · ${Math.round(active.scaleX * 100)}%×${Math.round(active.scaleY * 100)}% · ${Math.round((active.rotation * 180) / Math.PI)}°`
      : "No layer selected";
    $("#doc-size").textContent = `Picture: ${doc.width} × ${doc.height} px`;
  }

  thumbnail(layer) {
    let entry = this.thumbs.get(layer.id);
    if (!entry) {
      entry = { canvas: h("canvas", { class: "thumb", width: 40, height: 30 }), stale: true };
      this.thumbs.set(layer.id, entry);
    }
    if (entry.stale) {
      const ctx = entry.canvas.getContext("2d");
      ctx.clearRect(0, 0, 40, 30);
      const s = Math.min(40 / layer.width, 30 / layer.height);
      ctx.drawImage(layer.canvas, (40 - layer.width * s) / 2, (30 - layer.height * s) / 2, layer.width * s, layer.height * s);
      entry.stale = false;
    }
    return entry.canvas;
  }

  /** Mark thumbnails for redrawing (all, or one layer's). */
  invalidate(id = null) {
    for (const [key, entry] of this.thumbs) if (id === null || key === id) entry.stale = true;
  }

  row(layer) {
    const doc = this.app.doc;
    const selected = layer.id === doc.activeId;
    const eye = h("button", {
      class: "visibility",
      title: layer.visible ? "Hide layer" : "Show layer",
      "aria-label": `${layer.visible ? "Hide" : "Show"} ${layer.name}`,
      "aria-pressed": String(!layer.visible),
      onclick: (e) => {
        e.stopPropagation();
        doc.setLayerProps(layer, { visible: !layer.visible }, layer.visible ? "Hide layer" : "Show layer");
      },
    }, icon(layer.visible ? "eye" : "hidden"));
    const name = h("span", { class: "name", title: "Double-click to rename" }, layer.text ? h("span", { class: "badge", title: "Text layer" }, "T") : null, layer.name);
    name.addEventListener("dblclick", () => this.rename(layer, name));
    const li = h("li", {
      dataset: { layerId: layer.id },
      class: layer.visible ? "" : "hidden-layer",
      "aria-selected": String(selected),
      draggable: true,
      onclick: () => doc.setActive(layer.id),
    }, eye, this.thumbnail(layer), name, h("span", { class: "opacity" }, layer.opacity < 1 ? `${Math.round(layer.opacity * 100)}%` : ""));
    li.addEventListener("dragstart", (e) => {
      e.dataTransfer.setData("application/x-lightbox-layer", String(layer.id));
      e.dataTransfer.effectAllowed = "move";
      li.classList.add("dragging");
    });
    li.addEventListener("dragend", () => li.classList.remove("dragging"));
    li.addEventListener("dragover", (e) => {
      if (!e.dataTransfer.types.includes("application/x-lightbox-layer")) return;
      e.preventDefault();
      const above = e.offsetY < li.clientHeight / 2;
      li.classList.toggle("drop-above", above);
      li.classList.toggle("drop-below", !above);
    });
    li.addEventListener("dragleave", () => li.classList.remove("drop-above", "drop-below"));
    li.addEventListener("drop", (e) => {
      e.preventDefault();
      li.classList.remove("drop-above", "drop-below");
      const id = Number(e.dataTransfer.getData("application/x-lightbox-layer"));
      const from = doc.indexOf(id);
      let to = doc.indexOf(layer.id) + (e.offsetY < li.clientHeight / 2 ? 1 : 0);
      if (from < to) to -= 1;
      doc.moveLayer(id, to);
    });
    return li;
  }

  rename(layer, span) {
    const input = h("input", { value: layer.name, "aria-label": "Layer name" });
    span.replaceChildren(input);
    input.focus();
    input.select();
    const done = (save) => {
      const value = input.value.trim();
      if (save && value && value !== layer.name) this.app.doc.setLayerProps(layer, { name: value }, "Rename layer");
      else this.refresh();
    };
    input.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if (e.key === "Enter") done(true);
      if (e.key === "Escape") done(false);
    });
    input.addEventListener("blur", () => done(true), { once: true });
  }
}
