"""A queue node's HTTP API on loopback with fake GPU hosts, served from its own trio thread.

Tests talk to it over real HTTP and WebSocket (so hypercorn, Starlette and the queue service
are all exercised), from plain synchronous tests or from trio tests alike.
"""

from __future__ import annotations

import inspect
import io
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from PIL import Image

from lightbox_node.accounts import (
    FAST_TEST_COST,
    AccountService,
    AccountSettings,
    create_admin,
    solve,
)
from lightbox_node.api import NodeStatus, create_app, serve_http
from lightbox_node.api.settings import ApiSettings
from lightbox_node.dispatch.attach import run_local_pair
from lightbox_node.dispatch.host import GpuHost
from lightbox_node.dispatch.queue import QueueService
from lightbox_node.dispatch.test_tasks import test_task_runners
from lightbox_node.gossip.peer_policy import PeerPolicy
from lightbox_node.identity import Identity
from lightbox_node.sched.scheduler import Scheduler
from lightbox_node.store import BlobId, BlobStore, open_database
from lightbox_node.tasks.builtin import IMG2IMG, TXT2IMG

ADMIN = "root"
ADMIN_PASSWORD = "correct horse battery"
OPERATOR_TOKEN = "operator-secret-for-tests"
PASSWORD = "a long enough password"


def png(width: int, height: int, color: tuple[int, int, int] = (200, 40, 40), kind="PNG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, kind)
    return out.getvalue()


class FakeTxt2Img:
    """Paints one flat PNG per image asked for, with progress, at once."""

    schema = TXT2IMG

    async def run(self, inputs: Mapping[str, Any], progress: Any) -> list[tuple[str, bytes]]:
        progress(0.5, "painting")
        await trio.sleep(0.01)
        count = int(inputs.get("batch_size", 1))
        side = (int(inputs["width"]), int(inputs["height"]))
        return [("images", png(*side, (10 * i, 100, 200))) for i in range(count)]


class FakeImg2Img:
    """Returns its input image inverted (reads it from the queue node's blob store)."""

    schema = IMG2IMG

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    async def run(self, inputs: Mapping[str, Any], progress: Any) -> list[tuple[str, bytes]]:
        data = self.blobs.get(BlobId.parse(inputs["image"]["blob"]))
        image = Image.open(io.BytesIO(data)).convert("RGB")
        out = io.BytesIO()
        Image.eval(image, lambda v: 255 - v).save(out, "WEBP")
        return [("images", out.getvalue())]


@dataclass
class FakeNetwork:
    policy: PeerPolicy = field(default_factory=PeerPolicy)

    def peer_rows(self) -> list[Any]:
        return []

    def score_table(self) -> list[Any]:
        return []

    def replace_policy(self, policy: PeerPolicy) -> None:
        self.policy = policy


class ApiServer:
    """Start with `start()`, stop with `stop()`; `url` is the base URL ("http://…/")."""

    def __init__(
        self,
        data_dir: Path,
        settings: ApiSettings | None = None,
        *,
        pow_difficulty: int = 6,
        slots: int = 4,
        mailer: Any = None,
    ) -> None:
        self.mailer = mailer
        self.data_dir = data_dir
        self.settings = settings or ApiSettings()
        self.pow_difficulty = pow_difficulty
        self.slots = slots
        self.identity = Identity.from_seed(b"\x07" * 32)
        self.url = ""
        self.network = FakeNetwork()
        self.queue: QueueService | None = None
        self.accounts: AccountService | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._shutdown: trio.Event | None = None
        self._thread = threading.Thread(target=self._thread_main, daemon=True)

    def start(self) -> ApiServer:
        database = self.data_dir / "node.sqlite3"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        db = open_database(database)
        create_admin(db, ADMIN, ADMIN_PASSWORD, cost=FAST_TEST_COST)
        db.close()
        self._thread.start()
        if not self._ready.wait(20) or self._error is not None:
            raise RuntimeError(f"the API server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._token is not None and self._shutdown is not None:
            trio.from_thread.run_sync(self._shutdown.set, trio_token=self._token)
        self._thread.join(10)

    def call(self, fn: Any, *args: Any) -> Any:
        """Run `fn(*args)` on the server's trio thread (to look at its state)."""
        assert self._token is not None
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._shutdown = trio.Event()
        database = open_database(self.data_dir / "node.sqlite3")
        blobs = BlobStore(self.data_dir / "blobs")
        self.accounts = AccountService.open(
            self.data_dir / "node.sqlite3",
            self.identity,
            AccountSettings(password_cost=FAST_TEST_COST, pow_difficulty=self.pow_difficulty),
            mailer=self.mailer,
        )
        queue = self.queue = QueueService(self.identity.peer_id, Scheduler(), database, blobs)
        runners: dict[str, Any] = dict(test_task_runners())
        runners["txt2img"] = FakeTxt2Img()
        runners["img2img"] = FakeImg2Img(blobs)

        async def image_bytes(blob: str) -> bytes:
            return await trio.to_thread.run_sync(blobs.get, BlobId.parse(blob))

        # Hosts learn to fetch image inputs by blob id (`images=`); older hosts lack it.
        accepts_images = "images" in inspect.signature(GpuHost.__init__).parameters
        extra = {"images": image_bytes} if accepts_images else {}
        host = GpuHost(runners, slots=self.slots, **extra)
        started = time.time()

        def status() -> NodeStatus:
            return NodeStatus(
                str(self.identity.peer_id),
                "test",
                ("queue", "gpu"),
                "0",
                started,
                time.time() - started,
            )

        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(queue.run)
                await nursery.start(host.run)
                await nursery.start(run_local_pair, queue, host, self.identity.peer_id)
                app = create_app(
                    status,
                    self.network,
                    queue,
                    api_token=OPERATOR_TOKEN,
                    accounts=self.accounts,
                    settings=self.settings,
                )
                url = await nursery.start(serve_http, app, "127.0.0.1", 0, self._shutdown)
                with trio.fail_after(10):
                    while "txt2img" not in queue.offered_tasks():
                        await trio.sleep(0.01)
                self.url = url
                self._ready.set()
                await self._shutdown.wait()
                await trio.sleep(0.2)
                nursery.cancel_scope.cancel()
        finally:
            self.accounts.close()
            database.close()


# -- client helpers -----------------------------------------------------------------------------


def register(client: httpx.Client, username: str, password: str = PASSWORD, **extra: Any):
    challenge = client.get("/api/v1/accounts/challenge").json()
    answer = solve(challenge["challenge"], challenge["difficulty"])
    body = {
        "username": username,
        "password": password,
        "challenge": challenge["challenge"],
        "answer": answer,
        **extra,
    }
    return client.post("/api/v1/accounts", json=body)


def login(client: httpx.Client, username: str, password: str = PASSWORD, **extra: Any) -> str:
    response = client.post(
        "/api/v1/auth/login", json={"username": username, "password": password, **extra}
    )
    assert response.status_code == 200, response.text
    return response.json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_final(client: httpx.Client, job_id: str, token: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/v1/jobs/{job_id}", headers=bearer(token)).json()
        if job["state"] in ("done", "faulted", "cancelled", "expired"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not end in {timeout} s")
