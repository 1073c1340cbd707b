"""The OpenAPI 3.1 document of the API, written from one table of operations, and a
self-contained docs page that reads it (no CDN: nodes may run offline).

Every route the app serves is listed in `OPERATIONS`; `tests/api` checks the two agree, and
runs schemathesis against this document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import BaseRoute, Route

from lightbox_node import __version__

JOB_ID = {"type": "string", "pattern": "^j-[0-9a-f]{24}$"}
JOB_STATES = ["queued", "dispatched", "running", "done", "faulted", "cancelled", "expired"]
USER = {"type": "string", "pattern": "^[a-z0-9._-]{1,64}$"}
PEER_ID = {"type": "string", "pattern": "^lb1[a-z2-7]{50,60}$"}
CONCEPT = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,127}$"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: tuple[str, ...] = (), **properties: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        out["required"] = list(required)
    return out


STRING = {"type": "string"}
NUMBER = {"type": "number"}
NULLABLE_STRING = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": _obj(
        ("error", "detail"),
        error={"type": "string", "description": "A stable code to branch on."},
        detail={"type": "string", "description": "What was wrong and what to do."},
    ),
    "Challenge": _obj(
        ("challenge", "difficulty"),
        challenge=STRING,
        difficulty={"type": "integer"},
        algorithm=STRING,
        expires_at=NUMBER,
    ),
    "Register": _obj(
        ("username", "password", "challenge", "answer"),
        username={"type": "string", "pattern": "^[a-z][a-z0-9._-]{2,31}$"},
        password={"type": "string", "minLength": 10, "maxLength": 1024},
        challenge=STRING,
        answer={"type": "string", "maxLength": 64},
        email=STRING,
    ),
    "Account": _obj(
        ("username", "role"),
        username=STRING,
        role={"enum": ["user", "admin"]},
        created_at=NUMBER,
        email=NULLABLE_STRING,
        email_verified={"type": "boolean"},
    ),
    "Login": _obj(
        ("username", "password"),
        username=STRING,
        password=STRING,
        scope={"enum": ["user", "admin"], "default": "user"},
        ttl_s={"type": "number", "minimum": 60},
        label={"type": "string", "maxLength": 100},
    ),
    "Token": _obj(
        ("token", "scope"),
        token=STRING,
        token_type=STRING,
        token_id=STRING,
        scope={"enum": ["user", "admin", "gpu-host"]},
        username=STRING,
        expires_at=NUMBER,
    ),
    "Job": _obj(
        ("job_id", "owner", "task", "state"),
        job_id=JOB_ID,
        owner=STRING,
        task=STRING,
        state={
            "enum": ["queued", "dispatched", "running", "done", "faulted", "cancelled", "expired"]
        },
        progress=NUMBER,
        progress_message=STRING,
        attempts={"type": "integer"},
        faults={"type": "array", "items": STRING},
        results={"type": "array", "items": STRING},
        error=NULLABLE_STRING,
        host=NULLABLE_STRING,
        submitted_at=NUMBER,
        finished_at={"type": ["number", "null"]},
        queue_position={"type": ["integer", "null"]},
    ),
    "JobRequest": _obj(
        ("task",),
        task={"type": "string", "description": "A task name from GET /api/v1/tasks."},
        inputs={
            "type": "object",
            "description": "Values by input name, checked against the task's schema. An image "
            'is a data URL (\'data:image/png;base64,…\') or {"blob": "sha256-…"} of an image '
            "stored here.",
        },
        host={"type": "string", "description": "A GPU host's peer id, to choose it."},
    ),
    "Result": _obj(
        ("outputs",),
        outputs={"type": "object", "additionalProperties": STRING},
        files={"type": "array", "items": {"type": "object"}},
    ),
    "Reason": _obj(reason={"type": "string", "maxLength": 500}),
    "Adapter": _obj(
        ("adapter",),
        adapter={"type": "string", "pattern": "^sha256-[0-9a-f]{64}$"},
        weight={"type": "number", "exclusiveMinimum": 0},
        base={"type": ["string", "null"]},
        metadata={"type": "object"},
    ),
    "Trust": _obj(("trust",), trust={"type": "number", "minimum": 0, "maximum": 1000}),
    "Role": _obj(("role",), role={"enum": ["user", "admin"]}),
    "HostTokenRequest": _obj(label={"type": "string", "maxLength": 100}, ttl_s=NUMBER),
    "Label": _obj(label={"type": "string", "maxLength": 100}),
    "PasswordChange": _obj(
        ("current_password", "new_password"), current_password=STRING, new_password=STRING
    ),
    "EmailCode": _obj(("code",), code=STRING),
    "HordeGenerate": _obj(
        ("prompt",),
        prompt=STRING,
        params={"type": "object"},
        models={"type": "array", "items": STRING},
        n={"type": "integer", "minimum": 1, "maximum": 8},
    ),
    "Anything": {"type": "object"},
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One route: what it does, who may call it, what it takes and gives."""

    method: str
    path: str
    summary: str
    tag: str
    auth: str = "none"
    """none, user, admin, host, account (user or admin token), horde."""
    body: str | None = None
    ok: int = 200
    response: str | None = "Anything"
    media: str = "application/json"
    errors: tuple[int, ...] = ()
    query: tuple[tuple[str, dict[str, Any]], ...] = ()
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


def _ops() -> list[Operation]:
    job = {"job_id": JOB_ID}
    user = {"user": USER}
    peer = {"peer_id": PEER_ID}
    concept = {"concept": CONCEPT}
    R = "registry"
    A = "accounts"
    J = "jobs"
    D = "admin"
    N = "node"
    H = "horde"
    LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000}
    return [
        Operation("GET", "/api/v1/status", "This node: peer id, network, roles, uptime.", N),
        Operation("GET", "/api/v1/peers", "Peers known from gossip or linked now.", N),
        Operation(
            "GET",
            "/api/v1/peers/{peer_id}",
            "One peer, with its tasks and score.",
            N,
            errors=(400, 404),
            params=peer,
        ),
        Operation(
            "GET",
            "/api/v1/registry",
            "The model registry: Raft members, each concept's global model, recent merges.",
            R,
            errors=(404, 503),
        ),
        Operation(
            "GET",
            "/api/v1/registry/concepts/{concept}",
            "One concept: its global model, version and pending adapters.",
            R,
            errors=(400, 404, 503),
            params=concept,
        ),
        Operation(
            "GET",
            "/api/v1/registry/concepts/{concept}/history",
            "A concept's adapters and merges, oldest first, paged by seq.",
            R,
            errors=(400, 404, 503),
            params=concept,
            query=(("after", {"type": "integer", "minimum": 0}), ("limit", LIMIT)),
        ),
        Operation(
            "POST",
            "/api/v1/registry/concepts/{concept}/adapters",
            "Offer an adapter blob for a concept (fine-tune jobs do this themselves).",
            R,
            auth="admin",
            body="Adapter",
            ok=201,
            errors=(400, 409, 503),
            params=concept,
        ),
        Operation(
            "POST",
            "/api/v1/registry/concepts/{concept}/merge",
            "Merge the concept's pending adapters now (on the registry leader).",
            R,
            auth="admin",
            errors=(409, 503),
            params=concept,
        ),
        Operation(
            "POST",
            "/api/v1/registry/members/{peer_id}",
            "Add one registry server to the Raft group (on the leader).",
            R,
            auth="admin",
            errors=(400, 409, 503),
            params=peer,
        ),
        Operation(
            "DELETE",
            "/api/v1/registry/members/{peer_id}",
            "Remove one registry server from the Raft group (on the leader).",
            R,
            auth="admin",
            errors=(400, 409, 503),
            params=peer,
        ),
        Operation("GET", "/healthz", "Liveness for load balancers.", N),
        Operation("GET", "/metrics", "Prometheus metrics.", N, response=None, media="text/plain"),
        Operation(
            "GET",
            "/api/v1/accounts/challenge",
            "A proof-of-work challenge for registering.",
            A,
            response="Challenge",
        ),
        Operation(
            "POST",
            "/api/v1/accounts",
            "Register (username, password, solved challenge).",
            A,
            body="Register",
            ok=201,
            response="Account",
            errors=(400, 409, 429),
        ),
        Operation(
            "POST",
            "/api/v1/accounts/verify-email",
            "Confirm an email address with its code.",
            A,
            body="EmailCode",
            response="Account",
            errors=(400,),
        ),
        Operation(
            "POST",
            "/api/v1/auth/login",
            "Log in: a bearer token of scope user or admin.",
            A,
            body="Login",
            response="Token",
            errors=(400, 401, 403, 429),
        ),
        Operation(
            "POST",
            "/api/v1/auth/logout",
            "Revoke the token of this request.",
            A,
            auth="account",
            ok=204,
            response=None,
            errors=(401,),
        ),
        Operation(
            "POST",
            "/api/v1/auth/logout-all",
            "Revoke every token of this account.",
            A,
            auth="account",
            ok=204,
            response=None,
            errors=(401,),
        ),
        Operation(
            "GET",
            "/api/v1/account",
            "My account, trust included.",
            A,
            auth="account",
            response="Account",
            errors=(401,),
        ),
        Operation(
            "POST",
            "/api/v1/account/password",
            "Change my password (logs out everywhere).",
            A,
            auth="account",
            body="PasswordChange",
            ok=204,
            response=None,
            errors=(400, 401),
        ),
        Operation(
            "GET",
            "/api/v1/account/tokens",
            "My live tokens (ids, never the tokens).",
            A,
            auth="account",
            errors=(401,),
        ),
        Operation(
            "DELETE",
            "/api/v1/account/tokens/{token_id}",
            "Revoke one of my tokens.",
            A,
            auth="account",
            ok=204,
            response=None,
            errors=(401, 404),
            params={"token_id": {"type": "string", "maxLength": 64}},
        ),
        Operation(
            "POST",
            "/api/v1/account/api-keys",
            "Create an API key (for tools; the Horde's apikey).",
            A,
            auth="account",
            body="Label",
            ok=201,
            errors=(400, 401),
        ),
        Operation(
            "GET",
            "/api/v1/trust/{user}",
            "A user's trust (yours, or anyone's for admins).",
            A,
            auth="account",
            errors=(400, 401, 403),
            params=user,
        ),
        Operation("GET", "/api/v1/tasks", "Tasks on offer, their schemas and hosts.", J),
        Operation(
            "POST",
            "/api/v1/jobs",
            "Submit a job: JSON, or multipart with a 'request' part and image files.",
            J,
            auth="user",
            body="JobRequest",
            ok=201,
            response="Job",
            errors=(400, 401, 403, 404, 411, 413, 415, 422, 429),
        ),
        Operation(
            "GET",
            "/api/v1/jobs",
            "My jobs, newest first.",
            J,
            auth="user",
            errors=(400, 401),
            query=(
                (
                    "state",
                    {
                        "enum": [
                            "queued",
                            "dispatched",
                            "running",
                            "done",
                            "faulted",
                            "cancelled",
                            "expired",
                        ]
                    },
                ),
                ("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
            ),
        ),
        Operation(
            "GET",
            "/api/v1/jobs/{job_id}",
            "One of my jobs.",
            J,
            auth="user",
            response="Job",
            errors=(401, 404),
            params=job,
        ),
        Operation(
            "POST",
            "/api/v1/jobs/{job_id}/cancel",
            "Cancel one of my jobs.",
            J,
            auth="user",
            response="Job",
            errors=(401, 404),
            params=job,
        ),
        Operation(
            "GET",
            "/api/v1/jobs/{job_id}/result",
            "A done job's outputs (base64) and files.",
            J,
            auth="user",
            response="Result",
            errors=(401, 404, 409),
            params=job,
        ),
        Operation(
            "GET",
            "/api/v1/jobs/{job_id}/outputs/{index}",
            "One output as a file.",
            J,
            auth="user",
            response=None,
            media="application/octet-stream",
            errors=(401, 404, 409),
            params={**job, "index": {"type": "integer", "minimum": 0}},
        ),
        Operation(
            "GET", "/api/v1/admin/status", "Node, jobs, hosts and accounts.", D, auth="admin"
        ),
        Operation("GET", "/api/v1/admin/users", "Every user.", D, auth="admin"),
        Operation(
            "GET",
            "/api/v1/admin/users/{user}",
            "One user.",
            D,
            auth="admin",
            params=user,
            errors=(400,),
        ),
        Operation(
            "POST",
            "/api/v1/admin/users/{user}/suspend",
            "Suspend a user.",
            D,
            auth="admin",
            body="Reason",
            params=user,
            errors=(400,),
        ),
        Operation(
            "POST",
            "/api/v1/admin/users/{user}/restore",
            "Lift a suspension.",
            D,
            auth="admin",
            params=user,
            errors=(400,),
        ),
        Operation(
            "POST",
            "/api/v1/admin/hosts/{peer_id}/drain",
            "Give a GPU host no new jobs; what it runs finishes.",
            D,
            auth="admin",
            errors=(400, 404),
            params=peer,
        ),
        Operation(
            "POST",
            "/api/v1/admin/hosts/{peer_id}/resume",
            "Give a drained GPU host jobs again.",
            D,
            auth="admin",
            errors=(400, 404),
            params=peer,
        ),
        Operation(
            "POST",
            "/api/v1/admin/users/{user}/trust",
            "Set a user's trust.",
            D,
            auth="admin",
            body="Trust",
            params=user,
            errors=(400,),
        ),
        Operation(
            "POST",
            "/api/v1/admin/users/{user}/role",
            "Make an account admin or user.",
            D,
            auth="admin",
            body="Role",
            params=user,
            errors=(400, 404),
        ),
        Operation(
            "POST",
            "/api/v1/admin/users/{user}/revoke-tokens",
            "Log a user out everywhere.",
            D,
            auth="admin",
            params=user,
            errors=(400, 404),
        ),
        Operation(
            "GET", "/api/v1/admin/peers", "Peers, scores, block/allow list.", D, auth="admin"
        ),
        Operation(
            "POST",
            "/api/v1/admin/peers/{peer_id}/block",
            "Block (defederate) a peer.",
            D,
            auth="admin",
            body="Reason",
            params=peer,
            errors=(400,),
        ),
        Operation(
            "POST",
            "/api/v1/admin/peers/{peer_id}/allow",
            "Allow a peer.",
            D,
            auth="admin",
            body="Reason",
            params=peer,
            errors=(400,),
        ),
        Operation(
            "POST",
            "/api/v1/admin/peers/{peer_id}/unblock",
            "Forget a block or allow.",
            D,
            auth="admin",
            params=peer,
            errors=(400,),
        ),
        Operation(
            "GET",
            "/api/v1/admin/jobs",
            "Every job on this node, newest first.",
            D,
            auth="admin",
            errors=(400,),
            query=(
                ("state", {"enum": JOB_STATES}),
                ("user", USER),
                ("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
            ),
        ),
        Operation(
            "POST",
            "/api/v1/admin/jobs/{job_id}/cancel",
            "Cancel anyone's job.",
            D,
            auth="admin",
            response="Job",
            errors=(404,),
            params=job,
        ),
        Operation("GET", "/api/v1/admin/hosts", "GPU hosts, slots and backlog.", D, auth="admin"),
        Operation("GET", "/api/v1/admin/queues", "Each host's queue, best first.", D, auth="admin"),
        Operation(
            "POST",
            "/api/v1/admin/host-tokens",
            "Issue a gpu-host token.",
            D,
            auth="admin",
            body="HostTokenRequest",
            ok=201,
            response="Token",
            errors=(400,),
        ),
        Operation(
            "GET",
            "/api/v1/host/whoami",
            "What a gpu-host token says.",
            "hosts",
            auth="host",
        ),
        Operation(
            "POST",
            "/api/v2/generate/async",
            "Horde: submit a text-to-image request.",
            H,
            auth="horde",
            body="HordeGenerate",
            ok=202,
            errors=(400, 401, 403, 404, 429),
        ),
        Operation(
            "GET",
            "/api/v2/generate/check/{id}",
            "Horde: progress of a request.",
            H,
            errors=(404,),
            params={"id": {"type": "string", "maxLength": 64}},
        ),
        Operation(
            "GET",
            "/api/v2/generate/status/{id}",
            "Horde: progress and images.",
            H,
            errors=(404,),
            params={"id": {"type": "string", "maxLength": 64}},
        ),
        Operation(
            "DELETE",
            "/api/v2/generate/status/{id}",
            "Horde: cancel a request.",
            H,
            errors=(404,),
            params={"id": {"type": "string", "maxLength": 64}},
        ),
        Operation("GET", "/api/v2/status/models", "Horde: models (tasks) on offer.", H),
        Operation(
            "GET",
            "/api/v2/find_user",
            "Horde: the user of an apikey.",
            H,
            auth="horde",
            errors=(401,),
        ),
    ]


OPERATIONS: tuple[Operation, ...] = tuple(_ops())

_SECURITY = {
    "user": [{"bearer": []}],
    "admin": [{"bearer": []}],
    "host": [{"bearer": []}],
    "account": [{"bearer": []}],
    "horde": [{"apikey": []}],
}
_AUTH_NOTE = {
    "user": "Needs a user-scope token (or the operator token).",
    "admin": "Needs an admin-scope token (or the operator token); a user token gets 403.",
    "host": "Needs a gpu-host token.",
    "account": "Needs a user- or admin-scope token.",
    "horde": "Needs the Horde `apikey` header holding a Lightbox API key (or user token).",
}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        responses: dict[str, Any] = {}
        if op.response is not None:
            responses[str(op.ok)] = {
                "description": "OK",
                "content": {op.media: {"schema": _ref(op.response)}},
            }
        elif op.ok == 204:
            responses["204"] = {"description": "Done"}
        else:
            responses[str(op.ok)] = {"description": "OK", "content": {op.media: {"schema": {}}}}
        codes = set(op.errors) | ({401, 403} if op.auth != "none" else set())
        for code in sorted(codes):
            responses[str(code)] = {
                "description": "Refused; `detail` says why and what to do.",
                "content": {"application/json": {"schema": _ref("Error")}},
            }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": schema}
            for name, schema in op.params.items()
        ] + [
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in op.query
        ]
        entry: dict[str, Any] = {
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": (op.method + op.path)
            .lower()
            .replace("/", "_")
            .strip("_")
            .replace("{", "")
            .replace("}", "")
            .replace("-", "_"),
            "responses": responses,
        }
        if op.auth != "none":
            entry["security"] = _SECURITY[op.auth]
            entry["description"] = _AUTH_NOTE[op.auth]
        if parameters:
            entry["parameters"] = parameters
        if op.body:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(op.body)}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Lightbox queue node API",
            "version": __version__,
            "description": "Accounts, jobs with live progress (WebSocket "
            "/api/v1/jobs/{job_id}/events), administration, metrics, and an AI Horde v2 "
            'subset. Errors are {"error": code, "detail": what to fix}.',
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apikey": {"type": "apiKey", "in": "header", "name": "apikey"},
            },
        },
    }


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lightbox API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem 1.5rem;
color:#222}
h2{margin-top:2rem;text-transform:capitalize;border-bottom:1px solid #ddd}
details{border:1px solid #e3e3e3;border-radius:6px;margin:.4rem 0;padding:.3rem .6rem}
summary{cursor:pointer}code,textarea,pre{font:13px ui-monospace,monospace}
.m{display:inline-block;width:4.5rem;font-weight:600}.GET{color:#2a7}.POST{color:#27a}
.DELETE{color:#c33}textarea{width:100%;height:6rem}pre{background:#f6f6f6;padding:.5rem;
overflow:auto;max-height:20rem}input{width:100%}
</style></head><body>
<h1>Lightbox API</h1>
<p>The machine-readable document is <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.
Paste a token (from <code>POST /api/v1/auth/login</code>) to try calls from this page.</p>
<label>Bearer token <input id="token" type="password" autocomplete="off"></label>
<div id="ops"></div>
<script type="module">
const doc = await (await fetch("/api/v1/openapi.json")).json();
const token = document.getElementById("token");
token.value = sessionStorage.getItem("lightbox-token") || "";
token.onchange = () => sessionStorage.setItem("lightbox-token", token.value);
const byTag = {};
for (const [path, methods] of Object.entries(doc.paths))
  for (const [method, op] of Object.entries(methods))
    (byTag[op.tags[0]] ||= []).push({path, method: method.toUpperCase(), op});
const root = document.getElementById("ops");
for (const [tag, ops] of Object.entries(byTag)) {
  const h = document.createElement("h2"); h.textContent = tag; root.append(h);
  for (const {path, method, op} of ops) {
    const d = document.createElement("details");
    const s = document.createElement("summary");
    s.innerHTML = `<span class="m ${method}">${method}</span><code></code> `;
    s.querySelector("code").textContent = path;
    s.append(op.summary); d.append(s);
    if (op.description) {
      const p = document.createElement("p"); p.textContent = op.description; d.append(p);
    }
    const url = document.createElement("input"); url.value = path; d.append(url);
    const body = document.createElement("textarea");
    if (op.requestBody) { body.placeholder = "JSON body"; d.append(body); }
    const go = document.createElement("button"); go.textContent = "Send"; d.append(go);
    const out = document.createElement("pre"); d.append(out);
    go.onclick = async () => {
      const headers = {};
      if (token.value) {
        headers.Authorization = "Bearer " + token.value; headers.apikey = token.value;
      }
      if (op.requestBody) headers["Content-Type"] = "application/json";
      const payload = op.requestBody ? body.value || "{}" : undefined;
      const r = await fetch(url.value, {method, headers, body: payload});
      out.textContent = r.status + " " + r.statusText + "\\n" + await r.text();
    };
    root.append(d);
  }
}
</script></body></html>
"""


class DocsRoutes:
    """`/api/v1/openapi.json` and `/api/v1/docs`."""

    def __init__(self) -> None:
        self.document = openapi_document()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/openapi.json", self.openapi),
            Route("/api/v1/docs", self.docs),
        ]

    async def openapi(self, request: Request) -> JSONResponse:
        return JSONResponse(self.document)

    async def docs(self, request: Request) -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE)
