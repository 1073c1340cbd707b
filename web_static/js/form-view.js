// Shows a task's form (built by schema-form.js) as HTML fields, reads their raw values back,
// and puts problems next to the fields they concern.

import { h } from "./dom.js";
import { RANDOM_SEED, SEED_MAX } from "./schema-form.js";

let uid = 0;

/**
 * The form's fields in `container`; `hooks.imageField(field)` renders image-like inputs and
 * `hooks.conceptField(field, {id, described})` concept inputs ({el, input, read, write}).
 */
export function renderForm(container, form, hooks = {}) {
  container.replaceChildren();
  const controls = new Map();
  if (form.description) container.append(h("p", { class: "task-desc muted small" }, form.description));
  container.append(h("div", { class: "form-error", role: "alert", hidden: true, dataset: { errorFor: "" } }));
  for (const group of form.groups) {
    const set = h("fieldset", { dataset: { group: group.name } }, h("legend", {}, group.label));
    for (const f of group.fields) set.append(fieldElement(f, controls, hooks));
    if (group.advanced.length) {
      const details = h("details", { dataset: { advanced: group.name } }, h("summary", {}, `More ${group.label.toLowerCase()} settings`));
      for (const f of group.advanced) details.append(fieldElement(f, controls, hooks));
      set.append(details);
    }
    container.append(set);
  }
  if (!form.fields.length) container.append(h("p", { class: "muted small" }, "This task takes no settings."));
  return {
    controls,
    /** The widgets' raw values by input name. */
    values() {
      const out = {};
      for (const [name, c] of controls) if (c.read) out[name] = c.read();
      return out;
    },
    set(name, value) {
      controls.get(name)?.write?.(value);
    },
    showProblems(byInput) {
      for (const el of container.querySelectorAll("[data-error-for]")) {
        const messages = byInput[el.dataset.errorFor] || [];
        el.textContent = messages.join("; ");
        el.hidden = messages.length === 0;
        el.closest(".field")?.classList.toggle("invalid", messages.length > 0);
        if (messages.length) el.closest("details")?.setAttribute("open", "");
      }
    },
  };
}

function fieldElement(f, controls, hooks) {
  const id = `f-${f.name}-${++uid}`;
  const help = f.help ? h("div", { class: "help", id: `${id}-help` }, f.help) : null;
  const hint = f.hint ? h("div", { class: "hint" }, f.hint) : null;
  const error = h("div", { class: "error", role: "alert", hidden: true, dataset: { errorFor: f.name } });
  const label = h("label", { htmlFor: id }, f.label, f.required ? h("span", { class: "required", title: "required" }, "*") : null);
  const wrap = (...body) => h("div", { class: "field", dataset: { input: f.name, type: f.type, widget: f.widget } }, ...body, help, hint, error);
  const described = f.help ? `${id}-help` : undefined;
  switch (f.widget) {
    case "concept":
      if (hooks.conceptField) {
        const picker = hooks.conceptField(f, { id, described });
        controls.set(f.name, { el: picker.input, read: picker.read, write: picker.write });
        return wrap(label, picker.el);
      }
    // falls through: without a picker a concept is typed like any text
    case "text": {
      const input = h("input", { id, type: "text", name: f.name, value: f.initial, placeholder: f.placeholder || "", maxLength: f.max_length ?? undefined, required: f.required, "aria-describedby": described });
      controls.set(f.name, { el: input, read: () => input.value, write: (v) => (input.value = v) });
      return wrap(label, input);
    }
    case "textarea": {
      const input = h("textarea", { id, name: f.name, placeholder: f.placeholder || "", maxLength: f.max_length ?? undefined, required: f.required, rows: 3, "aria-describedby": described });
      input.value = f.initial;
      controls.set(f.name, { el: input, read: () => input.value, write: (v) => (input.value = v) });
      return wrap(label, input);
    }
    case "integer":
    case "number": {
      const step = f.step ?? (f.widget === "integer" ? 1 : "any");
      const input = h("input", { id, type: "number", name: f.name, value: f.initial, min: f.min ?? undefined, max: f.max ?? undefined, step, required: f.required, "aria-describedby": described });
      const row = h("div", { class: "numeric" }, input);
      if (f.min != null && f.max != null) {
        const range = h("input", { type: "range", min: f.min, max: f.max, step: f.step ?? (f.widget === "integer" ? 1 : (f.max - f.min) / 200), value: f.initial === "" ? f.min : f.initial, "aria-label": `${f.label} slider`, tabIndex: -1 });
        range.addEventListener("input", () => (input.value = range.value));
        input.addEventListener("input", () => input.value !== "" && (range.value = input.value));
        row.append(range);
      }
      if (f.unit) row.append(h("span", { class: "muted small" }, f.unit));
      controls.set(f.name, { el: input, read: () => input.value, write: (v) => { input.value = v; input.dispatchEvent(new Event("input")); } });
      return wrap(label, row);
    }
    case "checkbox": {
      const input = h("input", { id, type: "checkbox", name: f.name, checked: f.initial, "aria-describedby": described });
      controls.set(f.name, { el: input, read: () => input.checked, write: (v) => (input.checked = Boolean(v)) });
      return wrap(h("label", { class: "check", htmlFor: id }, input, f.label));
    }
    case "select": {
      const select = h("select", { id, name: f.name, required: f.required, "aria-describedby": described });
      if (f.initial === "") select.append(h("option", { value: "" }, "— choose —"));
      for (const o of f.options) select.append(h("option", { value: String(o.value), title: o.help || undefined }, o.label));
      select.value = f.initial;
      const optionHelp = h("div", { class: "hint" });
      const showHelp = () => (optionHelp.textContent = f.options.find((o) => String(o.value) === select.value)?.help || "");
      select.addEventListener("change", showHelp);
      showHelp();
      controls.set(f.name, { el: select, read: () => select.value, write: (v) => { select.value = String(v); showHelp(); } });
      return wrap(label, select, optionHelp);
    }
    case "seed": {
      const input = h("input", { id, type: "text", name: f.name, value: f.initial, inputMode: "numeric", placeholder: RANDOM_SEED, "aria-describedby": described, pattern: "random|[0-9]+" });
      const random = h("input", { type: "checkbox", checked: f.initial === RANDOM_SEED, "aria-label": "random seed" });
      const sync = () => {
        input.disabled = random.checked;
        if (random.checked) input.value = RANDOM_SEED;
        else if (input.value === RANDOM_SEED) input.value = String(Math.floor(Math.random() * SEED_MAX));
      };
      random.addEventListener("change", sync);
      sync();
      controls.set(f.name, { el: input, read: () => (random.checked ? RANDOM_SEED : input.value), write: (v) => { random.checked = v === RANDOM_SEED; input.value = String(v); sync(); } });
      return wrap(label, h("div", { class: "numeric" }, input, h("label", { class: "check small" }, random, "random")));
    }
    case "image":
    case "mask":
    case "image_list": {
      const body = hooks.imageField ? hooks.imageField(f) : h("div", { class: "muted small" }, "from the generation box");
      controls.set(f.name, { el: body });
      return wrap(h("div", { class: "label" }, f.label, f.required ? h("span", { class: "required" }, "*") : null), body);
    }
    default:
      return wrap(h("div", { class: "label" }, f.label), h("div", { class: "muted small" }, `This editor cannot show '${f.type}' inputs yet.`));
  }
}
