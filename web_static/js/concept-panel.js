// Concepts in the editor: the registry's concept list (fetched when a form needs it), the
// picker a concept input is shown with, and the history panel of the chosen concept.

import { h } from "./dom.js";
import { conceptChoices, describeModel, historyRows, isConceptName, lastPageAfter, HISTORY_PAGE } from "./concepts.js";
import { TEXT_FORMATS } from "./schema-form.js";

const FRESH_MS = 3000;

/** The registry's concepts as last read, shared by every picker; "change" when they differ. */
export class ConceptRegistry extends EventTarget {
  constructor(api) {
    super();
    this.api = api;
    this.choices = [];
    this.error = null;
    this.loadedAt = 0;
    this.pending = null;
    this.signature = "";
  }

  get loaded() {
    return this.loadedAt > 0;
  }

  find(name) {
    return this.choices.find((c) => c.name === name) ?? null;
  }

  /** Read the overview again (at most every few seconds unless `force`). */
  load({ force = false } = {}) {
    if (this.pending) return this.pending;
    if (!force && this.loadedAt && Date.now() - this.loadedAt < FRESH_MS) return Promise.resolve(this.choices);
    this.pending = this.api
      .registry()
      .then((overview) => {
        this.error = null;
        this.choices = conceptChoices(overview);
      })
      .catch((err) => {
        // A node without the registry (or a passing failure): pickers take free text.
        this.error = err;
      })
      .finally(() => {
        this.loadedAt = Date.now();
        this.pending = null;
        const signature = JSON.stringify([this.choices, this.error?.message ?? ""]);
        if (signature !== this.signature) {
          this.signature = signature;
          this.dispatchEvent(new Event("change"));
        }
      });
    return this.pending.then(() => this.choices);
  }

  /**
   * Wait until `name` has a model past `version` (the registry merges a submitted adapter a
   * few seconds after the job); resolves with its entry, or null after `timeoutMs`. Asks
   * for the one concept once the overview lists it (the overview reads every concept).
   */
  async awaitMerge(name, version, { timeoutMs = 180_000, firstMs = 2000, capMs = 10_000 } = {}) {
    const until = Date.now() + timeoutMs;
    for (let wait = firstMs; Date.now() < until; wait = Math.min(capMs, wait * 1.5)) {
      if (this.pending) await this.pending; // it may have been asked before the job was done
      if (!this.find(name)) await this.load({ force: true });
      else {
        try {
          const detail = await this.api.concept(name);
          if (detail.model && detail.version > version) await this.load({ force: true });
        } catch {
          // asked again next round
        }
      }
      const entry = this.find(name);
      if (entry?.model && entry.version > version) return entry;
      await new Promise((r) => setTimeout(r, wait));
    }
    return null;
  }
}

/**
 * The widget of a concept input: a list of the registry's concepts to pick from, or, where
 * the task creates a concept (or the registry cannot be read), free text with the concepts
 * offered as suggestions. Returns {el, read, write, input}; `onPick(name)` on each change.
 */
export function conceptPicker(registry, f, { id, creates, described, onPick }) {
  const status = h("div", { class: "hint concept-status" });
  const listId = `${id}-concepts`;
  const list = h("datalist", { id: listId });
  const choose = creates || registry.error ? null : h("select", { id, name: f.name, "aria-describedby": described, dataset: { concept: "" } });
  const text = choose ? null : h("input", { id, type: "text", name: f.name, value: f.initial ?? "", placeholder: f.placeholder || "", maxLength: f.max_length ?? undefined, required: f.required, autocomplete: "off", spellcheck: false, "aria-describedby": described, dataset: { concept: "" } });
  if (text) text.setAttribute("list", listId);
  let value = f.initial ?? "";
  const read = () => (choose ? choose.value : text.value.trim());

  const say = () => {
    const name = read();
    const entry = registry.find(name);
    status.classList.remove("bad");
    if (!name) status.textContent = creates ? "Name a new concept, or pick one to add to." : "No concept: the base model paints.";
    else if (!isConceptName(name)) {
      status.textContent = `Must be ${TEXT_FORMATS.concept.described}.`;
      status.classList.add("bad");
    } else if (entry) status.textContent = `${creates ? "Adds to" : "Paints with"} ${name}: ${describeModel(entry)}`;
    else if (creates) status.textContent = `A new concept: ${name} is made when the fine-tune is done.`;
    else status.textContent = registry.loaded && !registry.error ? `The registry has no concept ${name} yet.` : "";
  };

  const fill = () => {
    const choices = registry.choices;
    list.replaceChildren(...choices.map((c) => h("option", { value: c.name, label: describeModel(c) })));
    if (choose) {
      const keep = read() || value;
      const options = [h("option", { value: "" }, "— no concept —"), ...choices.map((c) => h("option", { value: c.name, disabled: !c.model && c.name !== keep, title: describeModel(c) }, c.label))];
      if (keep && !registry.find(keep)) options.push(h("option", { value: keep }, `${keep} — not in the registry`));
      choose.replaceChildren(...options);
      choose.value = keep;
    }
    say();
  };

  const changed = () => {
    value = read();
    say();
    onPick?.(value);
  };
  (choose ?? text).addEventListener("change", changed);
  text?.addEventListener("input", () => {
    say();
    // Typing a known name shows its history at once; anything else waits for the change.
    if (registry.find(read())) changed();
  });
  const onRegistry = () => (list.isConnected || status.isConnected ? fill() : registry.removeEventListener("change", onRegistry));
  registry.addEventListener("change", onRegistry);
  fill();
  registry.load();
  const el = h("div", { class: "concept-picker" }, choose ?? text, list, status);
  return {
    el,
    input: choose ?? text,
    read,
    write: (v) => {
      value = String(v ?? "");
      if (choose) fill();
      else text.value = value;
      changed();
    },
  };
}

/** The history of one concept, newest first, under the form that names it. */
export class ConceptHistory {
  constructor(api, registry, el) {
    this.api = api;
    this.registry = registry;
    this.el = el;
    this.name = "";
    this.request = 0;
    registry.addEventListener("change", () => this.name && this.refresh());
  }

  /** Show `name` (nothing for an empty name or none at all). */
  show(name) {
    const clean = String(name || "").trim();
    if (clean === this.name && !this.el.hidden) return;
    this.name = clean;
    this.refresh();
  }

  hide() {
    this.name = "";
    this.el.hidden = true;
    this.el.replaceChildren();
  }

  async refresh() {
    const name = this.name;
    const ticket = ++this.request;
    if (!name || !isConceptName(name)) return this.hide();
    this.el.hidden = false;
    this.el.dataset.concept = name;
    const head = h("div", { class: "row" }, h("strong", {}, `History of ${name}`), h("span", { class: "grow" }), h("button", { type: "button", class: "small", title: "Read the history again", onclick: () => this.registry.load({ force: true }).then(() => this.refresh()) }, "Refresh"));
    if (!this.registry.find(name)) {
      // Only concepts the registry listed are asked for, so a new name costs no failed request.
      const why = this.registry.error ? `The registry cannot be read: ${this.registry.error.message}` : this.registry.loaded ? "Not in the registry yet: it appears when its first adapter is submitted." : "Reading the registry…";
      return this.el.replaceChildren(head, h("p", { class: "muted small" }, why));
    }
    let detail, page;
    try {
      detail = await this.api.concept(name);
      page = await this.api.conceptHistory(name, { after: lastPageAfter(detail.history_length), limit: HISTORY_PAGE });
    } catch (err) {
      if (ticket === this.request) this.el.replaceChildren(head, h("p", { class: "muted small" }, err.message));
      return;
    }
    if (ticket !== this.request) return; // another concept was chosen meanwhile
    const rows = historyRows(page.events);
    const summary = describeModel({ model: detail.model, version: detail.version, pending: detail.pending_count });
    const table = h("table", { class: "concept-events" },
      h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Event"))),
      h("tbody", {}, rows.map((r) => h("tr", { dataset: { kind: r.kind, seq: r.seq } },
        h("td", {}, r.seq),
        h("td", {}, h("div", { class: "what" }, r.text), h("div", { class: "muted" }, `by `, h("span", { class: "mono" }, r.by), r.at ? ` · ${r.at}` : "")),
      ))),
    );
    const count = detail.history_length ?? rows.length;
    this.el.replaceChildren(
      head,
      h("p", { class: "muted small concept-summary" }, `${summary}; ${count} event${count === 1 ? "" : "s"}${count > rows.length ? `, the last ${rows.length} shown` : ""}.`),
      rows.length ? table : h("p", { class: "muted small" }, "No events yet."),
    );
  }
}
