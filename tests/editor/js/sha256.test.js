import { test, equal, assert } from "./harness.js";
import { sha256Hex, sha256Words, leadingZeroBits, searchProof } from "/js/sha256.js";

test("sha256: known digests", () => {
  equal(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  equal(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  equal(sha256Hex("a".repeat(200)), "c2a908d98f5df987ade41b5fce213067efbcc21ef2240212a41e54b5e7c28ae5");
});

test("sha256: agrees with the browser's own SHA-256 on many lengths", async () => {
  for (let n = 0; n < 140; n += 7) {
    const bytes = new TextEncoder().encode("x".repeat(n) + n);
    const ours = sha256Words(bytes).map((w) => w.toString(16).padStart(8, "0")).join("");
    const theirs = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
    equal(ours, theirs, `length ${bytes.length}`);
  }
});

test("sha256: leading zero bits are counted across words", () => {
  equal(leadingZeroBits([0, 0x0fffffff]), 36);
  equal(leadingZeroBits([0x80000000]), 0);
});

test("sha256: a found proof of work really has the zero bits", async () => {
  const challenge = "lbc1.test-challenge";
  const found = searchProof(challenge, 10, 0, 1 << 16);
  assert(found.answer !== null, "found within 65536 tries");
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`${challenge}:${found.answer}`)));
  assert(digest[0] === 0 && digest[1] < 64, `10 zero bits: ${digest[0]}, ${digest[1]}`);
});
