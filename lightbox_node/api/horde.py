"""A subset of the AI Horde v2 image API at `/api/v2`, so Horde clients work unchanged.

`POST /generate/async` becomes a Lightbox `txt2img` job (or `img2img` with a source image)
of the account whose user token is in the `apikey` header; `GET /generate/check/{id}` and
`GET /generate/status/{id}` report it in the Horde's shapes (status with the images as
base64); `DELETE /generate/status/{id}` cancels it; `GET /status/models` lists the tasks on
offer as models; `GET /find_user` describes the account, trust standing in for kudos.

As on the Horde, a request id is itself the key to its status: ids are unguessable (a job
id's 96 random bits, carried inside a version-4 UUID, since Horde clients expect UUIDs).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from lightbox_node.accounts import Scope
from lightbox_node.api.auth import Gate, Principal
from lightbox_node.api.http import HttpError, read_object
from lightbox_node.api.jobs import JobRoutes, queue_position
from lightbox_node.dispatch.queue import JobView, QueueService
from lightbox_node.sched.jobs import JobError

ANONYMOUS_KEY = "0000000000"
MARK = "4b1e-b1e1"
"""The fixed middle of a Horde id made from a job id (version 4, RFC 4122 variant)."""
SAMPLERS = {
    "k_euler_a": "euler_a",
    "k_euler": "euler",
    "k_dpmpp_2m": "dpmpp_2m",
    "ddim": "ddim",
    "plms": "pndm",
}
_JOB_HEX = re.compile(r"j-([0-9a-f]{24})")


def horde_id(job_id: str) -> str:
    """The Horde request id (a UUID) for a Lightbox job id."""
    match = _JOB_HEX.fullmatch(job_id)
    if match is None:
        raise ValueError(f"not a Lightbox job id: {job_id!r}")
    digits = match.group(1)
    return f"{digits[:8]}-{digits[8:12]}-{MARK}-{digits[12:]}"


def job_id_of(request_id: str) -> str | None:
    """The Lightbox job id inside a Horde request id, or None if it is not one of ours."""
    try:
        text = str(uuid.UUID(request_id))
    except ValueError:
        return None
    if text[14:23] != MARK:
        return None
    return "j-" + text[:8] + text[9:13] + text[24:]


def _clamp(value: Any, low: float, high: float, default: float) -> float:
    if type(value) not in (int, float):
        return default
    return min(high, max(low, value))


def _side(value: Any) -> int:
    return int(_clamp(value, 64, 2048, 512)) // 8 * 8


class HordeRoutes:
    """`/api/v2/…`: the Horde's image generation endpoints over Lightbox jobs."""

    def __init__(
        self,
        queue: QueueService | None,
        gate: Gate,
        jobs: JobRoutes,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.gate = gate
        self.jobs = jobs
        self.clock = clock

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v2/generate/async", self.generate, methods=["POST"]),
            Route("/api/v2/generate/check/{id}", self.check),
            Route("/api/v2/generate/status/{id}", self.status, methods=["GET"]),
            Route("/api/v2/generate/status/{id}", self.cancel, methods=["DELETE"]),
            Route("/api/v2/status/models", self.models),
            Route("/api/v2/find_user", self.find_user),
        ]

    def need_queue(self) -> QueueService:
        if self.queue is None:
            raise _horde_error(404, "this node does not have the queue role")
        return self.queue

    def principal(self, request: Request) -> Principal:
        key = request.headers.get("apikey", "")
        if not key or key == ANONYMOUS_KEY:
            raise _horde_error(
                401,
                "anonymous requests are not taken here; register an account on this node and "
                "put a user token from POST /api/v1/auth/login in the apikey header",
            )
        try:
            return self.gate.check_token(key, request, Scope.USER)
        except HttpError as exc:
            raise _horde_error(exc.status, exc.detail) from None

    # -- generating ----------------------------------------------------------------------------

    async def generate(self, request: Request) -> JSONResponse:
        principal = self.principal(request)
        queue = self.need_queue()
        try:
            self.jobs.check_limits(principal, request)
        except HttpError as exc:
            raise _horde_error(exc.status, exc.detail, headers=exc.headers) from None
        body = await read_object(request, self.jobs.settings.max_request_bytes)
        prompt = body.get("prompt")
        if type(prompt) is not str or not prompt.strip():
            raise _horde_error(400, "prompt is required text")
        positive, _, negative = prompt.partition("###")
        params = body.get("params") or {}
        if type(params) is not dict:
            raise _horde_error(400, "params must be an object")
        sampler = str(params.get("sampler_name", "k_euler_a")).lower()
        seed = params.get("seed")
        inputs: dict[str, Any] = {
            "prompt": positive.strip() or prompt,
            "negative_prompt": negative.strip(),
            "steps": int(_clamp(params.get("steps"), 1, 150, 25)),
            "guidance_scale": float(_clamp(params.get("cfg_scale"), 0, 30, 7.5)),
            "sampler": SAMPLERS.get(sampler, "euler_a"),
            "batch_size": int(_clamp(params.get("n", body.get("n")), 1, 8, 1)),
            "seed": int(seed)
            if type(seed) is str and seed.isdigit() and len(seed) < 10
            else "random",
        }
        task = "txt2img"
        source = body.get("source_image")
        if type(source) is str and source:
            task = "img2img"
            inputs["image"] = (
                source if source.startswith("data:") else ("data:image/webp;base64," + source)
            )
            inputs["strength"] = float(_clamp(params.get("denoising_strength"), 0, 1, 0.75))
        else:
            inputs["width"] = _side(params.get("width"))
            inputs["height"] = _side(params.get("height"))
        models = body.get("models") or []
        offered = queue.offered_tasks()
        chosen = next((m for m in models if type(m) is str and m in offered), None)
        if chosen is not None and task == "txt2img":
            task = chosen
        try:
            view = await self.jobs.accept(principal, task, inputs)
        except HttpError as exc:
            raise _horde_error(exc.status, exc.detail, headers=exc.headers) from None
        price = queue.scheduler.ledger.params.price(queue.scheduler.job(view.job_id).spec.cost)
        return JSONResponse(
            {"id": horde_id(view.job_id), "kudos": price, "message": "", "warnings": []}, 202
        )

    # -- following -----------------------------------------------------------------------------

    def view(self, request: Request) -> JobView:
        job_id = job_id_of(request.path_params["id"])
        if job_id is None:
            raise _horde_error(404, "no such request id here")
        try:
            return self.need_queue().job(job_id)
        except JobError:
            raise _horde_error(
                404, "no such request id here (finished ones are forgotten)"
            ) from None

    def progress(self, view: JobView) -> dict[str, Any]:
        queue = self.need_queue()
        count = 1
        with contextlib.suppress(JobError, TypeError, ValueError):
            count = int(queue.scheduler.job(view.job_id).spec.inputs.get("batch_size", 1))
        state = view.state
        position = queue_position(queue, view.job_id) if state == "queued" else None
        return {
            "finished": count if state == "done" else 0,
            "processing": count if state in ("dispatched", "running") else 0,
            "restarted": max(0, view.attempts - 1),
            "waiting": count if state == "queued" else 0,
            "done": state == "done",
            "faulted": state in ("faulted", "cancelled", "expired"),
            "wait_time": 0 if view.is_final else max(1, int(position or 1) * 5),
            "queue_position": position or 0,
            "kudos": 0.0,
            "is_possible": True,
        }

    async def check(self, request: Request) -> JSONResponse:
        return JSONResponse(self.progress(self.view(request)))

    async def status(self, request: Request) -> JSONResponse:
        return JSONResponse(await self.status_of(self.view(request)))

    async def status_of(self, view: JobView) -> dict[str, Any]:
        body = self.progress(view)
        generations = []
        if view.state == "done":
            outputs = await self.need_queue().result(view.job_id)
            job = self.need_queue().scheduler.job(view.job_id)
            seed = job.spec.inputs.get("seed", 0)
            for index, (_, data) in enumerate(outputs):
                generations.append(
                    {
                        "img": base64.b64encode(data).decode(),
                        "seed": str(seed + index if type(seed) is int else seed),
                        "id": str(uuid.uuid4()),
                        "censored": False,
                        "model": job.spec.task,
                        "state": "ok",
                        "worker_id": str(uuid.UUID(bytes=bytes.fromhex(_host_hex(view.host)))),
                        "worker_name": view.host or "",
                        "gen_metadata": [],
                    }
                )
        body["generations"] = generations
        body["shared"] = False
        return body

    async def cancel(self, request: Request) -> JSONResponse:
        view = self.view(request)
        view = await self.need_queue().cancel(view.job_id)
        return JSONResponse(await self.status_of(view))

    # -- about ---------------------------------------------------------------------------------

    async def models(self, request: Request) -> JSONResponse:
        """Tasks that paint from a prompt, as Horde image models."""
        queue = self.need_queue()
        counts: dict[str, int] = {}
        for _, (names, _free) in queue.hosts().items():
            for name in names:
                counts[name] = counts.get(name, 0) + 1
        queued: dict[str, int] = {}
        for job in queue.scheduler.jobs():
            if not job.state.is_final:
                queued[job.spec.task] = queued.get(job.spec.task, 0) + 1
        return JSONResponse(
            [
                {
                    "name": name,
                    "count": counts.get(name, 0),
                    "performance": 0.0,
                    "queued": float(queued.get(name, 0)),
                    "jobs": float(queued.get(name, 0)),
                    "eta": 0,
                    "type": "image",
                }
                for name, schema in sorted(queue.offered_tasks().items())
                if any(i.name == "prompt" for i in schema.inputs)
            ]
        )

    async def find_user(self, request: Request) -> JSONResponse:
        principal = self.principal(request)
        trust = 0.0
        if self.queue is not None:
            trust = self.queue.scheduler.ledger.trust(principal.username, self.clock())
        return JSONResponse(
            {
                "username": f"{principal.username}#1",
                "id": 1,
                "kudos": trust,
                "concurrency": self.jobs.settings.max_active_jobs,
                "worker_invited": 0,
                "moderator": False,
                "worker_count": 0,
                "trusted": False,
                "pseudonymous": False,
            }
        )


def _host_hex(host: str | None) -> str:
    return hashlib.blake2b((host or "").encode(), digest_size=16).hexdigest()


def _horde_error(status: int, message: str, headers: dict[str, str] | None = None) -> HttpError:
    """The Horde's error shape (`message`), keeping Lightbox's `error`/`detail` too."""
    return HttpError(status, "horde_error", message, headers=headers, message=message)


__all__ = ["HordeRoutes", "horde_id", "job_id_of"]
