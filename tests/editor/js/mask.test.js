import { test, equal, close, assert } from "./harness.js";
import { exportMask, maskCoverage, invertMask, isMaskEmpty, MASK_RGB } from "/js/mask.js";

function painted(w, h, alphaAt) {
  const data = new Uint8ClampedArray(w * h * 4);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data.set([...MASK_RGB, alphaAt(x, y)], (y * w + x) * 4);
  return data;
}

test("mask: painted alpha becomes white on black, opaque", () => {
  const out = exportMask(painted(2, 1, (x) => (x ? 255 : 0)), 2, 1);
  equal([...out], [0, 0, 0, 255, 255, 255, 255, 255]);
});

test("mask: soft edges stay grey and invert flips them", () => {
  const out = exportMask(painted(1, 1, () => 64), 1, 1, { invert: true });
  equal([...out], [191, 191, 191, 255]);
});

test("mask: outside the picture is always repainted (outpainting)", () => {
  const data = painted(4, 1, () => 0);
  const out = exportMask(data, 4, 1, { inside: { x: 1, y: 0, w: 2, h: 1 }, invert: true });
  equal([0, 4, 8, 12].map((i) => out[i]), [255, 255, 255, 255], "inverted empty mask is white inside, and white outside");
  const plain = exportMask(data, 4, 1, { inside: { x: 1, y: 0, w: 2, h: 1 } });
  equal([0, 4, 8, 12].map((i) => plain[i]), [255, 0, 0, 255]);
});

test("mask: coverage, emptiness and inversion of the painted layer", () => {
  const data = painted(4, 1, (x) => (x < 1 ? 255 : 0));
  close(maskCoverage(data), 0.25);
  assert(!isMaskEmpty(data));
  invertMask(data);
  close(maskCoverage(data), 0.75);
  assert(isMaskEmpty(painted(3, 3, () => 0)));
});

test("mask: the size must match the data", () => {
  let failed = false;
  try {
    exportMask(new Uint8ClampedArray(8), 3, 1);
  } catch {
    failed = true;
  }
  assert(failed);
});
