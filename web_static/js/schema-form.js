// Forms from task schemas: what widget each input gets, and reading typed values back.
// Pure: works on the `lightbox.task/1` schema maps that /api/v1/tasks returns, knows no task
// or model by name, and mirrors the node's own checks so most mistakes show before sending.

export const SEED_MAX = 2 ** 32 - 1;
export const RANDOM_SEED = "random";
const DEFAULT_GROUP = { name: "main", label: "Settings" };

/** The widget each input type is shown with. */
export const WIDGETS = Object.freeze({
  text: "text",
  integer: "integer",
  number: "number",
  boolean: "checkbox",
  choice: "select",
  seed: "seed",
  image: "image",
  mask: "mask",
  image_list: "image_list",
});

/**
 * The named forms a text input may require (its schema's `format`), as the node's
 * TEXT_FORMATS says them: named rather than sent as patterns, so a peer's schema never makes
 * anyone run its regular expression. A text input with a known format gets that widget.
 */
export const TEXT_FORMATS = Object.freeze({
  concept: {
    pattern: /^[a-z0-9][a-z0-9._-]{0,127}$/,
    described: "a concept name: 1 to 128 of a-z 0-9 . _ - starting with a letter or digit",
  },
});

const num = (v) => (Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(12))));

/** One input as a form field: the schema's facts plus the widget and the initial value. */
export function fieldOf(input, index = 0) {
  const formatted = input.type === "text" && input.format === "concept";
  const widget = formatted ? "concept" : input.type === "text" && input.multiline ? "textarea" : WIDGETS[input.type] ?? "unsupported";
  const field = {
    name: input.name,
    type: input.type,
    widget,
    label: input.label || input.name,
    help: input.help || "",
    required: Boolean(input.required),
    default: input.default ?? null,
    advanced: Boolean(input.advanced),
    group: input.group || DEFAULT_GROUP.name,
    order: Number.isFinite(input.order) ? input.order : 0,
    index,
  };
  for (const key of [
    "min", "max", "step", "unit", "min_length", "max_length", "multiline", "placeholder",
    "image", "formats", "min_width", "max_width", "min_height", "max_height", "multiple_of",
    "max_pixels", "min_count", "max_count", "format",
  ]) {
    if (input[key] !== undefined) field[key] = input[key];
  }
  if (input.type === "choice") {
    field.options = (input.options || []).map((o) => ({ value: o.value, label: o.label || String(o.value), help: o.help || "" }));
  }
  if (input.type === "boolean") field.default = Boolean(input.default);
  if (input.type === "seed" && field.default === null) field.default = RANDOM_SEED;
  field.initial = initialValue(field);
  field.hint = hintOf(field);
  return field;
}

/** What the widget shows first: the default, as the widget holds it. */
export function initialValue(field) {
  const value = field.default;
  switch (field.widget) {
    case "checkbox":
      return Boolean(value);
    case "integer":
    case "number":
      return value === null ? "" : num(value);
    case "seed":
      return value === null ? RANDOM_SEED : String(value);
    case "select":
      if (value !== null) return String(value);
      return field.required || !field.options?.length ? "" : String(field.options[0].value);
    case "text":
    case "textarea":
    case "concept":
      return value === null ? "" : String(value);
    default:
      return null;
  }
}

/** A short line under the field: bounds, step and unit, as a person reads them. */
export function hintOf(field) {
  const unit = field.unit ? ` ${field.unit}` : "";
  if (field.widget === "integer" || field.widget === "number") {
    const parts = [];
    if (field.min != null && field.max != null) parts.push(`${num(field.min)}–${num(field.max)}${unit}`);
    else if (field.min != null) parts.push(`at least ${num(field.min)}${unit}`);
    else if (field.max != null) parts.push(`at most ${num(field.max)}${unit}`);
    if (field.step != null && field.step !== 1) parts.push(`step ${num(field.step)}`);
    return parts.join(", ");
  }
  if (field.widget === "image" || field.widget === "image_list") {
    const parts = [];
    if (field.min_width || field.max_width) parts.push(`${field.min_width ?? 1}–${field.max_width ?? "∞"} px wide`);
    if (field.multiple_of > 1) parts.push(`multiples of ${field.multiple_of}`);
    if (field.widget === "image_list") parts.push(`${field.min_count ?? 1}–${field.max_count ?? 16} images`);
    return parts.join(", ");
  }
  if (field.widget === "seed") return `0–${SEED_MAX} or random`;
  return "";
}

/**
 * The form of a task: its groups in the schema's order, each with its fields sorted by
 * `order` (then schema order), plain fields first and advanced ones apart.
 */
export function buildForm(task) {
  if (!task || typeof task.name !== "string") throw new TypeError("a task schema needs a name");
  const fields = (task.inputs || []).map(fieldOf);
  const groupList = [...(task.groups?.length ? task.groups : [])];
  const known = new Set(groupList.map((g) => g.name));
  for (const f of fields) {
    if (!known.has(f.group)) {
      groupList.push(f.group === DEFAULT_GROUP.name ? DEFAULT_GROUP : { name: f.group, label: f.group });
      known.add(f.group);
    }
  }
  const sorted = [...fields].sort((a, b) => a.order - b.order || a.index - b.index);
  const groups = groupList
    .map((g) => ({
      name: g.name,
      label: g.label || g.name,
      fields: sorted.filter((f) => f.group === g.name && !f.advanced),
      advanced: sorted.filter((f) => f.group === g.name && f.advanced),
    }))
    .filter((g) => g.fields.length || g.advanced.length);
  return {
    task: task.name,
    title: task.title || task.name,
    description: task.description || "",
    outputs: task.outputs || [],
    groups,
    fields: sorted,
    bindings: boxBindings(sorted),
    box: boxLimits(sorted),
    unsupported: sorted.filter((f) => f.widget === "unsupported"),
  };
}

// -- the generation box ------------------------------------------------------------------------

const SIDE_NAMES = { width: "width", height: "height" };
const OVERHANG = ["left", "right", "top", "bottom"];

/**
 * Which inputs the generation box fills: every image input (the box's picture), every mask
 * (the painted mask inside the box), integer `width`/`height` (the box's size) and, when a
 * task has all four integer inputs `left`, `right`, `top`, `bottom`, how far the box reaches
 * past the document on each side (outpainting). These are the shared input names of the task
 * vocabulary, not of any model.
 */
export function boxBindings(fields) {
  const byName = new Map(fields.map((f) => [f.name, f]));
  const isInt = (name) => byName.get(name)?.type === "integer";
  const images = fields.filter((f) => f.type === "image").map((f) => f.name);
  return {
    images,
    masks: fields.filter((f) => f.type === "mask").map((f) => ({ name: f.name, image: f.image })),
    lists: fields.filter((f) => f.type === "image_list").map((f) => f.name),
    width: isInt(SIDE_NAMES.width) ? "width" : null,
    height: isInt(SIDE_NAMES.height) ? "height" : null,
    overhang: images.length && OVERHANG.every(isInt) ? Object.fromEntries(OVERHANG.map((n) => [n, n])) : null,
  };
}

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}
const lcm = (a, b) => (a * b) / gcd(a, b);

/**
 * The sizes the box may take for this task: sides a multiple of `multiple`, from min to max,
 * or null when the task takes nothing from the box.
 */
export function boxLimits(fields) {
  let multiple = 1, minW = 1, maxW = Infinity, minH = 1, maxH = Infinity, maxPixels = Infinity;
  let used = false;
  for (const f of fields) {
    if (f.type === "image") {
      used = true;
      multiple = lcm(multiple, f.multiple_of || 1);
      minW = Math.max(minW, f.min_width ?? 1);
      maxW = Math.min(maxW, f.max_width ?? Infinity);
      minH = Math.max(minH, f.min_height ?? 1);
      maxH = Math.min(maxH, f.max_height ?? Infinity);
      if (f.max_pixels) maxPixels = Math.min(maxPixels, f.max_pixels);
    } else if (f.type === "integer" && (f.name === "width" || f.name === "height")) {
      used = true;
      const step = f.step || 1;
      if ((f.min ?? 0) % step === 0) multiple = lcm(multiple, step);
      if (f.name === "width") {
        minW = Math.max(minW, f.min ?? 1);
        maxW = Math.min(maxW, f.max ?? Infinity);
      } else {
        minH = Math.max(minH, f.min ?? 1);
        maxH = Math.min(maxH, f.max ?? Infinity);
      }
    }
  }
  return used ? { multiple, minW, maxW, minH, maxH, maxPixels } : null;
}

// -- reading values ----------------------------------------------------------------------------

function onGrid(value, min, step) {
  const base = min ?? 0;
  const k = (value - base) / step;
  return Math.abs(k - Math.round(k)) <= 1e-9 * Math.max(1, Math.abs(k));
}

function boundsProblem(value, f) {
  const unit = f.unit ? ` ${f.unit}` : "";
  if (f.min != null && value < f.min) return `must be at least ${num(f.min)}${unit}, got ${num(value)}`;
  if (f.max != null && value > f.max) return `must be at most ${num(f.max)}${unit}, got ${num(value)}`;
  if (f.step != null && f.step > 0 && !onGrid(value, f.min, f.step)) {
    const base = f.min ?? 0;
    const below = base + Math.floor((value - base) / f.step) * f.step;
    const near = [below, below + f.step].filter((n) => (f.min == null || n >= f.min) && (f.max == null || n <= f.max));
    const grid = base % f.step === 0 ? `must be a multiple of ${num(f.step)}` : `must be ${num(base)} plus a multiple of ${num(f.step)}`;
    return near.length ? `${grid} (nearest: ${near.map(num).join(" or ")})` : grid;
  }
  return null;
}

/**
 * Typed inputs from the widgets' raw values (`raw[name]`: text for text-like widgets, a
 * boolean for checkboxes) and the box's images (`images[name]`). Empty optional fields are
 * left out so the node applies its default. Returns {inputs, problems: [{field, message}]}.
 */
export function readInputs(form, raw, images = {}) {
  const inputs = {};
  const problems = [];
  const problem = (field, message) => problems.push({ field, message });
  for (const f of form.fields) {
    const value = raw[f.name];
    const empty = value === undefined || value === null || (typeof value === "string" && value.trim() === "");
    switch (f.widget) {
      case "text":
      case "textarea":
      case "concept": {
        const text = value ?? "";
        const format = TEXT_FORMATS[f.format];
        if (!text) {
          // An optional input left empty is left out: the node applies its default.
          if (f.required) problem(f.name, "must not be empty");
          else if (f.default !== null && !((f.min_length ?? 0) > 0)) inputs[f.name] = "";
          break;
        }
        if (text.length < (f.min_length ?? 0)) problem(f.name, `must be at least ${f.min_length} characters, got ${text.length}`);
        else if (f.max_length != null && text.length > f.max_length) problem(f.name, `must be at most ${f.max_length} characters, got ${text.length}`);
        else if (f.widget !== "textarea" && /[\r\n]/.test(text)) problem(f.name, "must be a single line");
        else if (format && !format.pattern.test(text)) problem(f.name, `must be ${format.described}`);
        else inputs[f.name] = text;
        break;
      }
      case "integer":
      case "number": {
        if (empty) {
          if (f.required) problem(f.name, "is required");
          break;
        }
        const text = String(value).trim();
        const ok = f.widget === "integer" ? /^[+-]?\d+$/.test(text) : /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(text);
        const n = Number(text);
        if (!ok || !Number.isFinite(n)) {
          problem(f.name, f.widget === "integer" ? `must be a whole number, not ${JSON.stringify(text)}` : `must be a number, not ${JSON.stringify(text)}`);
          break;
        }
        const why = boundsProblem(n, f);
        if (why) problem(f.name, why);
        else inputs[f.name] = n;
        break;
      }
      case "checkbox":
        inputs[f.name] = Boolean(value);
        break;
      case "select": {
        if (empty) {
          if (f.required) problem(f.name, "choose one");
          break;
        }
        const option = f.options.find((o) => String(o.value) === String(value));
        if (option) inputs[f.name] = option.value;
        else problem(f.name, `must be one of ${f.options.map((o) => o.label).join(", ")}`);
        break;
      }
      case "seed": {
        const text = empty ? RANDOM_SEED : String(value).trim().toLowerCase();
        if (text === RANDOM_SEED) inputs[f.name] = RANDOM_SEED;
        else if (/^\d+$/.test(text) && Number(text) <= SEED_MAX) inputs[f.name] = Number(text);
        else problem(f.name, `must be a whole number from 0 to ${SEED_MAX} or 'random'`);
        break;
      }
      case "image":
      case "mask":
      case "image_list": {
        const given = images[f.name];
        const missing = given === undefined || given === null || (Array.isArray(given) && !given.length);
        if (missing) {
          if (f.required) problem(f.name, f.widget === "image_list" ? "add images" : "place the generation box over the picture");
          break;
        }
        if (f.widget === "image_list") {
          const wrong = imageListProblems(f, given);
          for (const message of wrong) problem(f.name, message);
          if (!wrong.length) inputs[f.name] = given.map((item) => item?.blob ?? item);
        } else {
          inputs[f.name] = given;
        }
        break;
      }
      default:
        if (f.required) problem(f.name, `this editor cannot fill a '${f.type}' input yet`);
    }
  }
  return { inputs, problems };
}

/** What is wrong with a picture of `width`×`height` for an image input, in the node's words. */
export function imageSizeProblem(f, width, height) {
  if (!Number.isFinite(width) || !Number.isFinite(height)) return null;
  for (const [side, value, low, high] of [["width", width, f.min_width, f.max_width], ["height", height, f.min_height, f.max_height]]) {
    if (low != null && value < low) return `${side} must be at least ${low} px, got ${value}`;
    if (high != null && value > high) return `${side} must be at most ${high} px, got ${value}`;
    if (f.multiple_of > 1 && value % f.multiple_of) return `${side} must be a multiple of ${f.multiple_of}, got ${value}`;
  }
  if (f.max_pixels && width * height > f.max_pixels) return `is ${width}×${height} = ${width * height} pixels, over the limit of ${f.max_pixels}`;
  return null;
}

/**
 * What is wrong with the pictures chosen for an image-list input: their number, then each
 * one's size. Items are Blobs or {blob, width, height, label}; sizes are checked when known.
 */
export function imageListProblems(f, items) {
  const out = [];
  const count = items.length;
  if (count < (f.min_count ?? 1)) out.push(`needs at least ${f.min_count ?? 1} images, got ${count}`);
  else if (count > (f.max_count ?? Infinity)) out.push(`takes at most ${f.max_count} images, got ${count}`);
  items.forEach((item, i) => {
    const why = imageSizeProblem(f, item?.width, item?.height);
    if (why) out.push(`${item.label || `image ${i + 1}`}: ${why}`);
  });
  return out;
}

/** The input a server problem belongs to ("image.width" → "image"), or null for the form. */
export function inputOfProblem(form, field) {
  if (typeof field !== "string" || !field) return null;
  const name = field.split(/[.[]/)[0];
  return form.fields.some((f) => f.name === name) ? name : null;
}

/** Problems grouped by input name; those for no input under "" (shown above the form). */
export function problemsByInput(form, problems) {
  const out = {};
  for (const p of problems || []) {
    const key = inputOfProblem(form, p.field) ?? "";
    const where = key && p.field !== key ? `${p.field.slice(key.length).replace(/^\./, "")}: ` : "";
    (out[key] ||= []).push(where + p.message);
  }
  return out;
}

/**
 * The task list for the sidebar: tasks any attached host runs and tasks only federated hosts
 * run, each with its hosts described for people.
 */
export function taskEntries(listing) {
  const entries = [];
  for (const [list, federated] of [[listing?.tasks || [], false], [listing?.federated_only || [], true]]) {
    for (const task of list) {
      const hosts = (task.hosts || []).map((h) => ({
        peerId: h.peer_id,
        attached: Boolean(h.attached),
        freeSlots: h.free_slots ?? null,
        label: `${h.attached ? "attached" : "federated"} ${shortPeer(h.peer_id)}${h.free_slots != null ? ` · ${h.free_slots} free` : ""}`,
      }));
      entries.push({ name: task.name, title: task.title || task.name, description: task.description || "", federated, hosts, schema: task });
    }
  }
  return entries;
}

export function shortPeer(peerId) {
  const text = String(peerId || "");
  return text.length > 16 ? `${text.slice(0, 8)}…${text.slice(-6)}` : text;
}
