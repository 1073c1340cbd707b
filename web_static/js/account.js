// The account dialog: which server, log in, register (solving the proof of work in a worker,
// with progress), the operator token where the node keeps no accounts, log out; and the
// top-bar button that says who is signed in.

import { $, $$ } from "./dom.js";

const USERNAME = /^[a-z0-9._-]{1,64}$/;

export class AccountPanel {
  constructor(app) {
    this.app = app;
    this.api = app.api;
    this.dialog = $("#account-dialog");
    this.message = $("#account-message");
    $("#account-button").onclick = () => this.open();
    for (const tab of $$("#account-tabs [role=tab]")) tab.onclick = () => this.showPane(tab.dataset.pane);
    const onSubmit = (form, action) =>
      $(form).addEventListener("submit", (e) => {
        e.preventDefault();
        action();
      });
    onSubmit("#login-form", () => this.login());
    onSubmit("#register-form", () => this.register());
    onSubmit("#operator-form", () => this.useOperator());
    onSubmit("#server-form", () => {}); // Enter commits the field, which fires "change"
    $("#logout").onclick = () => this.logout();
    $("#server-url").addEventListener("change", () => this.changeServer());
    this.api.onSession((session, reason) => {
      this.refreshButton();
      if (reason === "expired") {
        this.app.toast("Your session has expired. Log in again.", "warn");
        this.open("login");
        this.say("Your session has expired. Log in again.", "error");
      }
    });
    this.refreshButton();
  }

  say(text, kind = "") {
    this.message.textContent = text;
    this.message.className = kind;
  }

  showPane(name) {
    for (const tab of $$("#account-tabs [role=tab]")) tab.setAttribute("aria-selected", String(tab.dataset.pane === name));
    for (const pane of $$("#account-dialog form[data-pane]")) pane.hidden = pane.dataset.pane !== name;
    this.dialog.querySelector(`form[data-pane="${name}"] input`)?.focus();
  }

  async open(pane = null) {
    if (!this.dialog.open) this.dialog.showModal();
    $("#server-url").value = this.api.server === this.api.origin ? "" : this.api.server;
    this.say("");
    this.refreshState();
    let accounts = null;
    try {
      accounts = await this.api.hasAccounts();
    } catch (err) {
      this.say(err.message, "error");
    }
    for (const name of ["login", "register"]) $(`#account-tabs [data-pane=${name}]`).hidden = accounts === false;
    if (accounts === false) {
      this.showPane("operator");
      this.say("This node keeps no accounts: use its operator token.", "");
    } else {
      this.showPane(pane || (this.api.session?.kind === "operator" ? "operator" : "login"));
    }
  }

  refreshState() {
    const s = this.api.session;
    $("#account-state").textContent = s
      ? s.kind === "operator"
        ? `Using the operator token, acting as “${s.username}”.`
        : `Signed in as ${s.username}${s.expiresAt ? ` until ${new Date(s.expiresAt * 1000).toLocaleString()}` : ""}.`
      : "Not signed in. Sign in to run tasks.";
    $("#logout").hidden = !s;
  }

  async refreshButton() {
    const s = this.api.session;
    const button = $("#account-button");
    button.textContent = s ? `${s.username}${s.kind === "operator" ? " (operator)" : ""}` : "Sign in";
    button.title = s ? "Account, trust and server" : "Log in or register";
    if (this.dialog.open) this.refreshState();
    if (!s) return;
    try {
      const info = await this.api.trust();
      if (info && typeof info.trust === "number") {
        button.textContent += ` · trust ${Math.round(info.trust)}`;
        if (info.suspended) button.textContent += " (suspended)";
      }
    } catch {
      // trust is a nicety; the node may not report it
    }
  }

  changeServer() {
    const server = this.api.setServer($("#server-url").value);
    this.say(`Server: ${server}`, "ok");
    this.app.generate.loadTasks();
    this.app.pollStatus();
    this.open();
  }

  async login() {
    const username = $("#login-user").value.trim().toLowerCase();
    const password = $("#login-password").value;
    if (!username || !password) return this.say("Enter your user name and password.", "error");
    this.say("Logging in…");
    try {
      await this.api.login(username, password, { remember: $("#login-remember").checked });
      $("#login-password").value = "";
      this.say(`Signed in as ${username}.`, "ok");
      this.app.toast(`Signed in as ${username}.`, "ok");
      this.dialog.close();
    } catch (err) {
      this.say(err.message, "error");
    }
  }

  async register() {
    const username = $("#register-user").value.trim().toLowerCase();
    const password = $("#register-password").value;
    const email = $("#register-email").value.trim();
    if (!USERNAME.test(username)) return this.say("User names are 1–64 of a–z, 0–9, dot, dash and underscore.", "error");
    if (password.length < 8) return this.say("Choose a password of at least 8 characters.", "error");
    const progress = $("#register-progress");
    const button = $("#register-submit");
    button.disabled = true;
    try {
      this.say("Fetching a puzzle from the node…");
      const challenge = await this.api.challenge();
      progress.hidden = false;
      progress.value = 0;
      const expected = 2 ** challenge.difficulty;
      const answer = await solveProof(challenge.challenge, challenge.difficulty, (tried) => {
        progress.value = Math.min(0.99, 1 - Math.exp(-tried / expected));
        this.say(`Solving the anti-bot puzzle… ${Math.round(progress.value * 100)}%`);
      });
      progress.value = 1;
      this.say("Creating the account…");
      await this.api.register({ username, password, email, challenge: challenge.challenge, answer });
      await this.api.login(username, password);
      $("#register-password").value = "";
      this.app.toast(`Welcome, ${username}! Your account is ready.`, "ok");
      this.say(`Account ${username} created; you are signed in.`, "ok");
      this.dialog.close();
    } catch (err) {
      this.say(err.message, "error");
    } finally {
      button.disabled = false;
      progress.hidden = true;
    }
  }

  useOperator() {
    try {
      this.api.useOperatorToken($("#operator-token").value, $("#operator-user").value);
      $("#operator-token").value = "";
      this.say("Using the operator token.", "ok");
      this.app.toast("Using the operator token.", "ok");
      this.dialog.close();
    } catch (err) {
      this.say(err.message, "error");
    }
  }

  async logout() {
    await this.api.logout();
    this.refreshState();
    this.say("Logged out.", "ok");
  }
}

/** Find the proof-of-work answer in a worker; `onProgress(tried)` as it goes. */
export function solveProof(challenge, difficulty, onProgress) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./pow-worker.js", import.meta.url), { type: "module" });
    worker.onmessage = (event) => {
      onProgress(event.data.tried);
      if (event.data.done) {
        worker.terminate();
        resolve(event.data.answer);
      }
    };
    worker.onerror = (event) => {
      worker.terminate();
      reject(new Error(`The puzzle could not be solved here: ${event.message || "worker failed"}`));
    };
    worker.postMessage({ challenge, difficulty });
  });
}
