// An image-list input (a fine-tune's photos, say): pictures picked from the canvas's layers
// (each layer's own pixels at its own size) and added from files or the generation box,
// checked against the schema's count and sizes as they are chosen.

import { h } from "./dom.js";
import { imageListProblems } from "./schema-form.js";

const THUMB = 40;

export async function canvasToBlob(canvas) {
  if (canvas.convertToBlob) return canvas.convertToBlob({ type: "image/png" });
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

/**
 * The widget of one image-list input. `state` ({layers: Set of layer ids, extras: [{blob,
 * width, height, label}]}) outlives the widget, so a re-rendered form keeps the choice.
 */
export class ImageListField {
  constructor(app, f, state) {
    this.app = app;
    this.f = f;
    this.state = state;
    this.signature = "";
    this.layerList = h("ul", { class: "pick-list", dataset: { layers: "" }, "aria-label": "Layers to send" });
    this.extraList = h("ul", { class: "pick-list", dataset: { extras: "" }, "aria-label": "Added pictures" });
    this.status = h("div", { class: "list-status", role: "status" });
    const accept = (f.formats || ["png", "jpeg", "webp"]).map((x) => `image/${x}`).join(",");
    this.files = h("input", { type: "file", accept, multiple: true, hidden: true, dataset: { listFiles: f.name } });
    this.files.addEventListener("change", () => this.addFiles([...this.files.files]).finally(() => (this.files.value = "")));
    this.el = h("div", { class: "image-list", dataset: { list: f.name } },
      h("div", { class: "muted small" }, "Layers of the picture (each at its own size):"),
      this.layerList,
      h("div", { class: "row buttons" },
        h("button", { type: "button", onclick: () => this.files.click() }, "Add files…"),
        h("button", { type: "button", onclick: () => this.addBox() }, "Add box content"),
        h("button", { type: "button", onclick: () => this.clear() }, "Clear"),
      ),
      this.files,
      this.extraList,
      this.status,
    );
    this.layersChanged();
    this.renderExtras();
  }

  /** Follow the picture: layers added, removed, renamed or repainted. */
  layersChanged() {
    const layers = this.app.doc.layers;
    const ids = new Set(layers.map((l) => l.id));
    for (const id of this.state.layers) if (!ids.has(id)) this.state.layers.delete(id);
    const signature = JSON.stringify(layers.map((l) => [l.id, l.name, l.width, l.height]));
    if (signature !== this.signature) {
      this.signature = signature;
      this.layerList.replaceChildren(...[...layers].reverse().map((layer) => this.layerRow(layer)));
    } else {
      for (const row of this.layerList.children) this.drawThumb(row.querySelector("canvas"), layers.find((l) => l.id === Number(row.dataset.layerId)));
    }
    this.check();
  }

  layerRow(layer) {
    const box = h("input", { type: "checkbox", checked: this.state.layers.has(layer.id), dataset: { layerId: layer.id } });
    box.addEventListener("change", () => {
      if (box.checked) this.state.layers.add(layer.id);
      else this.state.layers.delete(layer.id);
      this.check();
    });
    const thumb = h("canvas", { width: THUMB, height: THUMB });
    this.drawThumb(thumb, layer);
    return h("li", { dataset: { layerId: layer.id } }, h("label", { class: "check" }, box, thumb, h("span", { class: "grow name" }, layer.name), h("span", { class: "muted small" }, `${layer.width}×${layer.height}`)));
  }

  drawThumb(canvas, layer) {
    if (!canvas || !layer) return;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, THUMB, THUMB);
    const s = Math.min(THUMB / layer.width, THUMB / layer.height);
    ctx.drawImage(layer.canvas, (THUMB - layer.width * s) / 2, (THUMB - layer.height * s) / 2, layer.width * s, layer.height * s);
  }

  renderExtras() {
    this.extraList.replaceChildren(
      ...this.state.extras.map((item, i) =>
        h("li", {},
          h("img", { src: (item.url ||= URL.createObjectURL(item.blob)), alt: "" }),
          h("span", { class: "grow name" }, item.label),
          h("span", { class: "muted small" }, `${item.width}×${item.height}`),
          h("button", { type: "button", class: "icon", title: "Remove", "aria-label": `Remove ${item.label}`, onclick: () => this.remove(i) }, "×"),
        ),
      ),
    );
    this.check();
  }

  async addFiles(files) {
    for (const file of files) {
      try {
        const bitmap = await createImageBitmap(file);
        this.state.extras.push({ blob: file, width: bitmap.width, height: bitmap.height, label: file.name });
        bitmap.close?.();
      } catch {
        this.app.toast(`${file.name} is not an image this browser can read.`, "error");
      }
    }
    this.renderExtras();
  }

  async addBox() {
    const box = this.app.doc.box;
    this.state.extras.push({ blob: await canvasToBlob(this.app.doc.flatten(box)), width: box.w, height: box.h, label: "generation box" });
    this.renderExtras();
  }

  remove(i) {
    const [item] = this.state.extras.splice(i, 1);
    if (item?.url) URL.revokeObjectURL(item.url);
    this.renderExtras();
  }

  clear() {
    this.state.layers.clear();
    for (const box of this.layerList.querySelectorAll("input[type=checkbox]")) box.checked = false;
    for (const item of this.state.extras) if (item.url) URL.revokeObjectURL(item.url);
    this.state.extras.length = 0;
    this.renderExtras();
  }

  /** What is chosen, as {width, height, label} (layers top first, then the added ones). */
  chosen() {
    const layers = [...this.app.doc.layers].reverse().filter((l) => this.state.layers.has(l.id));
    return [...layers.map((layer) => ({ layer, width: layer.width, height: layer.height, label: layer.name })), ...this.state.extras];
  }

  /** Count and sizes against the schema, said under the list as the choice changes. */
  check() {
    const items = this.chosen();
    const f = this.f;
    // Nothing chosen yet is not a mistake yet: the submit says so if it stays that way.
    const problems = items.length ? imageListProblems(f, items) : [];
    const range = f.max_count != null ? `${f.min_count ?? 1}–${f.max_count}` : `at least ${f.min_count ?? 1}`;
    this.status.replaceChildren(
      h("div", { class: "count" }, `${items.length} image${items.length === 1 ? "" : "s"} chosen (${range})`),
      ...problems.map((p) => h("div", { class: "bad" }, p)),
    );
    this.status.classList.toggle("invalid", problems.length > 0);
    return problems;
  }

  /** The chosen pictures as {blob, width, height, label}, layers turned into PNGs. */
  async values() {
    return Promise.all(this.chosen().map(async (item) => (item.layer ? { ...item, layer: undefined, blob: await canvasToBlob(item.layer.canvas) } : item)));
  }
}
