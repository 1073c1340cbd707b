"""Read-only views of the model registry for the dashboard, the editor and the CLI.

Every view is a linearizable read through the registry leader (read-index), so what a page
shows was committed; a node without the registry role reads through the members it knows
from gossip. Reads are public, like the peer list: the registry holds only concept names
and content ids. Writes are not exposed to users: adapters reach the registry from
finished fine-tune jobs and merges come from the leader; an administrator may offer an
adapter by hand (an adapter trained elsewhere, or a retry).

    GET /api/v1/registry                          members, each concept's model, recent commits
    GET /api/v1/registry/concepts/{concept}       one concept: model, version, pending adapters
    GET /api/v1/registry/concepts/{concept}/history?after=N&limit=L
    POST /api/v1/registry/concepts/{concept}/adapters   (admin) {adapter, weight, base?,
                                                         metadata?}: offer an adapter blob
    POST /api/v1/registry/concepts/{concept}/merge      (admin, on the leader) merge now
    POST|DELETE /api/v1/registry/members/{peer_id}      (admin, on the leader) add or remove
                                                         one registry server
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from lightbox_node.api.auth import Gate
from lightbox_node.api.http import HttpError, read_object
from lightbox_node.errors import LightboxError, PeerIdError
from lightbox_node.identity import PeerId
from lightbox_node.raft.registry import CONCEPT_PATTERN
from lightbox_node.raft.service import RegistryRefused, RegistryService, RegistryUnavailable

OVERVIEW_CONCEPTS = 200
"""Concepts listed by the overview; the per-concept views page through any number."""
OVERVIEW_COMMITS = 50
"""Recent merges listed by the overview, newest first."""


class RegistryRoutes:
    """`/api/v1/registry…`, answering 404 `no_registry` on a node built without one."""

    def __init__(
        self,
        registry: RegistryService | None,
        gate: Gate,
        clock: Callable[[], float],
        merge: Callable[[str], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.registry = registry
        self.gate = gate
        self.clock = clock
        self.merge = merge

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/registry", self.overview),
            Route("/api/v1/registry/concepts/{concept}", self.concept),
            Route("/api/v1/registry/concepts/{concept}/history", self.history),
            Route(
                "/api/v1/registry/concepts/{concept}/adapters",
                self.submit_adapter,
                methods=["POST"],
            ),
            Route("/api/v1/registry/concepts/{concept}/merge", self.merge_now, methods=["POST"]),
            Route(
                "/api/v1/registry/members/{peer_id}",
                self.change_member,
                methods=["POST", "DELETE"],
            ),
        ]

    async def overview(self, request: Request) -> JSONResponse:
        registry = self._registry()
        status = registry.status()
        members = []
        for peer in status.members:
            raft = status.raft
            mine = raft is not None and raft.local == peer
            members.append(
                {
                    "peer_id": str(peer),
                    "role": raft.role.value if mine and raft is not None else "member",
                    "term": raft.term if mine and raft is not None else None,
                    "leader": peer == status.leader,
                }
            )
        names = await self._read({"q": "concepts", "limit": OVERVIEW_CONCEPTS})
        concepts = []
        commits: list[dict[str, Any]] = []
        for name in names:
            summary = await self._read({"q": "concept", "concept": name})
            if summary is None:
                continue
            merges: list[dict[str, Any]] = []
            if summary.get("version"):
                events = await self._read({"q": "history", "concept": name, "limit": 1000})
                merges = [_commit_row(name, e) for e in events if e.get("kind") == "merge"]
            concepts.append(_concept_row(name, summary, merges[-1]["at"] if merges else None))
            commits += merges
        commits.sort(key=lambda row: row["index"], reverse=True)
        return JSONResponse(
            {
                "leader": str(status.leader) if status.leader else None,
                "members": members,
                "concepts": concepts,
                "commits": commits[:OVERVIEW_COMMITS],
            }
        )

    async def concept(self, request: Request) -> JSONResponse:
        name = _concept_name(request)
        summary = await self._read({"q": "concept", "concept": name})
        if summary is None:
            raise HttpError(404, "unknown_concept", f"the registry has no concept {name!r}")
        return JSONResponse({"concept": name, **summary})

    async def history(self, request: Request) -> JSONResponse:
        name = _concept_name(request)
        query: dict[str, Any] = {"q": "history", "concept": name}
        for key in ("after", "limit"):
            text = request.query_params.get(key)
            if text is not None:
                if not text.isdigit() or len(text) > 18:
                    raise HttpError(400, "bad_query", f"{key} must be a whole number")
                query[key] = int(text)
        events = await self._read(query)
        return JSONResponse({"concept": name, "events": events})

    async def submit_adapter(self, request: Request) -> JSONResponse:
        self.gate.admin(request)
        name = _concept_name(request)
        body = await read_object(request)
        unknown = set(body) - {"adapter", "weight", "base", "metadata"}
        if unknown:
            raise HttpError(400, "bad_adapter", f"unknown fields: {', '.join(sorted(unknown))}")
        command = {
            "op": "submit_adapter",
            "concept": name,
            "adapter": body.get("adapter"),
            "weight": body.get("weight", 1),
            "base": body.get("base"),
            "at": int(self.clock() * 1000),
            "metadata": body.get("metadata", {}),
        }
        try:
            answer = await self._registry().write(command)
        except RegistryUnavailable as exc:
            raise HttpError(503, "registry_unavailable", str(exc)) from None
        except RegistryRefused as exc:
            raise HttpError(400, "bad_adapter", str(exc)) from None
        if not answer.get("ok"):
            raise HttpError(409, "adapter_refused", str(answer.get("error")))
        return JSONResponse(answer, 201 if not answer.get("duplicate") else 200)

    async def merge_now(self, request: Request) -> JSONResponse:
        self.gate.admin(request)
        name = _concept_name(request)
        if self.merge is None:
            raise HttpError(
                409, "no_merger", "this node does not merge (no registry role, or no ml extra)"
            )
        try:
            answer = await self.merge(name)
        except RegistryUnavailable as exc:
            raise HttpError(503, "registry_unavailable", str(exc)) from None
        except LightboxError as exc:
            raise HttpError(409, "merge_refused", str(exc)) from None
        return JSONResponse(answer)

    async def change_member(self, request: Request) -> JSONResponse:
        """Membership changes one server at a time, on the leader (Raft's single-server
        change); a server being added must run with the registry role and be reachable."""
        self.gate.admin(request)
        try:
            peer = PeerId.parse(request.path_params["peer_id"])
        except PeerIdError as exc:
            raise HttpError(400, "bad_peer_id", str(exc)) from None
        registry = self._registry()
        change = registry.add_member if request.method == "POST" else registry.remove_member
        try:
            await change(peer)
        except RegistryUnavailable as exc:
            raise HttpError(503, "registry_unavailable", str(exc)) from None
        except RegistryRefused as exc:
            raise HttpError(409, "membership_refused", str(exc)) from None
        status = registry.status()
        return JSONResponse({"members": [str(m) for m in status.members]})

    def _registry(self) -> RegistryService:
        if self.registry is None:
            raise HttpError(404, "no_registry", "this node runs no registry service")
        return self.registry

    async def _read(self, query: dict[str, Any]) -> Any:
        try:
            return await self._registry().read(query)
        except RegistryUnavailable as exc:
            raise HttpError(503, "registry_unavailable", str(exc)) from None
        except RegistryRefused as exc:
            raise HttpError(400, "bad_query", str(exc)) from None


def _concept_name(request: Request) -> str:
    name = request.path_params["concept"]
    if not CONCEPT_PATTERN.fullmatch(name):
        raise HttpError(
            400,
            "bad_concept",
            "a concept name is 1 to 128 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return name


def _concept_row(name: str, summary: dict[str, Any], updated_at: float | None) -> dict[str, Any]:
    return {
        "concept": name,
        "model_id": summary.get("model") or "",
        "version": summary.get("version"),
        "pending_count": summary.get("pending_count"),
        "updated_at": updated_at,
    }


def _commit_row(name: str, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": event.get("index"),
        "term": event.get("term"),
        "concept": name,
        "model_id": event.get("model"),
        "version": event.get("version"),
        "by": event.get("by"),
        "at": _seconds(event.get("at")),
    }


def _seconds(ms: Any) -> float | None:
    return ms / 1000 if isinstance(ms, int | float) and ms else None


__all__ = ["RegistryRoutes"]
