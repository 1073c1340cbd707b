import { test, equal, assert } from "./harness.js";
import { errorFromResponse, normalizeServer, LightboxApi, isFinalState } from "/js/api.js";

class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

const fresh = () => new LightboxApi({ origin: "http://node.test", storage: new MemoryStorage(), sessionStorage: new MemoryStorage() });

test("api: refusals become messages a person can act on", () => {
  const expired = errorFromResponse(401, { error: "token_expired", detail: "the token expired" });
  equal([expired.kind, expired.message], ["expired", "Your session has expired. Log in again."]);
  const limited = errorFromResponse(429, { error: "rate_limited", detail: "too many", retry_after_s: 12 });
  equal([limited.kind, limited.retryAfter], ["rate_limited", 12]);
  assert(limited.message.includes("12 s"), limited.message);
  const trust = errorFromResponse(429, { error: "trust_exhausted", detail: "no trust" }, "600");
  equal(trust.kind, "out_of_trust");
  assert(trust.message.includes("10 min"), trust.message);
  const invalid = errorFromResponse(422, { error: "invalid_inputs", detail: "bad", problems: [{ field: "prompt", message: "must not be empty" }] });
  equal([invalid.kind, invalid.problems[0].field], ["invalid", "prompt"]);
  equal(errorFromResponse(403, { error: "suspended", detail: "abuse" }).kind, "suspended");
  equal(errorFromResponse(404, null).kind, "not_found");
  equal(errorFromResponse(500, null).message, "The node failed (HTTP 500).");
});

test("api: servers are normalised and remembered; changing server signs out", () => {
  equal(normalizeServer("node.example:8080/", "x"), "http://node.example:8080");
  equal(normalizeServer("https://a.b/lightbox/", "x"), "https://a.b/lightbox");
  equal(normalizeServer("  ", "http://fallback"), "http://fallback");
  const storage = new MemoryStorage();
  const api = new LightboxApi({ origin: "http://node.test", storage, sessionStorage: new MemoryStorage() });
  api.useOperatorToken("secret", "Alice");
  api.setServer("other.test:9000");
  equal(api.session, null);
  equal(new LightboxApi({ origin: "http://node.test", storage, sessionStorage: new MemoryStorage() }).server, "http://other.test:9000");
  api.setServer("");
  equal(storage.getItem("lightbox.server"), null, "the default server is not stored");
});

test("api: the operator token sends the acting user; sessions persist only if remembered", () => {
  const storage = new MemoryStorage(), temp = new MemoryStorage();
  const api = new LightboxApi({ origin: "http://node.test", storage, sessionStorage: temp });
  api.useOperatorToken(" tok ", "bob");
  equal(api.headers(), { Authorization: "Bearer tok", "X-Lightbox-User": "bob" });
  equal(new LightboxApi({ origin: "http://node.test", storage, sessionStorage: new MemoryStorage() }).session.username, "bob");
  api.useOperatorToken("tok", "bob", false);
  equal(storage.getItem("lightbox.session"), null);
  assert(temp.getItem("lightbox.session"));
  assert(!api.canUseWebSocket(), "the WebSocket cannot carry X-Lightbox-User");
  api.useOperatorToken("tok", "operator");
  assert(api.canUseWebSocket());
  let failed = null;
  try {
    api.useOperatorToken("  ");
  } catch (err) {
    failed = err;
  }
  equal(failed?.kind, "invalid");
});

test("api: an expired account session is dropped and listeners hear why", async () => {
  const api = fresh();
  api.setSession({ kind: "account", token: "t", username: "ann", expiresAt: Date.now() / 1000 + 100 });
  const heard = [];
  api.onSession((session, reason) => heard.push(reason));
  const realFetch = globalThis.fetch;
  globalThis.fetch = async () => new Response(JSON.stringify({ error: "token_expired", detail: "expired" }), { status: 401 });
  try {
    let error = null;
    try {
      await api.tasks();
    } catch (err) {
      error = err;
    }
    equal(error.kind, "expired");
    equal(api.session, null);
    equal(heard, ["expired"]);
  } finally {
    globalThis.fetch = realFetch;
  }
});

test("api: watching falls back to polling when the WebSocket is refused", async () => {
  const api = fresh();
  const states = ["queued", "running", "running", "done"];
  let calls = 0;
  const realFetch = globalThis.fetch, RealSocket = globalThis.WebSocket;
  globalThis.fetch = async () => new Response(JSON.stringify({ job_id: "j", state: states[Math.min(calls++, 3)], progress: 0.5 }), { status: 200 });
  globalThis.WebSocket = class {
    constructor() {
      setTimeout(() => this.onclose?.({ code: 1006 }), 5); // as a 404 handshake looks to a page
    }
    close() {}
  };
  api.websocketWorks = true;
  try {
    const seen = [];
    const job = await api.watchJob("j", (j) => seen.push(j.state));
    equal(job.state, "done");
    equal(seen, ["queued", "running", "done"], "unchanged polls are not reported");
    assert(!api.websocketWorks, "no more WebSocket attempts");
  } finally {
    globalThis.fetch = realFetch;
    globalThis.WebSocket = RealSocket;
  }
  assert(isFinalState("cancelled") && !isFinalState("running"));
});

test("api: image inputs travel as data URLs; results are decoded by type", async () => {
  const api = fresh();
  api.useOperatorToken("tok");
  const sent = [];
  const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10]);
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    sent.push({ url, init });
    if (url.endsWith("/result")) return new Response(JSON.stringify({ outputs: { images: btoa(String.fromCharCode(...png)), status: btoa("ok") } }), { status: 200 });
    return new Response(JSON.stringify({ job_id: "j1", state: "queued" }), { status: 201 });
  };
  try {
    await api.submitJob("img2img", { image: new Blob([png], { type: "image/png" }), prompt: "p" }, "lb1host");
    const body = JSON.parse(sent[0].init.body);
    assert(body.inputs.image.startsWith("data:image/png;base64,"), body.inputs.image);
    equal([body.task, body.host, body.inputs.prompt], ["img2img", "lb1host", "p"]);
    const results = await api.results("j1");
    equal(results.map((r) => [r.name, r.mediaType, r.text]), [["images", "image/png", null], ["status", "text/plain", "ok"]]);
  } finally {
    globalThis.fetch = realFetch;
  }
});
