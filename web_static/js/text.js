// Text layers: a text, its font, size, colour, weight, slant and alignment, drawn into a
// canvas just large enough to hold it.

import { context, makeCanvas } from "./document.js";

export const FONTS = ["system-ui", "serif", "sans-serif", "monospace", "Georgia", "Impact", "cursive"];

export function fontOf(spec) {
  return `${spec.italic ? "italic " : ""}${spec.bold ? "bold " : ""}${spec.size}px ${spec.font}`;
}

/** The text drawn on a transparent canvas, with its lines aligned left, centre or right. */
export function renderText(spec) {
  const lines = String(spec.content).split("\n");
  const probe = context(makeCanvas(1, 1));
  probe.font = fontOf(spec);
  const widths = lines.map((line) => probe.measureText(line).width);
  const lineHeight = Math.ceil(spec.size * 1.25);
  const pad = Math.ceil(spec.size * 0.15);
  const width = Math.ceil(Math.max(1, ...widths)) + pad * 2;
  const canvas = makeCanvas(width, lineHeight * lines.length + pad * 2);
  const ctx = context(canvas);
  ctx.font = fontOf(spec);
  ctx.fillStyle = spec.color;
  ctx.textBaseline = "middle";
  lines.forEach((line, i) => {
    const free = width - pad * 2 - widths[i];
    const x = pad + (spec.align === "center" ? free / 2 : spec.align === "right" ? free : 0);
    ctx.fillText(line, x, pad + lineHeight * i + lineHeight / 2);
  });
  return canvas;
}
