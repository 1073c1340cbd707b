"""Federation: a user of queue node A runs a job on a GPU host attached to queue node B.

The host is chosen by peer id from gossip, never by a URL a user typed: its capability
record names the queue nodes it serves. On A, such a host appears to the scheduler as one
more host (a *federated host*) whose port forwards pushes to B; on B, the job is an ordinary
federated job (owner `peer:<A>`, the federated penalty, A's own trust budget). What B
learns is A's peer id and an opaque job id; the user and their credentials stay on A.

Messages (protocol "jobs", over the A-B peer link)::

    A -> B  ["fsubmit", envelope]      domain lightbox/job/v1, author A, body
                                       {"job": A's job id, "attempt": n, "task": name,
                                        "inputs": {...}, "host": host key (32 bytes)}
    A -> B  ["fcancel", job_id, attempt]
    B -> A  ["fhost", host key, body]  body is what the host would have told A directly:
                                       started / progress / done / fault, with A's job id
                                       and attempt (see `protocol`)

A result too large for one message reaches B as blob references, and B fetches it from the
host before the job is done there. B then relays it to A the same way: inline when it fits,
else as references to blobs B now holds, which A fetches from B (A may have no link to the
host at all, and B has the verified bytes already). A attaches a federated host with B as
the holder of its result blobs for that reason.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from lightbox_node.dispatch.protocol import (
    MAX_REASON,
    Cancel,
    Done,
    Fault,
    Hello,
    Progress,
    Run,
    Started,
    encode,
    parse_queue_message,
)
from lightbox_node.dispatch.queue import QueueService
from lightbox_node.errors import LightboxError, MalformedMessage, WireError
from lightbox_node.identity import Identity, PeerId
from lightbox_node.sched.jobs import JOB_ID_PATTERN, JobError
from lightbox_node.swarm import Swarm
from lightbox_node.wire import open_envelope, seal

log = logging.getLogger("lightbox.federation")

JOB_DOMAIN = "lightbox/job/v1"
REQUEST_TTL_MS = 60_000
PROTOCOL = "jobs"


@dataclass(frozen=True, slots=True)
class _Remote:
    via: PeerId
    """The queue node the federated host is attached to."""


class Federation:
    """Both sides of federation for one queue node."""

    def __init__(
        self,
        identity: Identity,
        swarm: Swarm,
        queue: QueueService,
        *,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.identity = identity
        self.swarm = swarm
        self.queue = queue
        self._wall_ms = wall_ms
        self._remote_hosts: dict[PeerId, _Remote] = {}
        self._serving: dict[tuple[PeerId, str], tuple[str, int]] = {}
        """(origin queue, its job id) -> (our job id, its attempt), for jobs we run for others."""
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    # -- origin side (A) ----------------------------------------------------------------------

    def ensure_host(self, host: PeerId) -> bool:
        """Make a host attached elsewhere submittable here; False if no route to it exists."""
        if host in self._remote_hosts or host in self.queue.hosts():
            return True
        record = next((r for r in self.swarm.records() if r.author == host), None)
        if record is None or "gpu" not in record.roles:
            return False
        linked = set(self.swarm.linked_peers)
        via = next((q for q in record.queues if q in linked and q != self.identity.peer_id), None)
        if via is None:
            return False
        self._remote_hosts[host] = _Remote(via)
        self.queue.attach_host(
            host,
            lambda body, host=host: self._forward(host, body),
            pinned_only=True,
            fetch_from=(via,),
        )
        slots = max(1, record.free_slots)
        self.queue.host_message(host, encode(Hello(record.plain_tasks(), slots)))
        log.info("federated host attached", extra={"host": host.short, "via": via.short})
        return True

    def _forward(self, host: PeerId, body: Any) -> bool:
        """The port of a federated host: a push for it goes to its queue node instead."""
        remote = self._remote_hosts.get(host)
        if remote is None:
            return False
        message = parse_queue_message(body)  # built by our own queue service
        if isinstance(message, Cancel):
            return self.swarm.send(
                remote.via, PROTOCOL, ["fcancel", message.job_id, message.attempt]
            )
        assert isinstance(message, Run)
        now = self._wall_ms()
        request = {
            "job": message.job_id,
            "attempt": message.attempt,
            "task": message.task,
            "inputs": message.inputs,
            "host": host.public_key,
        }
        frame = seal(self.identity, JOB_DOMAIN, now, now, now + REQUEST_TTL_MS, request)
        return self.swarm.send(remote.via, PROTOCOL, ["fsubmit", frame])

    def from_serving_queue(self, via: PeerId, body: list[Any]) -> None:
        """["fhost", host key, host body] from the queue node serving a federated host."""
        if len(body) != 3 or type(body[1]) is not bytes or len(body[1]) != 32:
            return
        host = PeerId(body[1])
        remote = self._remote_hosts.get(host)
        if remote is None or remote.via != via:
            return  # only the queue node we federated through speaks for this host
        self.queue.host_message(host, body[2])

    def link_down(self, peer: PeerId) -> None:
        for host, remote in list(self._remote_hosts.items()):
            if remote.via == peer:
                del self._remote_hosts[host]
                self.queue.detach_host(host)

    # -- serving side (B) ---------------------------------------------------------------------

    def submit_from(self, origin: PeerId, body: list[Any], peer_score: float) -> None:
        """["fsubmit", envelope] from another queue node."""
        if self._nursery is None:
            return
        self._nursery.start_soon(self._serve, origin, body, peer_score)

    async def _serve(self, origin: PeerId, body: list[Any], peer_score: float) -> None:
        try:
            request = self._open_request(origin, body)
        except WireError as exc:
            log.info("bad federated request", extra={"peer": origin.short, "error": str(exc)})
            return
        job_id, attempt, host = request["job"], request["attempt"], PeerId(request["host"])

        def reply(message: Any) -> None:
            self.swarm.send(origin, PROTOCOL, ["fhost", host.public_key, encode(message)])

        try:
            view = await self.queue.submit(
                f"peer:{origin}",
                request["task"],
                request["inputs"],
                host=host,
                federated_from=origin,
                remote_job_id=job_id,
                peer_score=peer_score,
            )
        except LightboxError as exc:
            reply(
                Fault(
                    job_id, attempt, f"refused by {self.identity.peer_id.short}: {exc}"[:MAX_REASON]
                )
            )
            return
        self._serving[(origin, job_id)] = (view.job_id, attempt)
        started = False
        try:
            async for update in self.queue.watch(view.job_id):
                if update.state == "running" and not started:
                    started = True
                    reply(Started(job_id, attempt))
                elif update.state == "running":
                    reply(Progress(job_id, attempt, update.progress, update.progress_message))
                elif update.state == "done":
                    try:
                        outputs = await self.queue.result_for_relay(view.job_id)
                    except LightboxError as exc:  # the result blobs are unreadable here
                        why = f"the result could not be read on {self.identity.peer_id.short}"
                        reply(Fault(job_id, attempt, f"{why}: {exc}"[:MAX_REASON]))
                    else:
                        reply(Done(job_id, attempt, outputs))
                elif update.is_final:
                    why = update.error or f"the job was {update.state} on the serving node"
                    reply(Fault(job_id, attempt, why[:MAX_REASON]))
        finally:
            self._serving.pop((origin, job_id), None)

    def _open_request(self, origin: PeerId, body: list[Any]) -> dict[str, Any]:
        if len(body) != 2 or type(body[1]) is not bytes:
            raise MalformedMessage("fsubmit is [tag, envelope]")
        verified = open_envelope(body[1], expect_domain=JOB_DOMAIN, now_ms=self._wall_ms())
        if verified.envelope.author != origin:
            raise MalformedMessage("a federated request must be signed by the peer sending it")
        request = verified.envelope.body
        if (
            type(request) is not dict
            or set(request) != {"job", "attempt", "task", "inputs", "host"}
            or type(request["job"]) is not str
            or not JOB_ID_PATTERN.fullmatch(request["job"])
            or type(request["attempt"]) is not int
            or type(request["task"]) is not str
            or type(request["inputs"]) is not dict
            or type(request["host"]) is not bytes
            or len(request["host"]) != 32
        ):
            raise MalformedMessage("a federated request is {job, attempt, task, inputs, host}")
        return request

    def cancel_from(self, origin: PeerId, body: list[Any]) -> None:
        """["fcancel", job id, attempt] from the queue node that federated the job here."""
        if len(body) != 3 or type(body[1]) is not str or self._nursery is None:
            return
        served = self._serving.get((origin, body[1]))
        if served is not None:
            self._nursery.start_soon(self._cancel, served[0])

    async def _cancel(self, job_id: str) -> None:
        with contextlib.suppress(JobError):
            await self.queue.cancel(job_id)


__all__ = ["JOB_DOMAIN", "Federation"]
