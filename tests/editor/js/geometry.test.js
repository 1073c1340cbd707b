import { test, equal, close, assert, throws } from "./harness.js";
import * as g from "/js/geometry.js";

const layer = (props) => ({ x: 0, y: 0, width: 100, height: 50, scaleX: 1, scaleY: 1, rotation: 0, ...props });

test("geometry: a matrix times its inverse is the identity", () => {
  const m = g.multiply(g.translate(5, -3), g.multiply(g.rotate(0.7), g.scale(2, 0.5)));
  const i = g.multiply(m, g.invert(m));
  g.IDENTITY.forEach((v, k) => close(i[k], v, 1e-12, `entry ${k}`));
  throws(() => g.invert(g.scale(0)), /cannot be inverted/);
});

test("geometry: an unrotated layer maps its corners to x, y and x + w·sx, y + h·sy", () => {
  const m = g.layerMatrix(layer({ x: 10, y: 20, scaleX: 2, scaleY: 3 }));
  equal(g.apply(m, 0, 0), { x: 10, y: 20 });
  equal(g.apply(m, 100, 50), { x: 210, y: 170 });
});

test("geometry: rotation turns a layer about its centre", () => {
  const l = layer({ x: 0, y: 0, rotation: Math.PI / 2 });
  const c = g.apply(g.layerMatrix(l), 50, 25);
  close(c.x, 50, 1e-9);
  close(c.y, 25, 1e-9);
  const corners = g.layerCorners(l);
  close(corners[0].x, 75, 1e-9, "top-left goes to the right");
  close(corners[0].y, -25, 1e-9);
  assert(g.hitsLayer(l, { x: 50, y: -20 }), "a point inside the turned layer");
  assert(!g.hitsLayer(l, { x: 5, y: 25 }), "a point only inside the unturned layer");
});

test("geometry: zooming at a point keeps that point under the pointer", () => {
  const view = { zoom: 1, panX: 30, panY: 40 };
  const before = g.toDoc(view, 200, 100);
  const after = g.zoomAt(view, 2.5, 200, 100);
  const doc = g.toDoc(after, 200, 100);
  close(doc.x, before.x, 1e-9);
  close(doc.y, before.y, 1e-9);
  equal(g.zoomAt(view, 1e9, 0, 0).zoom, g.MAX_ZOOM);
});

test("geometry: fitting centres the whole picture in the viewport", () => {
  const v = g.fitView(2000, 1000, 1048, 548, 24);
  close(v.zoom, 0.5);
  close(v.panX, 24);
  close(v.panY, 24);
});

test("geometry: sides snap to the nearest multiple within the bounds", () => {
  equal(g.snapSide(509, 8), 512);
  equal(g.snapSide(515, 64), 512);
  equal(g.snapSide(20, 8, 64, 2048), 64);
  equal(g.snapSide(5000, 8, 64, 2048), 2048);
  equal(g.snapSide(100, 64, 70, 130), 128, "bounds are rounded inwards to multiples");
  equal(g.lcm(8, 64), 64);
  equal(g.lcm(8, 12), 24);
});

test("geometry: snapping a box keeps the anchored corner", () => {
  const limits = { multiple: 64, minW: 64, maxW: 2048, minH: 64, maxH: 2048 };
  equal(g.snapBox({ x: 10, y: 10, w: 500, h: 300 }, limits, "nw"), { x: 10, y: 10, w: 512, h: 320 });
  equal(g.snapBox({ x: 10, y: 10, w: 500, h: 300 }, limits, "se"), { x: -2, y: -10, w: 512, h: 320 });
  equal(g.snapBox({ x: 0, y: 0, w: 100, h: 100 }, limits, "center"), { x: -14, y: -14, w: 128, h: 128 });
});

test("geometry: a box past the picture's edge reports its overhang", () => {
  const o = g.boxOverhang({ x: -64, y: 0, w: 512, h: 600 }, { width: 1000, height: 512 });
  equal([o.left, o.top, o.right, o.bottom], [64, 0, 0, 88]);
  equal(o.inside, { x: 0, y: 0, w: 448, h: 512 });
});

test("geometry: outpainting splits the box into the picture part and extensions", () => {
  const split = g.outpaintSplit({ x: -60, y: 100, w: 512, h: 512 }, { width: 400, height: 400 }, 8);
  equal(split.image, { x: 4, y: 100, w: 392, h: 296 }, "the image part lies inside the picture, on multiples of 8");
  equal([split.left, split.right, split.top, split.bottom], [64, 56, 0, 216]);
  assert(split.left + split.image.w + split.right === 512 && split.top + split.image.h + split.bottom === 512, "parts cover the box");
  equal(g.outpaintSplit({ x: 500, y: 500, w: 64, h: 64 }, { width: 400, height: 400 }), null, "no picture in the box");
});

test("geometry: rectangles from points, intersections and unions", () => {
  equal(g.rectFromPoints({ x: 10, y: 5 }, { x: 2, y: 9 }), { x: 2, y: 5, w: 8, h: 4 });
  equal(g.intersect({ x: 0, y: 0, w: 10, h: 10 }, { x: 5, y: 5, w: 10, h: 10 }), { x: 5, y: 5, w: 5, h: 5 });
  equal(g.intersect({ x: 0, y: 0, w: 10, h: 10 }, { x: 20, y: 0, w: 1, h: 1 }), null);
  equal(g.union(null, { x: 1, y: 1, w: 1, h: 1 }), { x: 1, y: 1, w: 1, h: 1 });
  equal(g.placeInBox(256, 128, { x: 8, y: 16, w: 512, h: 512 }), { x: 8, y: 16, scaleX: 2, scaleY: 4 });
});
