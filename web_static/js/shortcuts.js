// Keyboard shortcuts: which key chord runs which editor command. Pure, so the table is the
// documentation (the help dialog lists it) and unit tests check the matching.

export const SHORTCUTS = Object.freeze([
  { keys: ["v"], command: "tool:move", label: "Move, scale, rotate layer" },
  { keys: ["b"], command: "tool:brush", label: "Brush" },
  { keys: ["e"], command: "tool:eraser", label: "Eraser" },
  { keys: ["t"], command: "tool:text", label: "Text" },
  { keys: ["m"], command: "tool:select", label: "Selection box" },
  { keys: ["c"], command: "tool:crop", label: "Crop" },
  { keys: ["g"], command: "tool:box", label: "Generation box" },
  { keys: ["k"], command: "tool:mask", label: "Paint mask" },
  { keys: ["h"], command: "tool:hand", label: "Hand (or hold Space)" },
  { keys: ["["], command: "brush:smaller", label: "Smaller brush" },
  { keys: ["]"], command: "brush:larger", label: "Larger brush" },
  { keys: ["ctrl+z"], command: "undo", label: "Undo" },
  { keys: ["ctrl+shift+z", "ctrl+y"], command: "redo", label: "Redo" },
  { keys: ["ctrl+o"], command: "open", label: "Open images" },
  { keys: ["ctrl+shift+e"], command: "export", label: "Export PNG" },
  { keys: ["ctrl+alt+n"], command: "new", label: "New picture" },
  { keys: ["ctrl+shift+n"], command: "layer:add", label: "New layer" },
  { keys: ["ctrl+j"], command: "layer:duplicate", label: "Duplicate layer" },
  { keys: ["ctrl+e"], command: "layer:merge", label: "Merge down" },
  { keys: ["ctrl+]"], command: "layer:up", label: "Raise layer" },
  { keys: ["ctrl+["], command: "layer:down", label: "Lower layer" },
  { keys: ["ctrl+a"], command: "select:all", label: "Select all" },
  { keys: ["ctrl+d"], command: "select:none", label: "Deselect" },
  { keys: ["delete", "backspace"], command: "delete", label: "Clear selection / discard result" },
  { keys: ["enter"], command: "commit", label: "Apply crop / accept result" },
  { keys: ["escape"], command: "cancel", label: "Cancel" },
  { keys: ["ctrl+0"], command: "zoom:fit", label: "Fit to window" },
  { keys: ["ctrl+1"], command: "zoom:100", label: "Actual pixels" },
  { keys: ["+", "=", "ctrl+="], command: "zoom:in", label: "Zoom in" },
  { keys: ["-", "ctrl+-"], command: "zoom:out", label: "Zoom out" },
  { keys: ["arrowleft", "arrowright", "arrowup", "arrowdown", "shift+arrowleft", "shift+arrowright", "shift+arrowup", "shift+arrowdown"], command: "nudge", label: "Nudge layer (Shift: 10 px)" },
  { keys: [","], command: "staging:prev", label: "Previous result" },
  { keys: ["."], command: "staging:next", label: "Next result" },
  { keys: ["ctrl+enter"], command: "generate", label: "Run the task" },
  { keys: ["?", "shift+?"], command: "help", label: "This list" },
]);

/** "ctrl+shift+z" for a KeyboardEvent-like object ({key, ctrlKey, metaKey, shiftKey, altKey}). */
export function chordOf(e) {
  let key = String(e.key || "").toLowerCase();
  if (key === " ") key = "space";
  if (key === "esc") key = "escape";
  const parts = [];
  if (e.ctrlKey || e.metaKey) parts.push("ctrl");
  if (e.altKey) parts.push("alt");
  // Shift is part of the chord only where it does not already shape the key itself ("?", "+").
  if (e.shiftKey && (key.length > 1 || /[a-z]/.test(key) || parts.length)) parts.push("shift");
  parts.push(key);
  return parts.join("+");
}

const TABLE = new Map(SHORTCUTS.flatMap((s) => s.keys.map((k) => [k, s.command])));

/** The command a key press runs, or null. */
export function commandFor(e, table = TABLE) {
  return table.get(chordOf(e)) ?? null;
}

/** Shortcuts that still work while typing in a field (the others would eat the typed text). */
export const WHILE_TYPING = new Set(["generate", "export", "open"]);

/** How a chord is written for people: "Ctrl+Shift+Z". */
export function displayChord(chord) {
  const plus = chord.endsWith("+");
  const parts = (plus ? chord.slice(0, -1) : chord).split("+").filter(Boolean);
  if (plus) parts.push("+");
  const names = { arrowleft: "←", arrowright: "→", arrowup: "↑", arrowdown: "↓" };
  return parts.map((p) => names[p] ?? (p.length === 1 ? p.toUpperCase() : p[0].toUpperCase() + p.slice(1))).join("+");
}
