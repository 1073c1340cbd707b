import { test, equal, assert } from "./harness.js";
import { SHORTCUTS, chordOf, commandFor, displayChord } from "/js/shortcuts.js";

const key = (k, mods = {}) => ({ key: k, ctrlKey: false, metaKey: false, shiftKey: false, altKey: false, ...mods });

test("shortcuts: undo and redo, with Ctrl or Cmd", () => {
  equal(commandFor(key("z", { ctrlKey: true })), "undo");
  equal(commandFor(key("Z", { ctrlKey: true, shiftKey: true })), "redo");
  equal(commandFor(key("z", { metaKey: true })), "undo");
  equal(commandFor(key("y", { ctrlKey: true })), "redo");
});

test("shortcuts: single letters pick tools, shifted symbols keep their meaning", () => {
  equal(commandFor(key("b")), "tool:brush");
  equal(commandFor(key("E", { shiftKey: true })), null, "Shift+E is not the eraser");
  equal(commandFor(key("?", { shiftKey: true })), "help");
  equal(commandFor(key("+", { shiftKey: true })), "zoom:in");
  equal(chordOf(key(" ")), "space");
});

test("shortcuts: no chord is claimed twice", () => {
  const seen = new Set();
  for (const s of SHORTCUTS) for (const k of s.keys) {
    assert(!seen.has(k), `${k} twice`);
    seen.add(k);
  }
  equal(displayChord("ctrl+shift+z"), "Ctrl+Shift+Z");
  equal(displayChord("+"), "+");
  equal(displayChord("shift+arrowup"), "Shift+↑");
});
