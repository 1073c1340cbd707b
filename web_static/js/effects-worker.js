// Worker: applies one effect to a layer's pixels off the main thread, so the editor stays
// responsive while a large layer is processed. The pixels travel as transferred buffers.
import { applyEffect } from "./effects.js";

self.onmessage = (event) => {
  const { id, buffer, width, height, name, amount, seed } = event.data;
  const image = { data: new Uint8ClampedArray(buffer), width, height };
  const started = performance.now();
  applyEffect(image, name, amount, { seed });
  self.postMessage({ id, buffer, ms: performance.now() - started }, [buffer]);
};
