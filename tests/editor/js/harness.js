// A very small test harness for the editor's pure modules, run in the real browser.
const tests = [];

export function test(name, fn) {
  tests.push({ name, fn });
}

export class AssertionError extends Error {}

export function assert(condition, message = "assertion failed") {
  if (!condition) throw new AssertionError(message);
}

/** JSON with object keys sorted, so that equal() ignores key order. */
function canonical(value) {
  return JSON.stringify(value, (key, v) => (v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : 1))) : v));
}

export function equal(actual, expected, message = "") {
  const a = canonical(actual), b = canonical(expected);
  if (a !== b) throw new AssertionError(`${message ? `${message}: ` : ""}expected ${b}, got ${a}`);
}

export function close(actual, expected, tolerance = 1e-9, message = "") {
  if (!(Math.abs(actual - expected) <= tolerance)) {
    throw new AssertionError(`${message ? `${message}: ` : ""}expected ${expected} ± ${tolerance}, got ${actual}`);
  }
}

export function throws(fn, pattern = null, message = "expected an exception") {
  try {
    fn();
  } catch (err) {
    if (pattern && !pattern.test(String(err.message))) throw new AssertionError(`${message}: wrong message ${err.message}`);
    return err;
  }
  throw new AssertionError(message);
}

/** Run every registered test; the results are plain data for the Python side. */
export async function run() {
  const results = [];
  for (const t of tests) {
    const started = performance.now();
    try {
      await t.fn();
      results.push({ name: t.name, ok: true, ms: performance.now() - started });
    } catch (err) {
      results.push({ name: t.name, ok: false, error: `${err.name}: ${err.message}`, stack: String(err.stack || "") });
    }
  }
  return results;
}

/** An ImageData-like image of w×h filled by `pixel(x, y) -> [r, g, b, a]`. */
export function image(w, h, pixel) {
  const data = new Uint8ClampedArray(w * h * 4);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set(pixel(x, y), (y * w + x) * 4);
  return { data, width: w, height: h };
}

export function px(img, x, y) {
  const i = (y * img.width + x) * 4;
  return [...img.data.slice(i, i + 4)];
}
