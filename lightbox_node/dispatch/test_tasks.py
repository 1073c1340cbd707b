"""Built-in test tasks every GPU host can run: noop, sleep, echo, fail.

They exercise the whole dispatch path (schemas, validation, progress, cancellation, faults)
without a model, so tests, benchmarks and the demo can drive real jobs on any machine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import trio

from lightbox_node.tasks import (
    FixedCost,
    NumberInput,
    Output,
    ProductCost,
    TaskSchema,
    TextInput,
)

ProgressCallback = Callable[[float, str], None]


class TaskRunner(Protocol):
    """Something a GPU host can run: a schema and an async `run` returning named outputs."""

    schema: TaskSchema

    def run(
        self, inputs: Mapping[str, Any], progress: ProgressCallback
    ) -> Awaitable[list[tuple[str, bytes]]]: ...


class TaskFailed(Exception):
    """Raised by a runner for a fault the job's owner should read (not a bug in the host)."""


_STATUS = Output(
    name="status", type="text", description="What the task did.", media_type="text/plain"
)


class NoopTask:
    schema = TaskSchema(
        name="noop",
        title="No-op",
        description="Does nothing and returns at once; for tests and dispatch benchmarks.",
        outputs=(_STATUS,),
        cost=FixedCost(units=1.0),
    )

    async def run(self, inputs: Mapping[str, Any], progress: ProgressCallback) -> list:
        return [("status", b"ok")]


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
