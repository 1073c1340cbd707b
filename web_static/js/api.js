// Every conversation with a Lightbox node: HTTP (fetch) and live job events (WebSocket,
// falling back to polling). Nothing else in the editor touches the network, so when the
// node's API changes only this file changes. Errors become ApiError with a message a person
// can act on and a `kind` the interface can branch on.

const PREFIX = "/api/v1";
const SERVER_KEY = "lightbox.server";
const SESSION_KEY = "lightbox.session";
const FINAL_STATES = new Set(["done", "faulted", "cancelled", "expired"]);

export const isFinalState = (state) => FINAL_STATES.has(state);

/** A refusal or failure, with `kind`: offline, unauthorized, expired, forbidden, rate_limited,
 * out_of_trust, suspended, invalid, not_found, conflict, too_large, server. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = "", kind = "server", detail = "", retryAfter = null, problems = [], field = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.kind = kind;
    this.detail = detail;
    this.retryAfter = retryAfter;
    this.problems = problems;
    this.field = field;
  }
}

function seconds(s) {
  if (s == null || !Number.isFinite(s)) return "";
  if (s < 90) return `${Math.ceil(s)} s`;
  if (s < 5400) return `${Math.ceil(s / 60)} min`;
  return `${Math.round(s / 360) / 10} h`;
}

/**
 * The ApiError for an HTTP refusal: `status`, the JSON body ({error, detail, …}) and the
 * Retry-After header. Pure, so the wording is unit-tested.
 */
export function errorFromResponse(status, body, retryAfterHeader = null) {
  const code = (body && (body.error || body.code)) || "";
  const detail = (body && (body.detail || body.message)) || "";
  const retryAfter = body?.retry_after_s ?? (retryAfterHeader != null && retryAfterHeader !== "" ? Number(retryAfterHeader) : null);
  const extra = { status, code, detail, retryAfter, problems: body?.problems || [], field: body?.field ?? null };
  const wait = retryAfter ? ` Try again in ${seconds(retryAfter)}.` : "";
  if (status === 401) {
    if (code === "token_expired") return new ApiError("Your session has expired. Log in again.", { ...extra, kind: "expired" });
    if (code === "token_revoked") return new ApiError("You were logged out (the session was ended elsewhere). Log in again.", { ...extra, kind: "expired" });
    if (code === "bad_credentials") return new ApiError("Wrong user name or password.", { ...extra, kind: "unauthorized" });
    if (code === "bad_token") return new ApiError("The node does not accept this token any more. Log in again.", { ...extra, kind: "expired" });
    return new ApiError(`Sign in first. ${detail}`.trim(), { ...extra, kind: "unauthorized" });
  }
  if (status === 429) {
    if (code === "trust_exhausted") {
      return new ApiError(`You are out of trust for now: you have used a lot of compute recently. Trust recovers with time.${wait}`, { ...extra, kind: "out_of_trust" });
    }
    if (code === "too_many_active_jobs") return new ApiError(`${detail || "Too many jobs at once."}`, { ...extra, kind: "rate_limited" });
    return new ApiError(`Too many requests: slow down.${wait}`, { ...extra, kind: "rate_limited" });
  }
  if (status === 403) {
    if (code === "suspended") return new ApiError(`Your account is suspended: ${detail}`, { ...extra, kind: "suspended" });
    return new ApiError(detail || "Not allowed.", { ...extra, kind: "forbidden" });
  }
  if (status === 422 || code === "invalid_inputs") {
    return new ApiError(detail || "Some fields are not right.", { ...extra, kind: "invalid" });
  }
  if (status === 404) return new ApiError(detail || "Not found.", { ...extra, kind: "not_found" });
  if (status === 409) return new ApiError(detail || "Conflict.", { ...extra, kind: "conflict" });
  if (status === 413) return new ApiError(detail || "That is too large for the node.", { ...extra, kind: "too_large" });
  if (status >= 400 && status < 500) return new ApiError(detail || `The node refused the request (${status}).`, { ...extra, kind: "invalid" });
  return new ApiError(detail ? `The node failed: ${detail}` : `The node failed (HTTP ${status}).`, { ...extra, kind: "server" });
}

/** A server address as typed ("node.example:8080") made a base URL without a trailing slash. */
export function normalizeServer(text, fallback) {
  const value = String(text || "").trim();
  if (!value) return fallback;
  const withScheme = /^https?:\/\//i.test(value) ? value : `http://${value}`;
  const url = new URL(withScheme);
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, "")}`;
}

function blobToDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(blob);
  });
}

function sniffImage(bytes) {
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return "image/png";
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return "image/jpeg";
  if (bytes[0] === 0x52 && bytes[1] === 0x49 && bytes[8] === 0x57 && bytes[9] === 0x45) return "image/webp";
  return null;
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });

/**
 * A node's API as the editor uses it. `session` is who we are: null, {kind: "account",
 * token, username, scope, expiresAt} or {kind: "operator", token, username}.
 */
export class LightboxApi {
  constructor({ origin = globalThis.location?.origin ?? "http://127.0.0.1", storage = globalThis.localStorage, sessionStorage: temp = globalThis.sessionStorage } = {}) {
    this.origin = origin;
    this.storage = storage;
    this.temp = temp;
    this.server = normalizeServer(storage?.getItem(SERVER_KEY), origin);
    this.session = this.loadSession();
    this.listeners = new Set();
    this.websocketWorks = typeof WebSocket === "function";
    this.accountsAvailable = null;
  }

  // -- session and server -------------------------------------------------------------------

  onSession(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emitSession(reason) {
    for (const listener of this.listeners) listener(this.session, reason);
  }

  loadSession() {
    for (const store of [this.temp, this.storage]) {
      try {
        const text = store?.getItem(SESSION_KEY);
        if (text) {
          const session = JSON.parse(text);
          if (session?.kind === "account" && session.expiresAt && session.expiresAt * 1000 < Date.now()) {
            store.removeItem(SESSION_KEY);
            continue;
          }
          if (session?.token) return session;
        }
      } catch {
        // a damaged entry is the same as none
      }
    }
    return null;
  }

  setSession(session, remember = true) {
    this.session = session;
    this.storage?.removeItem(SESSION_KEY);
    this.temp?.removeItem(SESSION_KEY);
    if (session) (remember ? this.storage : this.temp)?.setItem(SESSION_KEY, JSON.stringify(session));
    this.emitSession(session ? "signed_in" : "signed_out");
  }

  /** Talk to another node from now on (remembered); signs out of the previous one. */
  setServer(text) {
    const server = normalizeServer(text, this.origin);
    if (server !== this.server) {
      this.server = server;
      this.accountsAvailable = null;
      this.websocketWorks = typeof WebSocket === "function";
      this.setSession(null);
    }
    if (server === this.origin) this.storage?.removeItem(SERVER_KEY);
    else this.storage?.setItem(SERVER_KEY, server);
    return server;
  }

  useOperatorToken(token, username = "operator", remember = true) {
    const clean = String(token || "").trim();
    if (!clean) throw new ApiError("Paste the operator token (the file api.token in the node's data folder).", { kind: "invalid" });
    this.setSession({ kind: "operator", token: clean, username: (username || "operator").trim().toLowerCase() }, remember);
  }

  headers(extra = {}) {
    const headers = { ...extra };
    if (this.session?.token) headers.Authorization = `Bearer ${this.session.token}`;
    if (this.session?.kind === "operator") headers["X-Lightbox-User"] = this.session.username || "operator";
    return headers;
  }

  // -- HTTP ------------------------------------------------------------------------------------

  async request(method, path, { body, auth = true, raw = false, signal } = {}) {
    const init = { method, headers: auth ? this.headers() : {}, signal, cache: "no-store" };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    let response;
    try {
      response = await fetch(this.server + PREFIX + path, init);
    } catch (err) {
      if (err?.name === "AbortError") throw err;
      throw new ApiError(`Cannot reach the node at ${this.server}. Is it running?`, { kind: "offline" });
    }
    if (!response.ok) {
      let payload = null;
      try {
        payload = await response.json();
      } catch {
        payload = null;
      }
      const error = errorFromResponse(response.status, payload, response.headers.get("Retry-After"));
      if (error.kind === "expired" && auth && this.session?.kind === "account") {
        this.session = null;
        this.storage?.removeItem(SESSION_KEY);
        this.temp?.removeItem(SESSION_KEY);
        this.emitSession("expired");
      }
      throw error;
    }
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  status() {
    return this.request("GET", "/status", { auth: false });
  }

  tasks() {
    return this.request("GET", "/tasks");
  }

  // -- accounts --------------------------------------------------------------------------------

  /** Does this node keep accounts? (No: only the operator token opens it.) */
  async hasAccounts() {
    if (this.accountsAvailable !== null) return this.accountsAvailable;
    try {
      this.pendingChallenge = await this.request("GET", "/accounts/challenge", { auth: false });
      this.accountsAvailable = true;
    } catch (err) {
      if (err.kind === "not_found") this.accountsAvailable = false;
      else throw err;
    }
    return this.accountsAvailable;
  }

  /** A fresh proof-of-work challenge {challenge, difficulty, expires_at}. */
  async challenge() {
    if (this.pendingChallenge && this.pendingChallenge.expires_at * 1000 > Date.now() + 30_000) {
      const challenge = this.pendingChallenge;
      this.pendingChallenge = null;
      return challenge;
    }
    return this.request("GET", "/accounts/challenge", { auth: false });
  }

  register({ username, password, email, challenge, answer }) {
    const body = { username, password, challenge, answer };
    if (email) body.email = email;
    return this.request("POST", "/accounts", { body, auth: false });
  }

  async login(username, password, { remember = true } = {}) {
    const reply = await this.request("POST", "/auth/login", {
      body: { username, password, label: "browser editor" },
      auth: false,
    });
    this.setSession(
      { kind: "account", token: reply.token, username: reply.username, scope: reply.scope, expiresAt: reply.expires_at },
      remember,
    );
    return this.session;
  }

  async logout() {
    const session = this.session;
    this.setSession(null);
    if (session?.kind === "account") {
      try {
        await fetch(this.server + PREFIX + "/auth/logout", {
          method: "POST",
          headers: { Authorization: `Bearer ${session.token}` },
        });
      } catch {
        // the token is forgotten here either way
      }
    }
  }

  /** {trust, suspended, recovery_eta_s, …} for the signed-in user, or null. */
  async trust() {
    if (!this.session) return null;
    if (this.session.kind === "account") return this.request("GET", "/account");
    return this.request("GET", `/trust/${encodeURIComponent(this.session.username)}`);
  }

  // -- jobs --------------------------------------------------------------------------------------

  /**
   * Submit a job. Image inputs are Blobs (or lists of Blobs); they travel as data URLs, which
   * the node stores as blobs and turns into image values.
   */
  async submitJob(task, inputs, host = null) {
    const wire = {};
    for (const [name, value] of Object.entries(inputs)) {
      if (value instanceof Blob) wire[name] = await blobToDataUrl(value);
      else if (Array.isArray(value) && value.some((v) => v instanceof Blob)) wire[name] = await Promise.all(value.map((v) => (v instanceof Blob ? blobToDataUrl(v) : v)));
      else wire[name] = value;
    }
    const body = { task, inputs: wire };
    if (host) body.host = host;
    return this.request("POST", "/jobs", { body });
  }

  job(id) {
    return this.request("GET", `/jobs/${encodeURIComponent(id)}`);
  }

  cancel(id) {
    return this.request("POST", `/jobs/${encodeURIComponent(id)}/cancel`);
  }

  /**
   * A done job's outputs as [{name, mediaType, blob, text}]: `text` for text outputs, null
   * for pictures and for files that are neither (an adapter, say).
   */
  async results(id) {
    const reply = await this.request("GET", `/jobs/${encodeURIComponent(id)}/result`);
    const out = [];
    if (Array.isArray(reply.files)) {
      for (const file of reply.files) {
        const response = await this.request("GET", file.url.replace(/^.*\/api\/v1/, ""), { raw: true });
        const blob = await response.blob();
        const mediaType = (file.media_type || blob.type || "").split(";")[0];
        const textual = mediaType.startsWith("text/") || mediaType === "application/json";
        out.push({ name: file.name, mediaType, blob, text: textual ? await blob.text() : null });
      }
      return out;
    }
    for (const [name, b64] of Object.entries(reply.outputs || {})) {
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const mediaType = sniffImage(bytes) || "text/plain";
      const blob = new Blob([bytes], { type: mediaType });
      out.push({ name, mediaType, blob, text: mediaType.startsWith("image/") ? null : new TextDecoder().decode(bytes) });
    }
    return out;
  }

  // -- the model registry (public reads) ----------------------------------------------------------

  /** {leader, members, concepts: [{concept, model_id, version, pending_count, updated_at}], commits}. */
  registry() {
    return this.request("GET", "/registry", { auth: false });
  }

  /** One concept: {concept, model, version, metadata, pending_adapters, pending_count, history_length}. */
  concept(name) {
    return this.request("GET", `/registry/concepts/${encodeURIComponent(name)}`, { auth: false });
  }

  /** {concept, events}: history events with seq > `after`, oldest first, at most `limit`. */
  conceptHistory(name, { after = 0, limit = 50 } = {}) {
    return this.request("GET", `/registry/concepts/${encodeURIComponent(name)}/history?after=${after}&limit=${limit}`, { auth: false });
  }

  /**
   * Follow a job until it ends, calling `onUpdate(job)` at each change (state, progress,
   * queue_position); resolves with the final job. Live through the WebSocket when the node
   * has one, else (or when it fails) by polling.
   */
  async watchJob(id, onUpdate, { signal } = {}) {
    if (this.websocketWorks && this.canUseWebSocket()) {
      const result = await this.watchBySocket(id, onUpdate, signal);
      if (result.job && isFinalState(result.job.state)) return result.job;
      if (signal?.aborted) return result.job;
      if (!result.opened) this.websocketWorks = false; // 404 or no WebSocket: poll from now on
    }
    return this.watchByPolling(id, onUpdate, signal);
  }

  /** The WebSocket cannot carry X-Lightbox-User, so the operator acting for another user polls. */
  canUseWebSocket() {
    return !(this.session?.kind === "operator" && (this.session.username || "operator") !== "operator");
  }

  watchBySocket(id, onUpdate, signal) {
    return new Promise((resolve) => {
      const url = new URL(this.server + PREFIX + `/jobs/${encodeURIComponent(id)}/events`);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      if (this.session?.token) url.searchParams.set("access_token", this.session.token);
      let socket;
      try {
        socket = new WebSocket(url);
      } catch {
        resolve({ opened: false, job: null });
        return;
      }
      let opened = false, last = null, settled = false;
      const finish = () => {
        if (settled) return;
        settled = true;
        resolve({ opened, job: last });
      };
      socket.onopen = () => (opened = true);
      socket.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return;
        }
        if (message.type === "job" && message.job) {
          last = message.job;
          onUpdate(last);
        }
      };
      socket.onerror = () => {};
      socket.onclose = finish;
      signal?.addEventListener("abort", () => {
        socket.close(1000);
        finish();
      }, { once: true });
    });
  }

  async watchByPolling(id, onUpdate, signal) {
    let delay = 250, last = null;
    while (!signal?.aborted) {
      const job = await this.job(id);
      if (JSON.stringify(job) !== JSON.stringify(last)) onUpdate(job);
      last = job;
      if (isFinalState(job.state)) return job;
      await sleep(delay, signal);
      delay = Math.min(1500, delay * 1.5);
    }
    return last;
  }
}
