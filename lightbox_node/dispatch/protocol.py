"""The "jobs" protocol between queue nodes and GPU hosts: message layouts and strict parsing.

Every body is a msgpack array with a tag first. Bodies come from peers, so `parse_*` checks
exact types and bounds and raises `MalformedMessage` for anything else; the caller scores
the peer and drops the body.

Host to queue::

    ["hello", tasks, free_slots]                 tasks: [task schema (TaskSchema.to_wire())]
    ["slots", free_slots]                        slots free now (after a job ends, say)
    ["started", job_id, attempt]
    ["progress", job_id, attempt, fraction, message]     fraction 0..1, message ≤ 200 chars
    ["done", job_id, attempt, outputs]           outputs: [[name, bytes], ...]
    ["fault", job_id, attempt, reason]           reason ≤ 500 chars

Queue to host::

    ["run", job_id, attempt, task, inputs, deadline_s]
    ["cancel", job_id, attempt]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightbox_node.errors import MalformedMessage
from lightbox_node.sched.jobs import JOB_ID_PATTERN

MAX_TASKS = 64
MAX_SLOTS = 1024
MAX_OUTPUTS = 64
MAX_REASON = 500
MAX_PROGRESS_MESSAGE = 200
MAX_OUTPUT_BYTES = 900 << 10
"""Inline results share the 1 MiB link message; bigger results wait for blob transfer."""


@dataclass(frozen=True, slots=True)
class Hello:
    tasks: list[dict[str, Any]]
    free_slots: int


@dataclass(frozen=True, slots=True)
class Slots:
    free_slots: int


@dataclass(frozen=True, slots=True)
class Started:
    job_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Progress:
    job_id: str
    attempt: int
    fraction: float
    message: str


@dataclass(frozen=True, slots=True)
class Done:
    job_id: str
    attempt: int
    outputs: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Fault:
    job_id: str
    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class Run:
    job_id: str
    attempt: int
    task: str
    inputs: dict[str, Any]
    deadline_s: float


@dataclass(frozen=True, slots=True)
class Cancel:
    job_id: str
    attempt: int


HostMessage = Hello | Slots | Started | Progress | Done | Fault
QueueMessage = Run | Cancel


def _text(value: Any, limit: int, what: str) -> str:
    if type(value) is not str or len(value) > limit:
        raise MalformedMessage(f"{what} must be text of at most {limit} characters")
    return value


def _count(value: Any, limit: int, what: str) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise MalformedMessage(f"{what} must be an integer from 0 to {limit}")
    return value


def _job_ref(body: list[Any]) -> tuple[str, int]:
    job_id, attempt = body[1], body[2]
    if type(job_id) is not str or not JOB_ID_PATTERN.fullmatch(job_id):
        raise MalformedMessage("job id must look like j-<24 hex digits>")
    return job_id, _count(attempt, 1_000_000, "attempt")


def _shape(body: Any, sizes: dict[str, int]) -> str:
    if type(body) is not list or not body or type(body[0]) is not str:
        raise MalformedMessage("a jobs message is [tag, ...]")
    tag = body[0]
    if tag not in sizes:
        raise MalformedMessage(f"unknown jobs message {tag[:20]!r}")
    if len(body) != sizes[tag]:
        raise MalformedMessage(f"jobs message {tag!r} has {len(body)} fields, not {sizes[tag]}")
    return tag


_HOST_SIZES = {"hello": 3, "slots": 2, "started": 3, "progress": 5, "done": 4, "fault": 4}
_QUEUE_SIZES = {"run": 6, "cancel": 3}


def parse_host_message(body: Any) -> HostMessage:
    """A message a GPU host sent to a queue node."""
    tag = _shape(body, _HOST_SIZES)
    if tag == "hello":
        tasks = body[1]
        if type(tasks) is not list or len(tasks) > MAX_TASKS:
            raise MalformedMessage(f"hello tasks must be a list of at most {MAX_TASKS}")
        if any(type(t) is not dict for t in tasks):
            raise MalformedMessage("each hello task is a task schema map")
        return Hello(tasks, _count(body[2], MAX_SLOTS, "free slots"))
    if tag == "slots":
        return Slots(_count(body[1], MAX_SLOTS, "free slots"))
    job_id, attempt = _job_ref(body)
    if tag == "started":
        return Started(job_id, attempt)
    if tag == "progress":
        fraction = body[3]
        if type(fraction) not in (int, float) or not 0 <= fraction <= 1:
            raise MalformedMessage("progress fraction must be a number from 0 to 1")
        return Progress(
            job_id,
            attempt,
            float(fraction),
            _text(body[4], MAX_PROGRESS_MESSAGE, "progress message"),
        )
    if tag == "fault":
        return Fault(job_id, attempt, _text(body[3], MAX_REASON, "fault reason"))
    outputs = body[3]
    if type(outputs) is not list or len(outputs) > MAX_OUTPUTS:
        raise MalformedMessage(f"done outputs must be a list of at most {MAX_OUTPUTS}")
    parsed: list[tuple[str, bytes]] = []
    total = 0
    for item in outputs:
        if type(item) is not list or len(item) != 2 or type(item[1]) is not bytes:
            raise MalformedMessage("each output is [name, bytes]")
        total += len(item[1])
        parsed.append((_text(item[0], 64, "output name"), item[1]))
    if total > MAX_OUTPUT_BYTES:
        raise MalformedMessage(f"outputs over {MAX_OUTPUT_BYTES} bytes")
    return Done(job_id, attempt, parsed)


def parse_queue_message(body: Any) -> QueueMessage:
    """A message a queue node sent to a GPU host."""
    tag = _shape(body, _QUEUE_SIZES)
    job_id, attempt = _job_ref(body)
    if tag == "cancel":
        return Cancel(job_id, attempt)
    task, inputs, deadline = body[3], body[4], body[5]
    if type(inputs) is not dict:
        raise MalformedMessage("run inputs must be a map")
    if type(deadline) not in (int, float) or not 0 < deadline <= 7 * 86400:
        raise MalformedMessage("run deadline must be a positive number of seconds")
    return Run(job_id, attempt, _text(task, 64, "task"), inputs, float(deadline))


def encode(message: HostMessage | QueueMessage) -> list[Any]:
    """The wire body of a message (the inverse of the parsers)."""
    match message:
        case Hello(tasks, free):
            return ["hello", tasks, free]
        case Slots(free):
            return ["slots", free]
        case Started(job_id, attempt):
            return ["started", job_id, attempt]
        case Progress(job_id, attempt, fraction, text):
            return ["progress", job_id, attempt, fraction, text]
        case Done(job_id, attempt, outputs):
            return ["done", job_id, attempt, [[name, data] for name, data in outputs]]
        case Fault(job_id, attempt, reason):
            return ["fault", job_id, attempt, reason]
        case Run(job_id, attempt, task, inputs, deadline):
            return ["run", job_id, attempt, task, inputs, deadline]
        case Cancel(job_id, attempt):
            return ["cancel", job_id, attempt]
    raise TypeError(f"not a jobs message: {message!r}")
