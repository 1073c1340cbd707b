"""Built-in test tasks every GPU host can run (noop, sleep, echo, fail), and the runner contract.

The test tasks exercise the whole dispatch path (schemas, validation, progress, cancellation,
faults) without a model, so tests, benchmarks and the demo can drive real jobs on any machine.
`TaskRunner` is what a GPU host runs; `RunContext` is what a running job gets from its host.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import outcome
import trio

from lightbox_node.tasks import (
    FixedCost,
    IntegerInput,
    NumberInput,
    Output,
    ProductCost,
    TaskSchema,
    TextInput,
)

if TYPE_CHECKING:
    from PIL.Image import Image

log = logging.getLogger("lightbox.gpu")

ProgressCallback = Callable[[float, str], None]

ImageResolver = Callable[[str], Awaitable[bytes]]
ConceptResolver = Callable[[str], Awaitable["ConceptModel"]]
"""Fetches the bytes of an image input by its blob id (`sha256-…`)."""

NO_IMAGE_RESOLVER = (
    "this host cannot fetch image inputs yet (blob transfer between nodes is not built)"
)

T = TypeVar("T")


class TaskRunner(Protocol):
    """Something a GPU host can run: a schema and an async `run` returning named outputs.

    A host passes a `RunContext` as `progress`: it is called like a plain progress callback
    (so simple runners need nothing else), and a model runner also uses it to fetch image
    inputs, to run heavy work in a worker thread and to learn that the job was cancelled.
    Outputs are `(output name, bytes)` pairs; an image list output repeats its name.
    """

    schema: TaskSchema

    def run(
        self, inputs: Mapping[str, Any], progress: ProgressCallback
    ) -> Awaitable[list[tuple[str, bytes]]]: ...


class TaskFailed(Exception):
    """Raised by a runner for a fault the job's owner should read (not a bug in the host)."""


class Interrupted(TaskFailed):
    """Raised in a worker thread that saw its job's cancel flag, between two steps."""

    def __init__(self) -> None:
        super().__init__("the job was cancelled")


@dataclass(frozen=True, slots=True)
class ConceptModel:
    """A concept's global model: its blob id (text) and the weights blob's bytes."""

    concept: str
    model_id: str
    data: bytes


class RunContext:
    """What a running job gets from its host: progress, image inputs and a cancel flag.

    Calling it reports progress, from the trio thread or from a worker thread (the report
    is handed to trio without blocking the worker). `run_sync` runs heavy work in a worker
    thread and sets `cancelled` when the job's trio scope is cancelled (the queue cancelled
    it, its deadline passed, the host shut down); the worker calls `raise_if_cancelled`
    between steps and so stops within one step. Created inside a trio run.
    """

    def __init__(
        self,
        progress: ProgressCallback | None = None,
        *,
        images: ImageResolver | None = None,
        concepts: ConceptResolver | None = None,
    ) -> None:
        self._progress = progress
        self._images = images
        self._concepts = concepts
        self.cancelled = threading.Event()
        self._token = trio.lowlevel.current_trio_token() if trio.lowlevel.in_trio_run() else None

    @classmethod
    def of(cls, progress: ProgressCallback) -> RunContext:
        """`progress` itself when it is a RunContext, else a context that reports to it."""
        return progress if isinstance(progress, RunContext) else cls(progress)

    # -- progress -------------------------------------------------------------------------

    def __call__(self, fraction: float, message: str) -> None:
        if self._progress is None:
            return
        if self._token is None or trio.lowlevel.in_trio_run():
            self._progress(fraction, message)
            return
        with contextlib.suppress(trio.RunFinishedError):  # shutting down: nobody listens
            self._token.run_sync_soon(self._report, fraction, message)

    def _report(self, fraction: float, message: str) -> None:
        # Runs as a trio "run_sync_soon" callback, where an exception would crash trio.
        try:
            assert self._progress is not None
            self._progress(fraction, message)
        except Exception:
            log.exception("progress report failed")

    # -- inputs ---------------------------------------------------------------------------

    @property
    def can_fetch_images(self) -> bool:
        return self._images is not None

    async def image_bytes(self, value: Mapping[str, Any]) -> bytes:
        """The bytes of an image input value (`{"blob": "sha256-…", "width": …}`)."""
        if self._images is None:
            raise TaskFailed(NO_IMAGE_RESOLVER)
        return await self._images(str(value["blob"]))

    async def concept(self, name: str) -> ConceptModel:
        """The current global model of concept `name` (its blob id and bytes), as committed
        in the registry when the job started; fetched from peers if this node lacks it."""
        if self._concepts is None:
            raise TaskFailed(f"this host cannot resolve concepts (asked for {name!r})")
        return await self._concepts(name)

    async def image(self, value: Mapping[str, Any]) -> Image:
        """An image input, fetched and decoded (in a worker thread), its size checked."""
        data = await self.image_bytes(value)
        return await trio.to_thread.run_sync(decode_image, data, value)

    # -- worker threads -------------------------------------------------------------------

    def raise_if_cancelled(self) -> None:
        """For worker threads, between steps: stop here if the job was cancelled."""
        if self.cancelled.is_set():
            raise Interrupted

    async def run_sync(self, work: Callable[..., T], *args: Any) -> T:
        """`work(*args)` in a worker thread; cancelling the caller sets `cancelled` and waits.

        The thread is never abandoned (a GPU job that kept running after its slot was given
        to the next job would slow both), so cancellation takes effect at the worker's next
        `raise_if_cancelled`, and then raises `trio.Cancelled` here as usual.
        """
        result: list[outcome.Outcome[T]] = []
        finished = False

        async def flag_when_cancelled() -> None:
            try:
                await trio.sleep_forever()
            finally:
                if not finished:
                    self.cancelled.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(flag_when_cancelled)
            result.append(
                await outcome.acapture(
                    trio.to_thread.run_sync, work, *args, abandon_on_cancel=False
                )
            )
            finished = True
            nursery.cancel_scope.cancel()
        # Outside the nursery, so a fault reaches the host as itself, not in an ExceptionGroup;
        # if the caller was cancelled, the watcher's Cancelled has already propagated instead.
        return result[0].unwrap()


def decode_image(data: bytes, value: Mapping[str, Any] | None = None) -> Image:
    """Decode image bytes fully; with an input `value`, check the size the job claimed."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        if value is not None and image.size != (value["width"], value["height"]):
            raise TaskFailed(
                f"the image is {image.size[0]}×{image.size[1]}, but the job says "
                f"{value['width']}×{value['height']}"
            )
        image.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TaskFailed(f"an input image cannot be decoded: {exc}") from None
    return image


_STATUS = Output(
    name="status", type="text", description="What the task did.", media_type="text/plain"
)


MAX_NOOP_BYTES = 16 << 20


class NoopTask:
    schema = TaskSchema(
        name="noop",
        title="No-op",
        description=(
            "Does nothing and returns at once, with filler bytes if asked; for tests and "
            "dispatch benchmarks."
        ),
        inputs=(
            IntegerInput(
                name="size",
                label="Result size",
                help="Return this many filler bytes instead of 'ok' (large results travel "
                "as blobs).",
                default=0,
                min=0,
                max=MAX_NOOP_BYTES,
                unit="bytes",
            ),
        ),
        outputs=(_STATUS,),
        cost=FixedCost(units=1.0),
    )

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        size = int(inputs.get("size", 0))
        return [("status", filler(size) if size else b"ok")]


def filler(size: int) -> bytes:
    """`size` bytes of printable text in a pattern, not one repeated byte, so that a shifted
    or truncated copy does not compare equal by accident (it is a text output)."""
    pattern = bytes(range(32, 127)) + b"\t\n"  # 97, a prime: no chunk size lines up with it
    return (pattern * (size // len(pattern) + 1))[:size]


class SleepTask:
    schema = TaskSchema(
        name="sleep",
        title="Sleep",
        description="Waits for the given time, reporting progress ten times; for tests.",
        inputs=(
            NumberInput(
                name="seconds",
                label="Seconds",
                help="How long to take.",
                default=1.0,
                min=0.0,
                max=600.0,
                unit="s",
            ),
        ),
        outputs=(_STATUS,),
        cost=ProductCost(factors=("seconds",), scale=1.0),
    )

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        seconds = float(inputs.get("seconds", 1.0))
        for step in range(10):
            await trio.sleep(seconds / 10)
            progress((step + 1) / 10, f"slept {seconds * (step + 1) / 10:.1f} s")
        return [("status", f"slept {seconds:g} s".encode())]


class EchoTask:
    schema = TaskSchema(
        name="echo",
        title="Echo",
        description="Returns its text as a text output; for tests.",
        inputs=(TextInput(name="text", label="Text", required=True, max_length=10_000),),
        outputs=(Output(name="text", type="text", media_type="text/plain"),),
        cost=FixedCost(units=1.0),
    )

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        return [("text", str(inputs["text"]).encode())]


class FailTask:
    schema = TaskSchema(
        name="fail",
        title="Fail",
        description="Always faults with the given message; for tests of requeue and failure.",
        inputs=(TextInput(name="message", label="Message", default="asked to fail"),),
        outputs=(_STATUS,),
        cost=FixedCost(units=1.0),
    )

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        raise TaskFailed(str(inputs.get("message", "asked to fail")))


def test_task_runners() -> dict[str, TaskRunner]:
    return {r.schema.name: r for r in (NoopTask(), SleepTask(), EchoTask(), FailTask())}


test_task_runners.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
