"""The dashboard's only door to a node: one async method per HTTP or WebSocket endpoint.

Every URL, header, JSON layout and status code the dashboard depends on lives in this
module, so an API change touches nothing else. Answers come back as the frozen values of
`lightbox_node.tui.models`; failures as one `NodeError` hierarchy:

* `NodeUnreachable`: no answer (refused, reset, timed out): the node is down or slow;
* `NotAvailable`: the node answers 404 for the endpoint itself (an older node, or a role it
  does not have): the screen says so and carries on;
* `Refused`: the node understood and said no (bad input, suspended user, wrong token, …),
  with the node's own explanation.

Runs on asyncio (Textual's loop): HTTP through httpx, whose transport tests can replace
with `httpx.MockTransport`; WebSockets through wsproto over asyncio streams.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import wsproto
import wsproto.connection
import wsproto.events as ws_events
import wsproto.utilities
from lightbox_node.tui.models import (
    Choice,
    ConceptDetail,
    ConceptModel,
    Host,
    InputSpec,
    Job,
    JobList,
    JobResult,
    MetricSamples,
    NodeCounters,
    NodeEvent,
    NodeStatus,
    OutputSpec,
    Peer,
    PeerRecord,
    QueuedJob,
    QueueView,
    Registry,
    RegistryCommit,
    RegistryEvent,
    RegistryMember,
    TaskHost,
    TaskSchema,
    UserTrust,
)

from lightbox_node.errors import LightboxError

API = "/api/v1"
DEFAULT_USER = "operator"
DEFAULT_TIMEOUT_S = 5.0
MAX_JOBS_LISTED = 500
# 404 bodies that mean "no such endpoint here" rather than "no such thing".
_MISSING_ENDPOINT_CODES = frozenset({"not_found", "no_queue_role", "no_accounts", "no_registry"})


class NodeError(LightboxError):
    """Something went wrong talking to a node; the message says what, for a person."""


class NodeUnreachable(NodeError):
    """The node did not answer: it is down, restarting, unreachable or too slow."""


class NotAvailable(NodeError):
    """The node has no such endpoint (HTTP 404): an older API, or a role it lacks."""

    def __init__(self, what: str, status: int | None = 404, detail: str = "") -> None:
        self.what = what
        self.status = status
        self.detail = detail
        code = f" (HTTP {status})" if status else ""
        super().__init__(f"{what} is not available on this node{code}")


class Refused(NodeError):
    """The node answered with an error: `status`, its `code` and its `detail`."""

    def __init__(
        self, status: int, code: str, detail: str, problems: list[dict[str, Any]] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.problems = problems or []
        super().__init__(f"{detail or code} (HTTP {status})")


class NodeClient:
    """A node's HTTP API and WebSockets, as one object per dashboard.

    `token` is the operator's token (`DATA_DIR/api.token`) or an account's login token; with
    the operator token, `user` is the local user the dashboard acts for on user routes (the
    node's `X-Lightbox-User`), and `acting=` on a call acts for another (a job's owner).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        user: str = DEFAULT_USER,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.user = user
        self.timeout_s = timeout_s
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    # -- plumbing ------------------------------------------------------------------------------

    def _headers(self, acting: str | None = None) -> dict[str, str]:
        headers = {"X-Lightbox-User": acting or self.user, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    @property
    def http(self) -> httpx.AsyncClient:
        # Made on first use, inside the running loop that will use it.
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 3.0)),
                transport=self._transport,
                follow_redirects=False,
            )
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        acting: str | None = None,
        raw: bool = False,
    ) -> Any:
        """One request; the JSON answer (or the text with `raw`), or a `NodeError`."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self.http.request(
                method,
                path,
                json=body if method != "GET" else None,
                params=query or None,
                headers=self._headers(acting),
            )
        except httpx.TimeoutException:
            raise NodeUnreachable(
                f"{self.base_url} did not answer within {self.timeout_s:g} s ({what})"
            ) from None
        except (httpx.TransportError, OSError) as exc:
            reason = str(exc) or type(exc).__name__
            raise NodeUnreachable(f"cannot reach {self.base_url}: {reason}") from None
        if response.status_code >= 400:
            raise _error_of(response, what)
        if raw:
            return response.text
        try:
            return response.json()
        except ValueError:
            raise Refused(
                response.status_code, "bad_answer", f"{what}: the node's answer is not JSON"
            ) from None

    async def _get(self, path: str, what: str, **kw: Any) -> Any:
        return await self._call("GET", API + path, what, **kw)

    async def _post(self, path: str, what: str, body: Any = None, **kw: Any) -> Any:
        return await self._call("POST", API + path, what, body={} if body is None else body, **kw)

    # -- the node ------------------------------------------------------------------------------

    async def status(self) -> NodeStatus:
        """`GET /api/v1/status`: who the node is; any token, or none."""
        return parse_status(await self._get("/status", "node status"))

    async def counters(self) -> NodeCounters:
        """`GET /api/v1/admin/status`: jobs by state, scheduler events (admin)."""
        data = await self._get("/admin/status", "node counters")
        return parse_counters(data)

    async def metrics(self) -> MetricSamples:
        """`GET /metrics`: the Prometheus exposition, parsed."""
        text = await self._call("GET", "/metrics", "metrics", raw=True)
        return parse_metrics(text)

    # -- peers ---------------------------------------------------------------------------------

    async def peers(self) -> list[Peer]:
        data = await self._get("/peers", "the peer list")
        return [parse_peer(row) for row in _list(data, "peers")]

    async def peer(self, peer_id: str) -> Peer:
        """One peer with its capability record's tasks and its score components."""
        return parse_peer(await self._get(f"/peers/{quote(peer_id)}", "peer details"))

    async def block_peer(self, peer_id: str, reason: str = "") -> None:
        path = f"/admin/peers/{quote(peer_id)}/block"
        await self._post(path, "blocking peers", {"reason": reason})

    async def allow_peer(self, peer_id: str, reason: str = "") -> None:
        path = f"/admin/peers/{quote(peer_id)}/allow"
        await self._post(path, "allowing peers", {"reason": reason})

    async def unblock_peer(self, peer_id: str) -> None:
        await self._post(f"/admin/peers/{quote(peer_id)}/unblock", "unblocking peers")

    # -- tasks, hosts, queues ------------------------------------------------------------------

    async def tasks(self) -> list[TaskSchema]:
        """Tasks on offer: those of attached hosts, then those only federated hosts run."""
        data = await self._get("/tasks", "the task list")
        tasks = [parse_task(t) for t in _list(data, "tasks")]
        tasks += [parse_task(t, federated_only=True) for t in _list(data, "federated_only")]
        return tasks

    async def hosts(self) -> list[Host]:
        """`GET /api/v1/admin/hosts`: the GPU hosts this queue node dispatches to (admin)."""
        data = await self._get("/admin/hosts", "the GPU host list")
        return [parse_host(h) for h in _list(data, "hosts")]

    async def queues(self) -> QueueView:
        data = await self._get("/admin/queues", "the host queues")
        queues = {}
        for entry in _list(data, "queues"):
            queues[str(entry.get("host", ""))] = tuple(
                parse_queued(j) for j in entry.get("jobs") or []
            )
        unplaced = tuple(parse_queued(j) for j in _list(data, "unplaced"))
        return QueueView(queues, unplaced)

    async def drain_host(self, peer_id: str) -> None:
        """Stop giving the host new jobs (it finishes what it has)."""
        await self._post(f"/admin/hosts/{quote(peer_id)}/drain", "draining hosts")

    async def resume_host(self, peer_id: str) -> None:
        await self._post(f"/admin/hosts/{quote(peer_id)}/resume", "resuming hosts")

    # -- jobs ----------------------------------------------------------------------------------

    async def jobs(
        self, *, state: str | None = None, user: str | None = None, limit: int = MAX_JOBS_LISTED
    ) -> JobList:
        """Jobs, newest first, filtered by state and owner.

        Node-wide from `GET /api/v1/admin/jobs` where the node has it; otherwise the jobs of
        one user (the filter's, else the dashboard's) from `GET /api/v1/jobs`, which the
        operator token may read for any local user.
        """
        params = {"state": state, "user": user, "limit": limit}
        try:
            data = await self._get("/admin/jobs", "the node-wide job list", params=params)
        except NotAvailable:
            owner = user or self.user
            data = await self._get(
                "/jobs",
                "the job list",
                params={"state": state, "limit": min(limit, MAX_JOBS_LISTED)},
                acting=owner,
            )
            jobs = tuple(parse_job(j) for j in _list(data, "jobs"))
            scope = f"jobs of {owner} only (no node-wide job list on this node: HTTP 404)"
            return JobList(jobs, node_wide=False, scope=scope)
        return JobList(tuple(parse_job(j) for j in _list(data, "jobs")), node_wide=True)

    async def job(self, job_id: str, owner: str | None = None) -> Job:
        return parse_job(await self._get(f"/jobs/{quote(job_id)}", "the job", acting=owner))

    async def submit_job(
        self,
        task: str,
        inputs: Mapping[str, Any],
        *,
        host: str | None = None,
        user: str | None = None,
    ) -> Job:
        """Submit a job; images in `inputs` go inline as data URLs (see `image_data_url`)."""
        body: dict[str, Any] = {"task": task, "inputs": dict(inputs)}
        if host:
            body["host"] = host
        return parse_job(await self._post("/jobs", "submitting jobs", body, acting=user))

    async def cancel_job(self, job_id: str, owner: str | None = None) -> Job:
        """Cancel as an administrator where the node allows it, else as the job's owner."""
        try:
            data = await self._post(f"/admin/jobs/{quote(job_id)}/cancel", "admin job cancel")
        except NotAvailable:
            path = f"/jobs/{quote(job_id)}/cancel"
            data = await self._post(path, "cancelling jobs", acting=owner)
        return parse_job(data)

    async def job_result(self, job_id: str, owner: str | None = None) -> JobResult:
        data = await self._get(f"/jobs/{quote(job_id)}/result", "job results", acting=owner)
        media = {
            str(f.get("name")): str(f.get("media_type") or "")
            for f in data.get("files") or []
            if isinstance(f, dict)
        }
        outputs = tuple(
            (str(name), base64.b64decode(text), media.get(str(name), ""))
            for name, text in (data.get("outputs") or {}).items()
        )
        return JobResult(job_id, outputs)

    @contextlib.asynccontextmanager
    async def job_events(self, job_id: str, owner: str | None = None) -> AsyncIterator[Any]:
        """`WS /api/v1/jobs/{id}/events`: an async iterator of `Job` at every change, ending
        after the final state. `NotAvailable` if the node has no such WebSocket."""
        socket = await self._websocket(f"{API}/jobs/{quote(job_id)}/events", "job events", owner)
        try:
            yield _job_messages(socket)
        finally:
            await socket.aclose()

    @contextlib.asynccontextmanager
    async def node_events(self) -> AsyncIterator[Any]:
        """`WS /api/v1/events`: an async iterator of `NodeEvent` (what changed on the node)."""
        socket = await self._websocket(f"{API}/events", "the node events stream", None)
        try:
            yield _event_messages(socket)
        finally:
            await socket.aclose()

    async def _websocket(self, path: str, what: str, acting: str | None) -> _WebSocket:
        return await _WebSocket.connect(
            self.base_url + path, self._headers(acting), what, timeout_s=self.timeout_s
        )

    # -- users and trust -----------------------------------------------------------------------

    async def users(self) -> list[UserTrust]:
        """`GET /api/v1/admin/users`: every account and every user the ledger knows (admin)."""
        data = await self._get("/admin/users", "the user list")
        return [parse_user(u) for u in _list(data, "users")]

    async def trust(self, user: str) -> UserTrust:
        """One user's trust: the admin view where there is one, else the public one."""
        try:
            return parse_user(await self._get(f"/admin/users/{quote(user)}", "the user"))
        except NotAvailable:
            return parse_user(await self._get(f"/trust/{quote(user)}", "trust scores"))

    async def suspend_user(self, user: str, reason: str = "") -> UserTrust:
        path = f"/admin/users/{quote(user)}/suspend"
        return parse_user(await self._post(path, "suspending users", {"reason": reason}))

    async def restore_user(self, user: str) -> UserTrust:
        path = f"/admin/users/{quote(user)}/restore"
        return parse_user(await self._post(path, "restoring users"))

    async def set_trust(self, user: str, trust: float) -> UserTrust:
        path = f"/admin/users/{quote(user)}/trust"
        return parse_user(await self._post(path, "setting trust", {"trust": trust}))

    # -- model registry ------------------------------------------------------------------------

    async def registry(self) -> Registry:
        """`GET /api/v1/registry`: Raft members, each concept's global model, recent commits."""
        return parse_registry(await self._get("/registry", "The model registry"))

    async def concept(self, concept: str) -> ConceptDetail:
        """`GET /api/v1/registry/concepts/{concept}`: its model, version, adapters waiting."""
        path = f"/registry/concepts/{quote(concept, safe='')}"
        return parse_concept(await self._get(path, f"concept {concept}"))

    async def concept_history(
        self, concept: str, after: int | None = None, limit: int | None = None
    ) -> list[RegistryEvent]:
        """`GET /api/v1/registry/concepts/{concept}/history`: events with seq > `after`,
        oldest first, at most `limit` (the node's page size when None)."""
        path = f"/registry/concepts/{quote(concept, safe='')}/history"
        data = await self._get(
            path, f"the history of {concept}", params={"after": after, "limit": limit}
        )
        return [parse_event(e) for e in _list(data, "events")]


# -- errors ------------------------------------------------------------------------------------


def _error_of(response: httpx.Response, what: str) -> NodeError:
    try:
        body = response.json()
    except ValueError:
        body = None
    code = str(body.get("error", "")) if isinstance(body, dict) else ""
    detail = str(body.get("detail", "")) if isinstance(body, dict) else ""
    status = response.status_code
    if status in (404, 405) and (code in _MISSING_ENDPOINT_CODES or not code):
        return NotAvailable(what[:1].upper() + what[1:], status, detail)
    if status in (401, 403) and not detail:
        detail = "the token was refused; pass the node's api.token with --token"
    problems = body.get("problems") if isinstance(body, dict) else None
    return Refused(status, code or "error", detail, problems if isinstance(problems, list) else [])


# -- parsing: the only place that knows the API's JSON layouts ---------------------------------


def _list(data: Any, key: str) -> list[dict[str, Any]]:
    items = data.get(key) if isinstance(data, dict) else None
    return [item for item in items or [] if isinstance(item, dict)]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _strs(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def _ms(value: Any) -> float | None:
    number = _num(value)
    return None if number is None else number / 1000


def parse_status(data: dict[str, Any]) -> NodeStatus:
    node = data.get("node", data)
    return NodeStatus(
        peer_id=str(node.get("peer_id", "")),
        network=str(node.get("network", "")),
        roles=_strs(node.get("roles")),
        version=str(node.get("version", "")),
        uptime_s=_num(node.get("uptime_s")) or 0.0,
        started_at=_num(node.get("started_at")),
    )


def parse_counters(data: dict[str, Any]) -> NodeCounters:
    jobs = data.get("jobs") or {}
    peers = data.get("peers") or {}
    return NodeCounters(
        jobs_by_state={str(k): int(v) for k, v in (jobs.get("by_state") or {}).items()},
        events={str(k): int(v) for k, v in (jobs.get("counters") or {}).items()},
        hosts=_int(data.get("hosts")),
        peers_known=_int(peers.get("known")),
        peers_linked=_int(peers.get("linked")),
        accounts=_int(data.get("accounts")),
    )


def parse_metrics(text: str) -> MetricSamples:
    """The Prometheus text format's samples (comments and malformed lines skipped)."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, _, value_text = line.rpartition(" ")
        labels: list[tuple[str, str]] = []
        if "{" in head:
            name, _, rest = head.partition("{")
            for pair in _split_labels(rest.rstrip("}")):
                key, _, raw = pair.partition("=")
                labels.append((key.strip(), _label_value(raw.strip())))
        else:
            name = head
        try:
            value = float(value_text)
        except ValueError:
            continue
        samples[(name.strip(), tuple(sorted(labels)))] = value
    return MetricSamples(samples)


def _label_value(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = raw[1:-1]
    out, escaped = [], False
    for char in raw:
        if escaped:
            out.append("\n" if char == "n" else char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out)


def _split_labels(text: str) -> list[str]:
    parts, current, quoted, escaped = [], "", False, False
    for char in text:
        if escaped:
            current += char
            escaped = False
        elif char == "\\":
            current += char
            escaped = True
        elif char == '"':
            quoted = not quoted
            current += char
        elif char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    if current:
        parts.append(current)
    return parts


def parse_input(data: dict[str, Any]) -> InputSpec:
    options = tuple(
        Choice(o.get("value"), str(o.get("label", o.get("value"))))
        for o in data.get("options") or []
        if isinstance(o, dict)
    )
    return InputSpec(
        type=str(data.get("type", "text")),
        name=str(data.get("name", "")),
        label=str(data.get("label") or data.get("name", "")),
        help=str(data.get("help", "")),
        required=bool(data.get("required", False)),
        default=data.get("default"),
        advanced=bool(data.get("advanced", False)),
        group=str(data.get("group", "main")),
        order=_int(data.get("order")) or 0,
        minimum=_num(data.get("min")),
        maximum=_num(data.get("max")),
        step=_num(data.get("step")),
        unit=str(data.get("unit", "")),
        options=options,
        multiline=bool(data.get("multiline", False)),
        placeholder=str(data.get("placeholder", "")),
        max_length=_int(data.get("max_length")),
        format=str(data.get("format") or ""),
    )


def parse_task(data: dict[str, Any], *, federated_only: bool = False) -> TaskSchema:
    groups = tuple(
        (str(g.get("name", "")), str(g.get("label", g.get("name", ""))))
        for g in data.get("groups") or []
        if isinstance(g, dict)
    )
    return TaskSchema(
        name=str(data.get("name", "")),
        title=str(data.get("title") or data.get("name", "")),
        description=str(data.get("description", "")),
        inputs=tuple(parse_input(i) for i in data.get("inputs") or [] if isinstance(i, dict)),
        outputs=tuple(
            OutputSpec(
                str(o.get("name", "")),
                str(o.get("type", "")),
                str(o.get("media_type", "")),
                str(o.get("description", "")),
            )
            for o in data.get("outputs") or []
            if isinstance(o, dict)
        ),
        groups=groups or (("main", "Settings"),),
        hosts=tuple(
            TaskHost(str(h.get("peer_id", "")), bool(h.get("attached")), _int(h.get("free_slots")))
            for h in data.get("hosts") or []
            if isinstance(h, dict)
        ),
        federated_only=federated_only,
    )


def parse_record(data: Any) -> PeerRecord | None:
    if not isinstance(data, dict):
        return None
    return PeerRecord(
        roles=_strs(data.get("roles")),
        addresses=_strs(data.get("addresses")),
        free_slots=_int(data.get("free_slots")),
        version=str(data.get("version", "")),
        task_names=_strs(data.get("task_names")),
        seq=_int(data.get("seq")),
        issued_at=_ms(data.get("issued_at_ms")),
        expires_at=_ms(data.get("expires_at_ms")),
        tasks=tuple(parse_task(t) for t in data.get("tasks") or [] if isinstance(t, dict)),
    )


def parse_peer(data: dict[str, Any]) -> Peer:
    record = parse_record(data.get("record"))
    last_seen = _num(data.get("last_seen"))
    if last_seen is None and record is not None:
        last_seen = record.issued_at
    components = data.get("score_components")
    return Peer(
        peer_id=str(data.get("peer_id", "")),
        linked=bool(data.get("linked", False)),
        address=str(data["address"]) if data.get("address") else None,
        liveness=str(data.get("liveness") or ""),
        score=_num(data.get("score")),
        record=record,
        last_seen=last_seen,
        score_components=components if isinstance(components, dict) else None,
    )


def parse_host(data: dict[str, Any]) -> Host:
    draining = data.get("draining")
    return Host(
        peer_id=str(data.get("peer_id", "")),
        online=bool(data.get("online", True)),
        tasks=_strs(data.get("tasks")),
        slots=_int(data.get("slots")),
        free_slots=_int(data.get("free_slots")),
        in_flight=_strs(data.get("in_flight")),
        queued=_int(data.get("queued")) or 0,
        queued_cost=_num(data.get("queued_cost")) or 0.0,
        seen_at=_num(data.get("seen_at")),
        draining=draining if isinstance(draining, bool) else None,
        faults=_int(data.get("faults")),
    )


def parse_queued(data: dict[str, Any]) -> QueuedJob:
    return QueuedJob(
        job_id=str(data.get("job_id", "")),
        owner=str(data.get("owner", "")),
        task=str(data.get("task", "")),
        priority=_num(data.get("priority")),
        cost=_num(data.get("cost")),
        submitted_at=_num(data.get("submitted_at")),
    )


def parse_job(data: dict[str, Any]) -> Job:
    return Job(
        job_id=str(data.get("job_id", "")),
        owner=str(data.get("owner", "")),
        task=str(data.get("task", "")),
        state=str(data.get("state", "")),
        progress=_num(data.get("progress")) or 0.0,
        progress_message=str(data.get("progress_message") or ""),
        attempts=_int(data.get("attempts")) or 0,
        faults=_strs(data.get("faults")),
        results=_strs(data.get("results")),
        error=str(data["error"]) if data.get("error") else None,
        host=str(data["host"]) if data.get("host") else None,
        submitted_at=_num(data.get("submitted_at")),
        finished_at=_num(data.get("finished_at")),
        queue_position=_int(data.get("queue_position")),
        priority=_num(data.get("priority")),
    )


def parse_user(data: dict[str, Any]) -> UserTrust:
    account = data.get("account") if isinstance(data.get("account"), dict) else {}
    return UserTrust(
        username=str(data.get("username") or data.get("user") or ""),
        trust=_num(data.get("trust")),
        suspended=bool(data.get("suspended", False)),
        recovery_eta_s=_num(data.get("recovery_eta_s")),
        active_jobs=_int(data.get("active_jobs")),
        reason=str(data.get("reason") or ""),
        role=str(account["role"]) if account and account.get("role") else None,
    )


def parse_registry(data: dict[str, Any]) -> Registry:
    return Registry(
        members=tuple(
            RegistryMember(
                str(m.get("peer_id", "")),
                str(m.get("role", "")),
                _int(m.get("term")),
                bool(m.get("leader", m.get("role") == "leader")),
            )
            for m in _list(data, "members")
        ),
        concepts=tuple(
            ConceptModel(
                str(c.get("concept", "")),
                str(c.get("model_id") or ""),
                _num(c.get("updated_at")),
                _int(c.get("version")),
                _int(c.get("pending_count")),
            )
            for c in _list(data, "concepts")
        ),
        commits=tuple(
            RegistryCommit(
                _int(c.get("index")),
                _int(c.get("term")),
                str(c.get("concept", "")),
                str(c.get("model_id", "")),
                _num(c.get("at")),
            )
            for c in _list(data, "commits")
        ),
    )


def parse_concept(data: dict[str, Any]) -> ConceptDetail:
    metadata = data.get("metadata")
    return ConceptDetail(
        concept=str(data.get("concept", "")),
        model_id=str(data.get("model") or ""),
        version=_int(data.get("version")),
        pending_count=_int(data.get("pending_count")),
        history_length=_int(data.get("history_length")),
        metadata=dict(metadata) if isinstance(metadata, dict) else {},
    )


def parse_event(data: dict[str, Any]) -> RegistryEvent:
    """A history event; `at` arrives in milliseconds."""
    metadata = data.get("metadata")
    return RegistryEvent(
        seq=_int(data.get("seq")),
        index=_int(data.get("index")),
        kind=str(data.get("kind", "")),
        by=str(data.get("by") or ""),
        at=_ms(data.get("at")) or None,
        adapter=str(data.get("adapter") or ""),
        weight=_num(data.get("weight")),
        model_id=str(data.get("model") or ""),
        version=_int(data.get("version")),
        adapters=_strs(data.get("adapters")),
        metadata=tuple(sorted(metadata.items())) if isinstance(metadata, dict) else (),
    )


def image_data_url(data: bytes, media_type: str) -> str:
    """An image's bytes as the data URL the job API takes inline for image inputs."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


# -- WebSockets over asyncio streams -----------------------------------------------------------


async def _job_messages(socket: _WebSocket) -> AsyncIterator[Job]:
    while (message := await socket.receive_json()) is not None:
        if message.get("type") == "error":
            raise Refused(4404, str(message.get("error", "error")), str(message.get("detail", "")))
        if message.get("type") == "job" and isinstance(message.get("job"), dict):
            yield parse_job(message["job"])


async def _event_messages(socket: _WebSocket) -> AsyncIterator[NodeEvent]:
    while (message := await socket.receive_json()) is not None:
        yield NodeEvent(str(message.get("type", "event")), message)


class _WebSocket:
    """A client WebSocket: wsproto's state machine fed from an asyncio stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.closed = False
        self._pending: list[ws_events.Event] = []
        self._text: list[str] = []

    @classmethod
    async def connect(
        cls, url: str, headers: Mapping[str, str], what: str, *, timeout_s: float
    ) -> _WebSocket:
        parts = urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        port = parts.port or (443 if secure else 80)
        host = parts.hostname or "localhost"
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=ssl.create_default_context() if secure else None
                )
        except (OSError, TimeoutError) as exc:
            raise NodeUnreachable(f"cannot reach {host}:{port}: {exc or 'timed out'}") from None
        socket = cls(reader, writer)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        try:
            async with asyncio.timeout(timeout_s):
                await socket._send(
                    ws_events.Request(host=parts.netloc, target=target, extra_headers=extra)
                )
                while True:
                    event = await socket._next_event()
                    if isinstance(event, ws_events.AcceptConnection):
                        return socket
                    if isinstance(event, ws_events.RejectConnection):
                        await socket.aclose()
                        status = event.status_code
                        if status in (403, 404, 500):
                            # Starlette refuses a WebSocket to an unknown route with 403.
                            raise NotAvailable(what[:1].upper() + what[1:], status)
                        raise Refused(status, "websocket_refused", f"{what}: HTTP {status}")
                    if event is None:
                        raise NodeUnreachable(f"{what}: the node closed the connection")
        except TimeoutError:
            await socket.aclose()
            raise NodeUnreachable(f"{what}: no handshake within {timeout_s:g} s") from None
        except (OSError, wsproto.utilities.LocalProtocolError) as exc:
            await socket.aclose()
            raise NodeUnreachable(f"{what}: {exc}") from None
        except NodeError:
            await socket.aclose()
            raise

    async def _send(self, event: ws_events.Event) -> None:
        self.writer.write(self.conn.send(event))
        await self.writer.drain()

    async def _next_event(self) -> ws_events.Event | None:
        """The next protocol event; None once the stream has ended."""
        while not self._pending:
            data = await self.reader.read(65536)
            try:
                self.conn.receive_data(data or None)
            except wsproto.utilities.RemoteProtocolError as exc:
                raise NodeUnreachable(f"bad WebSocket data from the node: {exc}") from None
            self._pending.extend(self.conn.events())
            if not data and not self._pending:
                return None
        return self._pending.pop(0)

    async def receive_json(self) -> dict[str, Any] | None:
        """The next JSON object message; None when the node closed the socket."""
        while not self.closed:
            try:
                event = await self._next_event()
            except OSError:
                event = None
            if event is None:
                self.closed = True
                return None
            if isinstance(event, ws_events.Ping):
                await self._send(event.response())
            elif isinstance(event, ws_events.CloseConnection):
                with contextlib.suppress(Exception):
                    await self._send(event.response())
                self.closed = True
                return None
            elif isinstance(event, ws_events.TextMessage):
                self._text.append(event.data)
                if event.message_finished:
                    text, self._text = "".join(self._text), []
                    try:
                        message = json.loads(text)
                    except ValueError:
                        continue
                    if isinstance(message, dict):
                        return message
        return None

    async def aclose(self) -> None:
        if not self.closed and self.conn.state is wsproto.connection.ConnectionState.OPEN:
            with contextlib.suppress(Exception):
                await self._send(ws_events.CloseConnection(code=1000))
        self.closed = True
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)
