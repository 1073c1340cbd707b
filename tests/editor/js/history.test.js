import { test, equal, assert, throws } from "./harness.js";
import { History, compound, propertyChange } from "/js/history.js";

function counter(history, label = "add", bytes = 0) {
  const state = { value: 0, disposed: 0 };
  const entry = () => ({ label, bytes, redo: () => state.value++, undo: () => state.value--, dispose: () => state.disposed++ });
  return { state, entry };
}

test("history: undo and redo walk back and forth", () => {
  const h = new History();
  const { state, entry } = counter(h);
  h.run(entry());
  h.run(entry());
  equal(state.value, 2);
  h.undo();
  equal(state.value, 1);
  assert(h.canRedo && h.canUndo);
  h.redo();
  equal(state.value, 2);
  h.undo();
  h.undo();
  equal(state.value, 0);
  equal(h.undo(), null, "nothing left to undo");
});

test("history: a new operation forgets what could be redone", () => {
  const h = new History();
  const { state, entry } = counter(h);
  h.run(entry());
  h.undo();
  h.run(entry());
  assert(!h.canRedo);
  equal(state.disposed, 1, "the forgotten entry is disposed");
});

test("history: a group undoes as one step, last first", () => {
  const h = new History();
  const log = [];
  h.begin("both");
  h.run({ label: "a", redo: () => log.push("+a"), undo: () => log.push("-a") });
  h.begin("nested");
  h.run({ label: "b", redo: () => log.push("+b"), undo: () => log.push("-b") });
  h.end();
  h.end();
  equal(h.done.length, 1);
  equal(h.undoLabel, "both");
  h.undo();
  equal(log, ["+a", "+b", "-b", "-a"]);
  h.begin("empty");
  equal(h.end(), null, "an empty group records nothing");
  throws(() => h.end(), /without begin/);
});

test("history: the oldest entries go when over the count or the memory budget", () => {
  const h = new History({ limit: 3, budgetBytes: 100 });
  const { state, entry } = counter(h, "x", 30);
  for (let i = 0; i < 5; i++) h.run(entry());
  equal(h.done.length, 3);
  equal(state.disposed, 2);
  h.run({ ...entry(), bytes: 80 });
  equal(h.done.length, 1, "a large entry pushes out the rest");
});

test("history: listeners hear every change; bad entries are refused", () => {
  const h = new History();
  let heard = 0;
  h.onChange(() => heard++);
  h.run(propertyChange("name", { name: "a" }, "name", "a", "b"));
  h.undo();
  h.redo();
  equal(heard, 3);
  throws(() => h.push({ label: "no undo" }), /undo\(\) and redo\(\)/);
});

test("history: property changes and compounds restore values", () => {
  const target = { x: 1 };
  const c = compound("both", [propertyChange("x", target, "x", 1, 2), propertyChange("x", target, "x", 2, 3)]);
  c.redo();
  equal(target.x, 3);
  c.undo();
  equal(target.x, 1);
});
