// The undo history: a stack of done operations, each knowing how to undo and redo itself.
// Pure: entries are plain objects {label, undo(), redo(), bytes?, dispose?()}; the history
// never touches pixels itself, it only orders the entries and bounds their memory.

export class History {
  /**
   * `limit` bounds the number of entries, `budgetBytes` the memory their snapshots hold
   * (each entry says how much in `bytes`); the oldest entries are forgotten first.
   */
  constructor({ limit = 200, budgetBytes = 768 * 1024 * 1024 } = {}) {
    this.limit = limit;
    this.budgetBytes = budgetBytes;
    this.done = [];
    this.undone = [];
    this.listeners = new Set();
    this.open = null;
  }

  get canUndo() {
    return this.done.length > 0;
  }

  get canRedo() {
    return this.undone.length > 0;
  }

  get undoLabel() {
    return this.done.at(-1)?.label ?? null;
  }

  get redoLabel() {
    return this.undone.at(-1)?.label ?? null;
  }

  get bytes() {
    return [...this.done, ...this.undone].reduce((sum, e) => sum + (e.bytes || 0), 0);
  }

  onChange(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit() {
    for (const listener of this.listeners) listener(this);
  }

  /** Record an operation that has already been done. Clears what could be redone. */
  push(entry) {
    if (typeof entry?.undo !== "function" || typeof entry?.redo !== "function") {
      throw new TypeError("a history entry needs undo() and redo()");
    }
    if (this.open) {
      this.open.entries.push(entry);
      return entry;
    }
    for (const dropped of this.undone) dropped.dispose?.();
    this.undone = [];
    this.done.push(entry);
    this.trim();
    this.emit();
    return entry;
  }

  /** Do an operation (its `redo`) and record it. */
  run(entry) {
    entry.redo();
    return this.push(entry);
  }

  /**
   * Group everything pushed until `end()` into one entry, undone in reverse order; nested
   * groups fold into the outermost. An empty group records nothing.
   */
  begin(label) {
    if (this.open) {
      this.open.depth += 1;
      return;
    }
    this.open = { label, entries: [], depth: 1 };
  }

  end() {
    if (!this.open) throw new Error("end() without begin()");
    this.open.depth -= 1;
    if (this.open.depth > 0) return null;
    const { label, entries } = this.open;
    this.open = null;
    if (!entries.length) return null;
    return this.push(compound(label, entries));
  }

  undo() {
    const entry = this.done.pop();
    if (!entry) return null;
    entry.undo();
    this.undone.push(entry);
    this.emit();
    return entry;
  }

  redo() {
    const entry = this.undone.pop();
    if (!entry) return null;
    entry.redo();
    this.done.push(entry);
    this.emit();
    return entry;
  }

  clear() {
    for (const entry of [...this.done, ...this.undone]) entry.dispose?.();
    this.done = [];
    this.undone = [];
    this.emit();
  }

  trim() {
    let bytes = this.bytes;
    while (this.done.length > 1 && (this.done.length > this.limit || bytes > this.budgetBytes)) {
      const dropped = this.done.shift();
      bytes -= dropped.bytes || 0;
      dropped.dispose?.();
    }
  }
}

/** One entry made of several, undone last-first. */
export function compound(label, entries) {
  return {
    label,
    bytes: entries.reduce((sum, e) => sum + (e.bytes || 0), 0),
    undo() {
      for (let i = entries.length - 1; i >= 0; i--) entries[i].undo();
    },
    redo() {
      for (const e of entries) e.redo();
    },
    dispose() {
      for (const e of entries) e.dispose?.();
    },
  };
}

/** An entry that sets `key` of `target` from `before` to `after` (and back), then calls `changed`. */
export function propertyChange(label, target, key, before, after, changed = () => {}) {
  return {
    label,
    undo() {
      target[key] = before;
      changed();
    },
    redo() {
      target[key] = after;
      changed();
    },
  };
}
