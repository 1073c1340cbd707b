import { test, equal, close, assert, image, px } from "./harness.js";
import * as fx from "/js/effects.js";

const grey = (v, a = 255) => () => [v, v, v, a];
const sum = (img, channel) => img.data.reduce((s, v, i) => (i % 4 === channel ? s + v : s), 0);

test("effects: every effect has a parameter range that contains its default and neutral", () => {
  for (const e of fx.EFFECTS) {
    assert(e.min <= e.default && e.default <= e.max, `${e.name} default`);
    assert(e.min <= e.neutral && e.neutral <= e.max, `${e.name} neutral`);
    const img = image(4, 4, (x, y) => [x * 60, y * 60, 90, 255]);
    const before = [...img.data];
    fx.applyEffect(img, e.name, e.neutral);
    equal([...img.data], before, `${e.name} at its neutral value changes nothing`);
  }
});

test("effects: brightness adds, clamps, and leaves alpha alone", () => {
  const img = fx.applyEffect(image(2, 1, (x) => [x ? 250 : 10, 100, 0, 77]), "brightness", 20);
  equal(px(img, 0, 0), [61, 151, 51, 77]);
  equal(px(img, 1, 0), [255, 151, 51, 77]);
});

test("effects: contrast -100 makes everything mid-grey, +contrast spreads values", () => {
  const flat = fx.applyEffect(image(2, 1, (x) => [x * 255, 30, 200, 255]), "contrast", -100);
  equal(px(flat, 0, 0).slice(0, 3), [128, 128, 128]);
  const lut = fx.contrastLut(50);
  assert(lut[64] < 64 && lut[192] > 192 && lut[128] === 128);
});

test("effects: invert 100 twice gives the picture back; 50 is grey", () => {
  const img = image(3, 1, (x) => [x * 100, 17, 250, 200]);
  const before = [...img.data];
  fx.applyEffect(img, "invert", 100);
  equal(px(img, 0, 0), [255, 238, 5, 200]);
  fx.applyEffect(img, "invert", 100);
  equal([...img.data], before);
  const half = fx.applyEffect(image(1, 1, () => [0, 255, 100, 255]), "invert", 50);
  equal(px(half, 0, 0).slice(0, 3), [128, 128, 128]);
});

test("effects: saturation -100 turns colour to its luma grey", () => {
  const img = fx.applyEffect(image(1, 1, () => [200, 40, 40, 255]), "saturation", -100);
  const [r, g, b] = px(img, 0, 0);
  assert(r === g && g === b, `grey expected, got ${[r, g, b]}`);
  close(r, 0.2126 * 200 + 0.7152 * 40 + 0.0722 * 40, 1);
});

test("effects: hue rotation keeps grey grey and turns red towards green at 120°", () => {
  const g = fx.applyEffect(image(1, 1, () => [90, 90, 90, 255]), "hue", 120);
  equal(px(g, 0, 0), [90, 90, 90, 255]);
  const red = fx.applyEffect(image(1, 1, () => [255, 0, 0, 255]), "hue", 120);
  const [r, gg, b] = px(red, 0, 0);
  assert(gg > r && gg > b, `red turned ${[r, gg, b]}`);
});

test("effects: blur keeps a flat picture flat and spreads a dot evenly", () => {
  const flat = fx.applyEffect(image(16, 16, grey(123)), "blur", 3);
  assert(flat.data.every((v, i) => (i % 4 === 3 ? v === 255 : Math.abs(v - 123) <= 1)), "flat stays flat");
  // Sigma 6 runs on a copy reduced 4 times: a 2×2 dot centred on a 4×4 block stays centred.
  for (const [sigma, x0, x1] of [[1.5, 20, 20], [6, 21, 22]]) {
    const dot = image(44, 44, (x, y) => (x >= x0 && x <= x1 && y >= x0 && y <= x1 ? [255, 255, 255, 255] : [0, 0, 0, 255]));
    fx.blur(dot, sigma);
    const centre = px(dot, x0, x0)[0];
    assert(centre < 255 && centre > 0, `the dot spreads (sigma ${sigma}): ${centre}`);
    close(px(dot, x0 - 5, x0)[0], px(dot, x1 + 5, x0)[0], 2, "left and right alike");
    close(px(dot, x0, x0 - 5)[0], px(dot, x0, x1 + 5)[0], 2, "up and down alike");
    close(sum(dot, 0), 255 * (x1 - x0 + 1) ** 2, 80, `brightness is kept (sigma ${sigma})`);
  }
});

test("effects: blur does not bleed the colour of transparent pixels", () => {
  const img = image(20, 1, (x) => (x < 10 ? [255, 0, 0, 255] : [0, 0, 255, 0]));
  fx.blur(img, 2);
  const [r, g, b, a] = px(img, 11, 0);
  assert(a > 0 && a < 255, "alpha spreads");
  assert(r > 250 && b < 5, `colour comes from the opaque side only: ${[r, g, b, a]}`);
});

test("effects: blur damps a smooth wave as a true Gaussian would, reduced or not", () => {
  // A Gaussian of deviation s scales a sine of angular frequency w by exp(-s²w²/2).
  for (const sigma of [2, 6, 12]) {
    const w = 1 / 6;
    const img = image(192, 4, (x) => [128 + 100 * Math.sin(w * x), 0, 0, 255]);
    fx.blur(img, sigma);
    const gain = Math.exp(-(sigma * sigma * w * w) / 2);
    for (const x of [70, 85, 100, 117]) close(px(img, x, 2)[0], 128 + 100 * gain * Math.sin(w * x), 6, `sigma ${sigma} at x=${x}`);
  }
});

test("effects: pixelate fills each block with its alpha-weighted average", () => {
  const img = image(4, 2, (x) => (x < 2 ? [x ? 100 : 0, 0, 0, 255] : [255, 255, 255, x === 2 ? 0 : 255]));
  fx.pixelate(img, 2);
  equal(px(img, 0, 0), [50, 0, 0, 255]);
  equal(px(img, 1, 1), [50, 0, 0, 255]);
  equal(px(img, 2, 0), [255, 255, 255, 128], "a transparent pixel adds no colour, only less alpha");
});

test("effects: noise is repeatable by seed and centred on the original", () => {
  const a = fx.applyEffect(image(32, 32, grey(128)), "noise", 50, { seed: 7 });
  const b = fx.applyEffect(image(32, 32, grey(128)), "noise", 50, { seed: 7 });
  const c = fx.applyEffect(image(32, 32, grey(128)), "noise", 50, { seed: 8 });
  equal([...a.data], [...b.data]);
  assert(JSON.stringify([...a.data]) !== JSON.stringify([...c.data]), "another seed, other grain");
  close(sum(a, 0) / 1024, 128, 6, "mean stays put");
  const [r, g, bb] = px(a, 3, 3);
  assert(r === g && g === bb, "grain is monochrome");
});

test("effects: blur and pixelate scale with the preview's size", () => {
  const full = fx.applyEffect(image(32, 32, (x) => [x * 8, 0, 0, 255]), "pixelate", 8);
  const half = fx.applyEffect(image(16, 16, (x) => [x * 16 + 4, 0, 0, 255]), "pixelate", 8, { scale: 0.5 });
  equal(px(full, 0, 0)[0], px(half, 0, 0)[0], "an 8 px block at full size is a 4 px block at half size");
});
