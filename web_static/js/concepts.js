// The model registry as people read it: concepts to pick from, one concept's summary, and
// its history events in words. Pure: works on the JSON of /api/v1/registry… and knows no
// task by name.

import { TEXT_FORMATS, shortPeer } from "./schema-form.js";

export const HISTORY_PAGE = 20;

/** `sha256-1a2b3c4d…`: enough of a blob id to tell models and adapters apart. */
export function shortBlob(id) {
  const text = String(id || "");
  return text.length > 19 ? `${text.slice(0, 15)}…` : text || "—";
}

export const isConceptName = (text) => TEXT_FORMATS.concept.pattern.test(String(text ?? ""));

/** "version 3 · sha256-1a2b…" or "no model yet · 2 adapters waiting". */
export function describeModel({ model, version, pending } = {}) {
  const parts = [model ? `version ${version ?? "?"} · ${shortBlob(model)}` : "no model yet"];
  if (pending) parts.push(`${pending} adapter${pending === 1 ? "" : "s"} waiting`);
  return parts.join(" · ");
}

/** The concepts of a registry overview, by name: [{name, model, version, pending, label}]. */
export function conceptChoices(overview) {
  return (overview?.concepts || [])
    .filter((c) => typeof c?.concept === "string" && c.concept)
    .map((c) => {
      const entry = { name: c.concept, model: c.model_id || "", version: c.version ?? 0, pending: c.pending_count ?? 0 };
      return { ...entry, label: `${entry.name} — ${describeModel(entry)}` };
    })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Whether a task's concept input names a concept to create or add to (free text, new names
 * allowed), or picks an existing one to paint with: a task that makes pictures uses a
 * concept; one that makes none (a fine-tune makes an adapter) teaches one.
 */
export function createsConcept(form) {
  return !(form?.outputs || []).some((o) => o.type === "image" || o.type === "image_list");
}

/** The name of a form's concept input, or null. */
export function conceptInput(form) {
  return form?.fields?.find((f) => f.widget === "concept")?.name ?? null;
}

/** Where to start reading a history of `length` events to get its last `page`. */
export function lastPageAfter(length, page = HISTORY_PAGE) {
  return Math.max(0, (Number(length) || 0) - page);
}

function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function number(value) {
  return Number.isInteger(value) ? String(value) : String(Number(Number(value).toPrecision(6)));
}

/** "2025-03-04 12:05": an event's time (ms since the epoch) in local time; "" when unknown. */
export function formatTime(ms) {
  if (!Number.isFinite(ms) || ms <= 0) return "";
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

/** One history event as a row: {seq, kind, text, by, at}. */
export function describeEvent(event) {
  const kind = String(event?.kind || "event");
  let text;
  if (kind === "adapter") {
    text = `adapter ${shortBlob(event.adapter)} submitted, weight ${number(event.weight ?? 1)}`;
  } else if (kind === "merge") {
    const n = (event.adapters || []).length;
    text = `${plural(n, "adapter")} merged → version ${event.version ?? "?"}, model ${shortBlob(event.model)}`;
  } else if (kind === "metadata") {
    const entries = Object.entries(event.metadata || {});
    text = entries.length ? `metadata ${entries.map(([k, v]) => `${k}=${v === null ? "(removed)" : v}`).join(", ")}` : "metadata";
  } else {
    text = kind;
  }
  return { seq: event?.seq ?? null, kind, text, by: shortPeer(event?.by) || "—", at: formatTime(event?.at) };
}

/** History rows newest first, from pages of events (oldest first, as the node sends them). */
export function historyRows(events, page = HISTORY_PAGE) {
  return [...(events || [])].sort((a, b) => (b.seq ?? 0) - (a.seq ?? 0)).slice(0, page).map(describeEvent);
}
