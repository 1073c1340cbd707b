// Worker: finds a proof-of-work answer for registration, reporting how many hashes it tried.
import { searchProof } from "./sha256.js";

self.onmessage = (event) => {
  const { challenge, difficulty } = event.data;
  const batch = 20000;
  let tried = 0;
  for (let start = 0; ; start += batch) {
    const found = searchProof(challenge, difficulty, start, batch);
    tried += found.tried;
    if (found.answer !== null) {
      self.postMessage({ done: true, answer: found.answer, tried });
      return;
    }
    self.postMessage({ done: false, tried });
  }
};
