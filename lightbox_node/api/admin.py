"""Administration: users (suspend, restore, set trust, role, revoke tokens), peers (block,
allow), hosts and their queues, node status, and gpu-host tokens.

Every route needs an admin-scope token (or the operator token); a user token gets 403.
Changes take effect in memory at once and are written to the database before the reply.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from lightbox_node.accounts import AccountError, AccountService, Scope
from lightbox_node.api.auth import LOCAL_USER, Gate
from lightbox_node.api.http import HttpError, read_object
from lightbox_node.api.jobs import job_json
from lightbox_node.dispatch.queue import QueueService, view_of
from lightbox_node.errors import PeerIdError
from lightbox_node.gossip.peer_policy import (
    MAX_REASON_CHARS,
    PolicyEntry,
    Verdict,
    delete_entry,
    save_entry,
)
from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import JobError, JobState
from lightbox_node.store import TrustStore

MAX_REASON = MAX_REASON_CHARS

log = logging.getLogger("lightbox.api")


class AdminRoutes:
    """`/api/v1/admin/…` and the gpu-host routes."""

    def __init__(
        self,
        gate: Gate,
        accounts: AccountService | None,
        queue: QueueService | None,
        network: Any,
        status: Callable[[], Any],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.gate = gate
        self.accounts = accounts
        self.queue = queue
        self.network = network
        self.status = status
        self.clock = clock

    def routes(self) -> list[BaseRoute]:
        users = "/api/v1/admin/users/{user}"
        peers = "/api/v1/admin/peers/{peer_id}"
        return [
            Route("/api/v1/admin/status", self.node_status),
            Route("/api/v1/admin/users", self.list_users),
            Route(users, self.get_user),
            Route(users + "/suspend", self.suspend, methods=["POST"]),
            Route(users + "/restore", self.restore, methods=["POST"]),
            Route(users + "/trust", self.set_trust, methods=["POST"]),
            Route(users + "/role", self.set_role, methods=["POST"]),
            Route(users + "/revoke-tokens", self.revoke_tokens, methods=["POST"]),
            Route("/api/v1/admin/peers", self.list_peers),
            Route(peers + "/block", self.block, methods=["POST"]),
            Route(peers + "/allow", self.allow, methods=["POST"]),
            Route(peers + "/unblock", self.unblock, methods=["POST"]),
            Route("/api/v1/admin/jobs", self.list_jobs),
            Route("/api/v1/admin/jobs/{job_id}/cancel", self.cancel_job, methods=["POST"]),
            Route("/api/v1/admin/hosts", self.list_hosts),
            Route("/api/v1/admin/hosts/{peer_id}/drain", self.drain_host, methods=["POST"]),
            Route("/api/v1/admin/hosts/{peer_id}/resume", self.resume_host, methods=["POST"]),
            Route("/api/v1/admin/queues", self.list_queues),
            Route("/api/v1/admin/host-tokens", self.host_token, methods=["POST"]),
            Route("/api/v1/host/whoami", self.host_whoami),
        ]

    # -- helpers -------------------------------------------------------------------------------

    def need_queue(self) -> QueueService:
        if self.queue is None:
            raise HttpError(404, "no_queue_role", "this node does not have the queue role")
        return self.queue

    async def persist(self, change: Callable[[Any], None]) -> None:
        """Write through the accounts connection (never the journal's), if there is one."""
        if self.accounts is not None:
            await trio.to_thread.run_sync(self.accounts.write, change)

    def users_json(self, users: list[str]) -> list[dict[str, Any]]:
        """Each user's account, trust, suspension and unfinished jobs (one pass over each)."""
        now = self.clock()
        wanted = set(users)
        reasons: dict[str, str] = {}
        active: dict[str, int] = {}
        if self.queue is not None:
            reasons = {
                r.user: r.reason for r in self.queue.scheduler.ledger.snapshot() if r.user in wanted
            }
            for job in self.queue.scheduler.jobs():
                if job.spec.owner in wanted and not job.state.is_final:
                    active[job.spec.owner] = active.get(job.spec.owner, 0) + 1
        rows = []
        for user in users:
            out: dict[str, Any] = {"username": user, "account": None}
            if self.accounts is not None and self.accounts.exists(user):
                out["account"] = self.accounts.get(user).to_json(with_email=True)
            if self.queue is not None:
                ledger = self.queue.scheduler.ledger
                out["trust"] = ledger.trust(user, now)
                out["suspended"] = ledger.is_suspended(user)
                out["reason"] = reasons.get(user, "")
                out["recovery_eta_s"] = ledger.recovery_eta(user, now)
                out["active_jobs"] = active.get(user, 0)
            rows.append(out)
        return rows

    def user_json(self, user: str) -> dict[str, Any]:
        return self.users_json([user])[0]

    def user_param(self, request: Request) -> str:
        user = request.path_params["user"]
        if not LOCAL_USER.fullmatch(user):
            raise HttpError(400, "bad_user", "user names are 1-64 of a-z 0-9 . _ -")
        return user

    async def save_trust(self, user: str) -> None:
        row = next(r for r in self.need_queue().scheduler.ledger.snapshot() if r.user == user)
        values = (row.user, row.trust, row.updated_at, row.suspended, row.reason)
        await self.persist(lambda db: TrustStore(db).save([values]))

    # -- node ----------------------------------------------------------------------------------

    async def node_status(self, request: Request) -> JSONResponse:
        self.gate.admin(request)
        out: dict[str, Any] = {"node": asdict(self.status())}
        rows = self.network.peer_rows()
        out["peers"] = {"known": len(rows), "linked": sum(1 for r in rows if r.linked)}
        if self.queue is not None:
            scheduler = self.queue.scheduler
            states: dict[str, int] = {}
            for job in scheduler.jobs():
                states[job.state.value] = states.get(job.state.value, 0) + 1
            out["jobs"] = {"by_state": states, "counters": scheduler.counters}
            out["hosts"] = len(scheduler.hosts())
        if self.accounts is not None:
            out["accounts"] = len(self.accounts.accounts())
        return JSONResponse(out)

    # -- users ---------------------------------------------------------------------------------

    async def list_users(self, request: Request) -> JSONResponse:
        """Accounts and every user the trust ledger knows (local users without an account
        too), by name."""
        self.gate.admin(request)
        names = set()
        if self.accounts is not None:
            names.update(a.username for a in self.accounts.accounts())
        if self.queue is not None:
            names.update(
                u for u in self.queue.scheduler.ledger.users() if not u.startswith("peer:")
            )
        return JSONResponse({"users": self.users_json(sorted(names))})

    async def get_user(self, request: Request) -> JSONResponse:
        self.gate.admin(request)
        return JSONResponse(self.user_json(self.user_param(request)))

    async def suspend(self, request: Request) -> JSONResponse:
        """Refuse every job of the user until restored; `reason` is shown to them."""
        self.gate.admin(request)
        user = self.user_param(request)
        body = await read_object(request)
        reason = body.get("reason", "")
        if type(reason) is not str or len(reason) > MAX_REASON:
            raise HttpError(400, "bad_reason", f"reason is text of at most {MAX_REASON} characters")
        self.need_queue().scheduler.ledger.suspend(user, reason, self.clock())
        await self.save_trust(user)
        return JSONResponse(self.user_json(user))

    async def restore(self, request: Request) -> JSONResponse:
        self.gate.admin(request)
        user = self.user_param(request)
        self.need_queue().scheduler.ledger.restore(user, self.clock())
        await self.save_trust(user)
        return JSONResponse(self.user_json(user))

    async def set_trust(self, request: Request) -> JSONResponse:
        """Set the user's trust outright: `{"trust": 0 … max}`."""
        self.gate.admin(request)
        user = self.user_param(request)
        body = await read_object(request)
        ledger = self.need_queue().scheduler.ledger
        value = body.get("trust")
        if type(value) not in (int, float):
            raise HttpError(
                400, "bad_trust", f"trust is a number from 0 to {ledger.params.max_trust}"
            )
        try:
            ledger.set_trust(user, value, self.clock())
        except ValueError as exc:
            raise HttpError(400, "bad_trust", str(exc)) from None
        await self.save_trust(user)
        return JSONResponse(self.user_json(user))

    async def set_role(self, request: Request) -> JSONResponse:
        """Make an account an administrator or a plain user: `{"role": "admin" | "user"}`."""
        principal = self.gate.admin(request)
        user = self.user_param(request)
        body = await read_object(request)
        role = body.get("role")
        if role not in ("user", "admin"):
            raise HttpError(400, "bad_role", "role is 'user' or 'admin'")
        if user == principal.username and role != "admin":
            raise HttpError(400, "own_role", "ask another administrator to take your role away")
        await self.account_call(lambda a: a.set_role(user, role))
        return JSONResponse(self.user_json(user))

    async def revoke_tokens(self, request: Request) -> JSONResponse:
        """Log the user out everywhere."""
        self.gate.admin(request)
        user = self.user_param(request)
        await self.account_call(lambda a: a.logout_everywhere(user))
        return JSONResponse(self.user_json(user))

    async def account_call(self, change: Callable[[AccountService], Any]) -> Any:
        if self.accounts is None:
            raise HttpError(404, "no_accounts", "this node does not keep accounts")
        accounts = self.accounts
        try:
            return await trio.to_thread.run_sync(lambda: change(accounts))
        except AccountError as exc:
            raise HttpError.from_account_error(exc) from None

    # -- peers ---------------------------------------------------------------------------------

    async def list_peers(self, request: Request) -> JSONResponse:
        """Peers with their scores and their score components, and the block/allow list."""
        self.gate.admin(request)
        scores = {str(s.peer): s for s in self.network.score_table()}
        peers = []
        for row in self.network.peer_rows():
            components = scores.get(row.peer_id)
            peers.append(
                {
                    "peer_id": row.peer_id,
                    "linked": row.linked,
                    "address": row.address,
                    "liveness": row.liveness,
                    "score": row.score,
                    "roles": list(row.record.roles) if row.record else [],
                    "score_components": {
                        k: v for k, v in asdict(components).items() if k not in ("peer", "address")
                    }
                    if components
                    else None,
                }
            )
        policy = self.network.policy
        entries = [
            {
                "peer_id": str(e.peer),
                "verdict": e.verdict.value,
                "reason": e.reason,
                "decided_at": e.decided_at,
            }
            for e in policy.entries()
        ]
        return JSONResponse(
            {"peers": peers, "policy": entries, "allowlist_only": policy.allowlist_only}
        )

    async def policy_change(self, request: Request, verdict: Verdict | None) -> JSONResponse:
        self.gate.admin(request)
        try:
            peer = PeerId.parse(request.path_params["peer_id"])
        except PeerIdError as exc:
            raise HttpError(400, "bad_peer_id", str(exc)) from None
        body = await read_object(request)
        reason = body.get("reason", "")
        policy = self.network.policy
        if verdict is None:
            policy.unblock(peer) or policy.disallow(peer)
            await self.persist(lambda db: delete_entry(db, peer))
        else:
            try:
                entry = PolicyEntry(peer, verdict, reason, self.clock())
            except ValueError as exc:
                raise HttpError(400, "bad_reason", str(exc)) from None
            if verdict is Verdict.BLOCK:
                policy.block(peer, entry.reason, self.clock())
            else:
                policy.allow(peer, entry.reason, self.clock())
            await self.persist(lambda db: save_entry(db, policy.entry(peer)))
        # Replacing the policy with itself applies it: refused peers lose links and records.
        self.network.replace_policy(policy)
        entry = policy.entry(peer)
        return JSONResponse(
            {
                "peer_id": str(peer),
                "verdict": entry.verdict.value if entry else None,
                "reason": entry.reason if entry else "",
                "refused": policy.why_refused(peer),
            }
        )

    async def block(self, request: Request) -> JSONResponse:
        return await self.policy_change(request, Verdict.BLOCK)

    async def allow(self, request: Request) -> JSONResponse:
        return await self.policy_change(request, Verdict.ALLOW)

    async def unblock(self, request: Request) -> JSONResponse:
        return await self.policy_change(request, None)

    # -- jobs ----------------------------------------------------------------------------------

    async def list_jobs(self, request: Request) -> JSONResponse:
        """Every job on this node, newest first; `?state=`, `?user=` filter, `?limit=` caps."""
        self.gate.admin(request)
        scheduler = self.need_queue().scheduler
        state = request.query_params.get("state")
        if state is not None and state not in {s.value for s in JobState}:
            allowed = ", ".join(s.value for s in JobState)
            raise HttpError(400, "bad_state", f"state must be one of {allowed}")
        user = request.query_params.get("user")
        limit_text = request.query_params.get("limit", "100")
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
            raise HttpError(400, "bad_limit", "limit must be an integer from 1 to 1000")
        jobs = [
            job
            for job in scheduler.jobs()
            if (state is None or job.state.value == state)
            and (user is None or job.spec.owner == user)
        ]
        jobs.sort(key=lambda job: job.spec.submitted_at, reverse=True)
        return JSONResponse(
            {
                "jobs": [
                    {**job_json(view_of(job)), "priority": job.priority}
                    for job in jobs[: int(limit_text)]
                ]
            }
        )

    async def cancel_job(self, request: Request) -> JSONResponse:
        """Cancel anyone's job."""
        self.gate.admin(request)
        queue = self.need_queue()
        job_id = request.path_params["job_id"]
        try:
            queue.job(job_id)
        except JobError as exc:
            raise HttpError(404, "unknown_job", str(exc)) from None
        return JSONResponse(job_json(await queue.cancel(job_id)))

    # -- hosts and queues ----------------------------------------------------------------------

    async def list_hosts(self, request: Request) -> JSONResponse:
        """Every GPU host this queue node has seen: tasks, slots, in flight, backlog."""
        self.gate.admin(request)
        return JSONResponse(
            {
                "hosts": [
                    {
                        "peer_id": str(h.host),
                        "online": h.online,
                        "tasks": sorted(h.tasks),
                        "slots": h.slots,
                        "free_slots": h.free_slots,
                        "in_flight": list(h.in_flight),
                        "queued": h.queued,
                        "queued_cost": h.queued_cost,
                        "seen_at": h.seen_at,
                        "drained": h.host in self.need_queue().drained,
                    }
                    for h in self.need_queue().scheduler.hosts()
                ]
            }
        )

    async def drain_host(self, request: Request) -> JSONResponse:
        """No new jobs for the host; what it runs finishes (maintenance, a model swap)."""
        return await self.host_change(request, drain=True)

    async def resume_host(self, request: Request) -> JSONResponse:
        return await self.host_change(request, drain=False)

    async def host_change(self, request: Request, *, drain: bool) -> JSONResponse:
        self.gate.admin(request)
        queue = self.need_queue()
        try:
            host = PeerId.parse(request.path_params["peer_id"])
        except PeerIdError as exc:
            raise HttpError(400, "bad_peer_id", str(exc)) from None
        changed = queue.drain_host(host) if drain else queue.resume_host(host)
        if not changed:
            raise HttpError(404, "unknown_host", f"no GPU host {host} is attached to this node")
        log.info("host drained" if drain else "host resumed", extra={"host": host.short})
        return JSONResponse({"peer_id": str(host), "drained": host in queue.drained})

    async def list_queues(self, request: Request) -> JSONResponse:
        """Each host's queue, best first, and the jobs waiting for a host to appear."""
        self.gate.admin(request)
        scheduler = self.need_queue().scheduler

        def row(job: Any) -> dict[str, Any]:
            return {
                "job_id": job.job_id,
                "owner": job.spec.owner,
                "task": job.spec.task,
                "priority": job.priority,
                "cost": job.spec.cost,
                "submitted_at": job.spec.submitted_at,
            }

        return JSONResponse(
            {
                "queues": [
                    {"host": str(h.host), "jobs": [row(j) for j in scheduler.queue_of(h.host)]}
                    for h in scheduler.hosts()
                ],
                "unplaced": [row(j) for j in scheduler.unplaced()],
            }
        )

    # -- gpu-host tokens -----------------------------------------------------------------------

    async def host_token(self, request: Request) -> JSONResponse:
        """A gpu-host token for a host labelled `label`; it opens host routes only."""
        principal = self.gate.admin(request)
        body = await read_object(request)
        label = body.get("label", "")
        ttl = body.get("ttl_s")
        if principal.operator:
            raise HttpError(
                400, "operator_token", "log in as an administrator to issue host tokens"
            )
        issued = await self.account_call(
            lambda a: a.issue_host_token(principal.username, label, ttl)
        )
        return JSONResponse(
            {
                "token": issued.token,
                "token_id": issued.claims.token_id,
                "scope": issued.claims.scope.value,
                "expires_at": issued.claims.expires_at_ms / 1000,
            },
            201,
            headers={"Cache-Control": "no-store"},
        )

    async def host_whoami(self, request: Request) -> JSONResponse:
        """What a gpu-host token says (a host checks its token with this)."""
        principal = self.gate.check(request, Scope.GPU_HOST)
        return JSONResponse(
            {
                "scope": principal.scope.value,
                "issued_by": principal.username,
                "token_id": principal.token_id,
            }
        )
