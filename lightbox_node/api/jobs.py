"""Job endpoints: tasks on offer, submit (JSON or multipart, with images), my jobs, a job,
cancel, results as JSON or as files, and a WebSocket of a job's events until it ends.

Everything goes through `QueueService`'s public methods; the routes add who owns what,
images turned into blobs, rate limits and the concurrent-jobs cap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import trio
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from lightbox_node.accounts import RateLimiter
from lightbox_node.api.auth import Gate, Principal
from lightbox_node.api.http import (
    HttpError,
    client_address,
    read_body,
    refuse_too_large,
    too_many,
)
from lightbox_node.api.images import (
    CheckedImage,
    check_image,
    decode_data_url,
    image_value,
    is_data_url,
    sniff_media_type,
)
from lightbox_node.api.settings import ApiSettings
from lightbox_node.dispatch.queue import JobView, NoSuchTask, QueueService, view_of
from lightbox_node.errors import LightboxError, PeerIdError
from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import JobError, JobState, UnknownJob
from lightbox_node.sched.scheduler import NoHostForTask
from lightbox_node.sched.trust import TrustExhausted, UserSuspended
from lightbox_node.store import BlobId
from lightbox_node.tasks import InvalidJobInput

log = logging.getLogger("lightbox.api.jobs")

MAX_LISTED_JOBS = 500
BLOB_ID_TEXT = "sha256-"


def job_json(view: JobView, queue_position: int | None = None) -> dict[str, Any]:
    body = asdict(view)
    body["faults"] = list(view.faults)
    body["results"] = list(view.results)
    body["queue_position"] = queue_position
    return body


def queue_position(queue: QueueService, job_id: str) -> int | None:
    """1 for the next job its host will take, 2 for the one after, …; None unless queued."""
    scheduler = queue.scheduler
    job = scheduler.job(job_id)
    if job.state is not JobState.QUEUED:
        return None
    for host in scheduler.hosts():
        if host.queued:
            for place, queued in enumerate(scheduler.queue_of(host.host), start=1):
                if queued.job_id == job_id:
                    return place
    return None  # waiting for a host offering its task to appear


class ActiveJobs:
    """Each account's unfinished jobs, for the concurrent-jobs cap without a full scan.

    Seeded from the queue once, then told of every job submitted through the API; finished
    and purged jobs are dropped when counted.
    """

    def __init__(self, queue: QueueService) -> None:
        self._queue = queue
        self._by_user: dict[str, set[str]] | None = None

    def count(self, user: str) -> int:
        if self._by_user is None:
            self._by_user = {}
            for job in self._queue.scheduler.jobs():
                if not job.state.is_final:
                    self._by_user.setdefault(job.spec.owner, set()).add(job.job_id)
        ids = self._by_user.get(user, set())
        for job_id in list(ids):
            try:
                if self._queue.scheduler.job(job_id).state.is_final:
                    ids.discard(job_id)
            except UnknownJob:
                ids.discard(job_id)
        return len(ids)

    def add(self, user: str, job_id: str) -> None:
        if self._by_user is not None:
            self._by_user.setdefault(user, set()).add(job_id)


@dataclasses.dataclass(slots=True)
class _Pending:
    """An image in a request, where it goes in the inputs, and its bytes or blob id."""

    field: str
    put: Callable[[dict[str, Any]], None]
    data: bytes | None = None
    blob: str | None = None


class JobRoutes:
    """The `/api/v1/tasks` and `/api/v1/jobs…` routes of one queue node."""

    def __init__(
        self,
        queue: QueueService | None,
        gate: Gate,
        settings: ApiSettings,
        network: Any,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.gate = gate
        self.settings = settings
        self.network = network
        self.clock = clock
        self.per_account = RateLimiter(settings.submit_per_account)
        self.per_address = RateLimiter(settings.submit_per_address)
        self.active = ActiveJobs(queue) if queue is not None else None
        self.image_limiter = trio.CapacityLimiter(4)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/api/v1/tasks", self.list_tasks),
            Route("/api/v1/jobs", self.submit_job, methods=["POST"]),
            Route("/api/v1/jobs", self.list_jobs, methods=["GET"]),
            Route("/api/v1/jobs/{job_id}", self.get_job),
            Route("/api/v1/jobs/{job_id}/cancel", self.cancel_job, methods=["POST"]),
            Route("/api/v1/jobs/{job_id}/result", self.job_result),
            Route("/api/v1/jobs/{job_id}/outputs/{index:int}", self.job_output),
            WebSocketRoute("/api/v1/jobs/{job_id}/events", self.job_events),
        ]

    # -- helpers -------------------------------------------------------------------------------

    def need_queue(self) -> QueueService:
        if self.queue is None:
            raise HttpError(404, "no_queue_role", "this node does not have the queue role")
        return self.queue

    def owned(self, principal: Principal, job_id: str) -> JobView:
        queue = self.need_queue()
        try:
            view = queue.job(job_id)
        except JobError as exc:
            raise HttpError(404, "unknown_job", str(exc)) from None
        if view.owner != principal.username:
            # The same answer as for an unknown id: others' job ids are not confirmed.
            raise HttpError(404, "unknown_job", f"no job {job_id!r} of this user")
        return view

    # -- tasks ---------------------------------------------------------------------------------

    async def list_tasks(self, request: Request) -> JSONResponse:
        """Tasks any attached host runs (submit without a host), and tasks only federated
        hosts run (submit with `host`), each with the hosts that offer it."""
        queue = self.need_queue()
        attached = queue.hosts()
        offered = queue.offered_tasks()
        tasks: dict[str, dict[str, Any]] = {}
        for name, schema in sorted(offered.items()):
            tasks[name] = {**schema.to_wire(), "hosts": []}
        federated: dict[str, dict[str, Any]] = {}
        for peer, (names, free) in attached.items():
            for name in sorted(names):
                if name in tasks:
                    tasks[name]["hosts"].append(
                        {"peer_id": str(peer), "attached": True, "free_slots": free}
                    )
        listed = {str(peer) for peer in attached}
        for row in self.network.peer_rows():
            record = row.record
            if record is None or "gpu" not in record.roles or row.peer_id in listed:
                continue
            for wire in record.plain_tasks():
                name = wire.get("name")
                host = {"peer_id": row.peer_id, "attached": False, "free_slots": record.free_slots}
                if name in tasks:
                    tasks[name]["hosts"].append(host)
                elif type(name) is str:
                    federated.setdefault(name, {**wire, "hosts": []})["hosts"].append(host)
        return JSONResponse(
            {"tasks": list(tasks.values()), "federated_only": list(federated.values())}
        )

    # -- submitting ----------------------------------------------------------------------------

    def check_limits(self, principal: Principal, request: Request) -> None:
        if principal.operator:
            return
        assert self.active is not None
        now = self.clock()
        wait = self.per_address.take(client_address(request), now)
        if wait:
            raise too_many("rate_limited", "too many job submissions from this address", wait)
        wait = self.per_account.take(principal.username, now)
        if wait:
            raise too_many("rate_limited", "too many job submissions by this account", wait)
        active = self.active.count(principal.username)
        if active >= self.settings.max_active_jobs:
            raise HttpError(
                429,
                "too_many_active_jobs",
                f"you have {active} jobs queued or running, the most one account may have; "
                "wait for one to finish (or cancel one) and submit again",
                headers={"Retry-After": "5"},
                retry_after_s=5,
            )

    async def submit_job(self, request: Request) -> JSONResponse:
        principal = self.gate.user(request)
        queue = self.need_queue()
        self.check_limits(principal, request)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            body, pending = await self.read_multipart(request)
        else:
            raw = await read_body(request, self.settings.max_request_bytes)
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise HttpError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
            pending = []
        task, inputs, host = _job_request(body)
        view = await self.accept(principal, task, inputs, host, pending)
        return JSONResponse(job_json(view, queue_position(queue, view.job_id)), 201)

    async def accept(
        self,
        principal: Principal,
        task: str,
        inputs: dict[str, Any],
        host: PeerId | None = None,
        pending: list[_Pending] | None = None,
    ) -> JobView:
        """Store the request's images, then submit; refusals as HTTP errors (limits are the
        caller's to check first)."""
        queue = self.need_queue()
        pending = (pending or []) + _inline_images(inputs, self.settings.max_image_bytes)
        if pending:
            await self.store_images(queue, pending)
        try:
            view = await queue.submit(principal.username, task, inputs, host=host)
        except InvalidJobInput as exc:
            raise HttpError(422, "invalid_inputs", str(exc), problems=exc.to_wire()) from None
        except TrustExhausted as exc:
            raise too_many("trust_exhausted", str(exc), exc.retry_at - self.clock()) from None
        except UserSuspended as exc:
            raise HttpError(403, "suspended", str(exc)) from None
        except (NoSuchTask, NoHostForTask) as exc:
            raise HttpError(404, "no_such_task", str(exc)) from None
        except JobError as exc:
            raise HttpError(409, "not_accepted", str(exc)) from None
        if self.active is not None:
            self.active.add(principal.username, view.job_id)
        return view

    async def read_multipart(self, request: Request) -> tuple[Any, list[_Pending]]:
        """`request` (a JSON part: task, inputs, host) and one file part per image input:
        named as the input, or `name[]` for each image of an image list."""
        declared = request.headers.get("content-length")
        limit = self.settings.max_request_bytes
        if declared is None or not declared.isdigit():
            raise HttpError(411, "length_required", "send multipart uploads with Content-Length")
        if int(declared) > limit:
            raise await refuse_too_large(request, limit)
        try:
            form = await request.form(max_files=64, max_fields=16, max_part_size=1 << 20)
        except Exception as exc:  # python-multipart's errors have no common base
            raise HttpError(
                400, "bad_multipart", f"the multipart body cannot be read: {exc}"
            ) from None
        try:
            text = form.get("request")
            if not isinstance(text, str):
                raise HttpError(
                    400,
                    "bad_request",
                    "a multipart job needs a 'request' part holding "
                    '{"task": ..., "inputs": {...}} as JSON',
                )
            try:
                body = json.loads(text)
            except ValueError as exc:
                raise HttpError(400, "bad_json", f"the 'request' part is not JSON: {exc}") from None
            if type(body) is not dict or type(body.get("inputs", {})) is not dict:
                raise HttpError(400, "bad_request", 'expected {"task": ..., "inputs": {...}}')
            inputs = body.setdefault("inputs", {})
            pending: list[_Pending] = []
            for key, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    continue
                data = await value.read(self.settings.max_image_bytes + 1)
                name = key.removesuffix("[]")
                if key.endswith("[]"):
                    images = inputs.setdefault(name, [])
                    if type(images) is not list:
                        raise HttpError(400, "bad_request", f"{name}: both a value and files")
                    images.append(None)
                    at = len(images) - 1
                    pending.append(_Pending(f"{name}[{at}]", _setter(images, at), data=data))
                else:
                    pending.append(_Pending(name, _setter(inputs, name), data=data))
        finally:
            await form.close()
        return body, pending

    async def store_images(self, queue: QueueService, pending: list[_Pending]) -> None:
        settings = self.settings

        def check_and_store() -> list[tuple[_Pending, str, CheckedImage]]:
            done = []
            for item in pending:
                if item.data is None:
                    assert item.blob is not None
                    try:
                        data = queue.blobs.get(BlobId.parse(item.blob))
                    except LightboxError:
                        raise HttpError(
                            404,
                            "unknown_blob",
                            f"{item.field}: no blob {item.blob} on this node; send the image "
                            "itself as a data URL or a file",
                            field=item.field,
                        ) from None
                else:
                    data = item.data
                image = check_image(
                    data,
                    item.field,
                    max_bytes=settings.max_image_bytes,
                    max_pixels=settings.max_image_pixels,
                )
                blob = item.blob or str(queue.blobs.put(data))
                done.append((item, blob, image))
            return done

        done = await trio.to_thread.run_sync(check_and_store, limiter=self.image_limiter)
        for item, blob, image in done:
            item.put(image_value(blob, image))

    # -- reading -------------------------------------------------------------------------------

    async def list_jobs(self, request: Request) -> JSONResponse:
        """The caller's jobs, newest first; `?state=` filters, `?limit=` caps (500)."""
        principal = self.gate.user(request)
        queue = self.need_queue()
        state = request.query_params.get("state")
        if state is not None and state not in {s.value for s in JobState}:
            allowed = ", ".join(s.value for s in JobState)
            raise HttpError(400, "bad_state", f"state must be one of {allowed}")
        limit = _int_param(request, "limit", 100, 1, MAX_LISTED_JOBS)
        mine = [
            job
            for job in queue.scheduler.jobs()
            if job.spec.owner == principal.username and (state is None or job.state.value == state)
        ]
        mine.sort(key=lambda job: job.spec.submitted_at, reverse=True)
        return JSONResponse({"jobs": [job_json(view_of(job)) for job in mine[:limit]]})

    async def get_job(self, request: Request) -> JSONResponse:
        view = self.owned(self.gate.user(request), request.path_params["job_id"])
        return JSONResponse(job_json(view, queue_position(self.need_queue(), view.job_id)))

    async def cancel_job(self, request: Request) -> JSONResponse:
        view = self.owned(self.gate.user(request), request.path_params["job_id"])
        return JSONResponse(job_json(await self.need_queue().cancel(view.job_id)))

    async def outputs(self, request: Request) -> tuple[JobView, list[tuple[str, bytes]]]:
        view = self.owned(self.gate.user(request), request.path_params["job_id"])
        try:
            return view, await self.need_queue().result(view.job_id)
        except JobError as exc:
            raise HttpError(409, "not_done", str(exc), state=view.state) from None

    async def job_result(self, request: Request) -> JSONResponse:
        """Every output base64-encoded by name, and a file list with download URLs."""
        import base64

        view, outputs = await self.outputs(request)
        files = [
            {
                "index": index,
                "name": name,
                "media_type": self.media_type(view, name, data),
                "bytes": len(data),
                "url": f"/api/v1/jobs/{view.job_id}/outputs/{index}",
            }
            for index, (name, data) in enumerate(outputs)
        ]
        return JSONResponse(
            {
                "outputs": {name: base64.b64encode(data).decode() for name, data in outputs},
                "files": files,
            }
        )

    async def job_output(self, request: Request) -> Response:
        """One output as a file, with its content type (PNG/WebP/JPEG images, text, …)."""
        view, outputs = await self.outputs(request)
        index = request.path_params["index"]
        if not 0 <= index < len(outputs):
            raise HttpError(
                404, "no_such_output", f"job {view.job_id} has outputs 0 to {len(outputs) - 1}"
            )
        name, data = outputs[index]
        media_type = self.media_type(view, name, data)
        extension = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}.get(
            media_type, "txt" if media_type.startswith("text/") else "bin"
        )
        return Response(
            data,
            media_type=media_type,
            headers={
                "Content-Disposition": f'inline; filename="{view.job_id}-{name}.{extension}"',
                "X-Content-Type-Options": "nosniff",
            },
        )

    def media_type(self, view: JobView, name: str, data: bytes) -> str:
        sniffed = sniff_media_type(data)
        if sniffed:
            return sniffed
        schema = self.need_queue().offered_tasks().get(view.task)
        declared = (
            next((o.media_type for o in schema.outputs if o.name == name), "") if schema else ""
        )
        if declared and not declared.startswith("image/"):
            return declared + ("; charset=utf-8" if declared.startswith("text/") else "")
        return "application/octet-stream"

    # -- live events ---------------------------------------------------------------------------

    async def job_events(self, websocket: WebSocket) -> None:
        """Send the job (state, progress, queue position) at every change until it ends.

        Each message is `{"type": "job", "job": {...}}`; the last one has a final state and
        the socket then closes normally. Refusals close with 4401 (no or bad token), 4403
        (wrong scope) or 4404 (no such job of yours), after a reason message.
        """
        await websocket.accept()
        try:
            principal = self.gate.user(websocket)
            view = self.owned(principal, websocket.path_params["job_id"])
        except HttpError as exc:
            code = {401: 4401, 403: 4403}.get(exc.status, 4404)
            await websocket.send_json({"type": "error", "error": exc.code, "detail": exc.detail})
            await websocket.close(code=code, reason=exc.code)
            return
        queue = self.need_queue()
        send_lock = trio.Lock()
        last: dict[str, Any] = {}

        async def send(current: JobView) -> None:
            message = {
                "type": "job",
                "job": job_json(current, queue_position(queue, current.job_id)),
            }
            async with send_lock:
                if message != last:
                    last.clear()
                    last.update(message)
                    await websocket.send_json(message)

        async def follow(cancel: trio.CancelScope) -> None:
            async for current in queue.watch(view.job_id):
                await send(current)
            await websocket.close(code=1000)
            cancel.cancel()

        async def follow_position() -> None:
            # The queue moves when other jobs leave it, which does not wake this job's watch.
            while True:
                await trio.sleep(self.settings.queue_position_every_s)
                try:
                    current = queue.job(view.job_id)
                except UnknownJob:
                    return
                if current.state == JobState.QUEUED.value:
                    await send(current)

        async def until_closed(cancel: trio.CancelScope) -> None:
            try:
                while True:
                    message = await websocket.receive()
                    if message["type"] == "websocket.disconnect":
                        break
            except (WebSocketDisconnect, RuntimeError):
                pass
            cancel.cancel()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow, nursery.cancel_scope)
                nursery.start_soon(follow_position)
                nursery.start_soon(until_closed, nursery.cancel_scope)
        except* (WebSocketDisconnect, OSError, RuntimeError):
            # The client went away mid-send (Starlette says so with RuntimeError once the
            # socket is closed); there is nobody left to tell.
            pass


def _setter(container: Any, key: Any) -> Callable[[dict[str, Any]], None]:
    def put(value: dict[str, Any]) -> None:
        container[key] = value

    return put


def _job_request(body: Any) -> tuple[str, dict[str, Any], PeerId | None]:
    if type(body) is not dict or type(body.get("task")) is not str:
        raise HttpError(400, "bad_request", 'expected {"task": ..., "inputs": {...}}')
    inputs = body.get("inputs", {})
    if type(inputs) is not dict:
        raise HttpError(400, "bad_request", "inputs must be an object")
    host = None
    if body.get("host") is not None:
        try:
            host = PeerId.parse(body["host"])
        except PeerIdError as exc:
            raise HttpError(400, "bad_host", str(exc)) from None
    return body["task"], inputs, host


def _inline_images(inputs: dict[str, Any], max_bytes: int) -> list[_Pending]:
    """Images given inline: a data URL (alone, in a list, or as an image map's `blob`), or
    an image map naming a blob of this node, whose facts are then read from the bytes."""
    found: list[_Pending] = []

    def visit(field: str, container: Any, key: Any, value: Any) -> None:
        if is_data_url(value):
            found.append(
                _Pending(
                    field, _setter(container, key), data=decode_data_url(value, field, max_bytes)
                )
            )
        elif type(value) is dict and "blob" in value:
            blob = value["blob"]
            if is_data_url(blob):
                found.append(
                    _Pending(
                        field, _setter(container, key), data=decode_data_url(blob, field, max_bytes)
                    )
                )
            elif type(blob) is str and blob.startswith(BLOB_ID_TEXT):
                try:
                    BlobId.parse(blob)
                except LightboxError:
                    return  # schema validation names the bad id
                found.append(_Pending(field, _setter(container, key), blob=blob))

    for name, value in list(inputs.items()):
        if type(value) is list:
            for index, item in enumerate(value):
                visit(f"{name}[{index}]", value, index, item)
        else:
            visit(name, inputs, name, value)
    return found


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise HttpError(400, f"bad_{name}", f"{name} must be an integer from {low} to {high}")
    return int(text)
