"""The "jobs" protocol between queue nodes and GPU hosts: message layouts and strict parsing.

Every body is a msgpack array with a tag first. Bodies come from peers, so `parse_*` checks
exact types and bounds and raises `MalformedMessage` for anything else; the caller scores
the peer and drops the body.

Host to queue::

    ["hello", tasks, free_slots]                 tasks: [task schema (TaskSchema.to_wire())]
    ["slots", free_slots]                        slots free now (after a job ends, say)
    ["started", job_id, attempt]
    ["progress", job_id, attempt, fraction, message]     fraction 0..1, message ≤ 200 chars
    ["done", job_id, attempt, outputs]           outputs: [output, ...] in result order
    ["fault", job_id, attempt, reason]           reason ≤ 500 chars

An output is inline, ``[name, bytes]``, or a blob reference, ``[name, blob_id, size]`` with
`blob_id` the text ``sha256-<64 hex>`` and `size` its length in bytes. Inline outputs together
stay within `MAX_OUTPUT_BYTES` (they share one link message); a host sends references only
when its outputs do not fit inline (see `blob_indices`), so a queue node that knows only
inline outputs still gets every result it could take before. The receiver fetches the
referenced blobs from the sender (the blob exchange verifies them) before it calls the job
done, and bounds their total itself (`MAX_RESULT_BYTES`).

Queue to host::

    ["run", job_id, attempt, task, inputs, deadline_s]
    ["cancel", job_id, attempt]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lightbox_node.errors import MalformedMessage
from lightbox_node.sched.jobs import JOB_ID_PATTERN
from lightbox_node.store.blob_id import BlobId, InvalidBlobId

MAX_TASKS = 64
MAX_SLOTS = 1024
MAX_OUTPUTS = 64
MAX_REASON = 500
MAX_PROGRESS_MESSAGE = 200
MAX_OUTPUT_NAME = 64
MAX_OUTPUT_BYTES = 900 << 10
"""Inline outputs share the 1 MiB link message; bigger results travel as blobs."""
MAX_RESULT_BYTES = 512 << 20
"""Default bound on one job's outputs, inline and referenced together: a queue node fetches
no more for one job (a 4x upscale or a LoRA adapter is a few MB; full model weights are not
job results), and a host faults a job whose result is larger instead of sending it."""
MAX_BLOB_REF_BYTES = 32 << 30
"""Sanity bound on one referenced size on the wire; the real limit is the receiver's."""


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
class BlobRef:
    """An output held as a blob by the sender: fetch `blob_id` (`size` bytes) from it."""

    blob_id: BlobId
    size: int


OutputData = bytes | BlobRef
"""An output as a `Done` carries it: its bytes, or a reference to the blob holding them."""


@dataclass(frozen=True, slots=True)
class Done:
    job_id: str
    attempt: int
    outputs: list[tuple[str, OutputData]]

    @property
    def refs(self) -> list[BlobRef]:
        return [data for _, data in self.outputs if isinstance(data, BlobRef)]

    @property
    def total_bytes(self) -> int:
        """Inline and referenced bytes together: what the receiver ends up storing."""
        return sum(
            data.size if isinstance(data, BlobRef) else len(data) for _, data in self.outputs
        )


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
    return Done(job_id, attempt, _outputs(body[3]))


def _outputs(outputs: Any) -> list[tuple[str, OutputData]]:
    if type(outputs) is not list or len(outputs) > MAX_OUTPUTS:
        raise MalformedMessage(f"done outputs must be a list of at most {MAX_OUTPUTS}")
    parsed: list[tuple[str, OutputData]] = []
    inline = 0
    for item in outputs:
        if type(item) is not list or len(item) not in (2, 3):
            raise MalformedMessage("each output is [name, bytes] or [name, blob id, size]")
        name = _text(item[0], MAX_OUTPUT_NAME, "output name")
        if len(item) == 2:
            if type(item[1]) is not bytes:
                raise MalformedMessage("an inline output is [name, bytes]")
            inline += len(item[1])
            parsed.append((name, item[1]))
            continue
        if type(item[1]) is not str:
            raise MalformedMessage("a blob output is [name, blob id text, size]")
        try:
            blob_id = BlobId.parse(item[1])
        except InvalidBlobId as exc:
            raise MalformedMessage(f"output {name[:20]!r}: {exc}") from None
        size = _count(item[2], MAX_BLOB_REF_BYTES, "output blob size")
        if size == 0:
            raise MalformedMessage("an empty output is sent inline, not as a blob")
        parsed.append((name, BlobRef(blob_id, size)))
    if inline > MAX_OUTPUT_BYTES:
        raise MalformedMessage(f"inline outputs over {MAX_OUTPUT_BYTES} bytes")
    return parsed


def blob_indices(sizes: Sequence[int], inline_limit: int = MAX_OUTPUT_BYTES) -> set[int]:
    """Which outputs (by index) travel as blobs: none when all fit inline, else the largest
    ones until the rest fits.

    Inline is the default because it costs nothing more: no disk write on the sender, no
    fetch round trips, and a receiver that predates blob references still takes it. Moving
    the largest first keeps the number of blobs (and fetches) smallest.
    """
    total = sum(sizes)
    chosen: set[int] = set()
    for index in sorted(range(len(sizes)), key=lambda i: sizes[i], reverse=True):
        if total <= inline_limit:
            break
        chosen.add(index)
        total -= sizes[index]
    return chosen


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
            return ["done", job_id, attempt, [_encode_output(n, data) for n, data in outputs]]
        case Fault(job_id, attempt, reason):
            return ["fault", job_id, attempt, reason]
        case Run(job_id, attempt, task, inputs, deadline):
            return ["run", job_id, attempt, task, inputs, deadline]
        case Cancel(job_id, attempt):
            return ["cancel", job_id, attempt]
    raise TypeError(f"not a jobs message: {message!r}")


def _encode_output(name: str, data: OutputData) -> list[Any]:
    if isinstance(data, BlobRef):
        return [name, str(data.blob_id), data.size]
    return [name, data]
