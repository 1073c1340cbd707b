"""What the dashboard knows of a node: frozen values that `client.py` builds from API answers.

Nothing here knows URLs or JSON layouts (that is `client.py`'s job), so the screens keep
working when the API's wire format changes. Times are Unix seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FINAL_STATES = frozenset({"done", "faulted", "cancelled", "expired"})
JOB_STATES = ("queued", "dispatched", "running", "done", "faulted", "cancelled", "expired")


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """`who is this node`: the overview's header."""

    peer_id: str
    network: str
    roles: tuple[str, ...]
    version: str
    uptime_s: float
    started_at: float | None = None


@dataclass(frozen=True, slots=True)
class NodeCounters:
    """Node-wide counts an administrator may read: jobs by state, scheduler events, hosts."""

    jobs_by_state: Mapping[str, int]
    events: Mapping[str, int]
    hosts: int | None
    peers_known: int | None
    peers_linked: int | None
    accounts: int | None


@dataclass(frozen=True, slots=True)
class Choice:
    value: str | int
    label: str


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One input of a task's schema, as the form generator needs it."""

    type: str
    name: str
    label: str
    help: str = ""
    required: bool = False
    default: Any = None
    advanced: bool = False
    group: str = "main"
    order: int = 0
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    unit: str = ""
    options: tuple[Choice, ...] = ()
    multiline: bool = False
    placeholder: str = ""
    max_length: int | None = None
    format: str = ""
    """A named form the text must have (`concept`: a registry concept name); "" for any."""


@dataclass(frozen=True, slots=True)
class OutputSpec:
    name: str
    type: str
    media_type: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class TaskHost:
    """A host offering a task: attached to this queue node, or reachable by federation."""

    peer_id: str
    attached: bool
    free_slots: int | None


@dataclass(frozen=True, slots=True)
class TaskSchema:
    """A task on offer and the inputs its form is generated from."""

    name: str
    title: str
    description: str = ""
    inputs: tuple[InputSpec, ...] = ()
    outputs: tuple[OutputSpec, ...] = ()
    groups: tuple[tuple[str, str], ...] = (("main", "Settings"),)
    hosts: tuple[TaskHost, ...] = ()
    federated_only: bool = False


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A peer's signed capability record, as gossip delivered it."""

    roles: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    free_slots: int | None = None
    version: str = ""
    task_names: tuple[str, ...] = ()
    seq: int | None = None
    issued_at: float | None = None
    expires_at: float | None = None
    tasks: tuple[TaskSchema, ...] = ()


@dataclass(frozen=True, slots=True)
class Peer:
    peer_id: str
    linked: bool
    address: str | None
    liveness: str
    score: float | None
    record: PeerRecord | None
    last_seen: float | None = None
    score_components: Mapping[str, Any] | None = field(default=None, compare=False)

    @property
    def roles(self) -> tuple[str, ...]:
        return self.record.roles if self.record else ()


@dataclass(frozen=True, slots=True)
class Host:
    """A GPU host as its queue node sees it."""

    peer_id: str
    online: bool
    tasks: tuple[str, ...]
    slots: int | None
    free_slots: int | None
    in_flight: tuple[str, ...]
    queued: int
    queued_cost: float = 0.0
    seen_at: float | None = None
    draining: bool | None = None
    faults: int | None = None


@dataclass(frozen=True, slots=True)
class QueuedJob:
    job_id: str
    owner: str
    task: str
    priority: float | None
    cost: float | None
    submitted_at: float | None


@dataclass(frozen=True, slots=True)
class QueueView:
    """Each host's queue, best first, and the jobs no host can take yet."""

    queues: Mapping[str, tuple[QueuedJob, ...]]
    unplaced: tuple[QueuedJob, ...]


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    owner: str
    task: str
    state: str
    progress: float = 0.0
    progress_message: str = ""
    attempts: int = 0
    faults: tuple[str, ...] = ()
    results: tuple[str, ...] = ()
    error: str | None = None
    host: str | None = None
    submitted_at: float | None = None
    finished_at: float | None = None
    queue_position: int | None = None
    priority: float | None = None

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True, slots=True)
class JobList:
    """Jobs the node let us see. `scope` says whose, when the node has no node-wide list."""

    jobs: tuple[Job, ...]
    node_wide: bool
    scope: str = ""


@dataclass(frozen=True, slots=True)
class JobResult:
    """A finished job's outputs: (name, bytes, media type) in the node's order."""

    job_id: str
    outputs: tuple[tuple[str, bytes, str], ...]


@dataclass(frozen=True, slots=True)
class UserTrust:
    username: str
    trust: float | None
    suspended: bool
    recovery_eta_s: float | None = None
    active_jobs: int | None = None
    reason: str = ""
    role: str | None = None


@dataclass(frozen=True, slots=True)
class RegistryMember:
    peer_id: str
    role: str
    term: int | None
    leader: bool = False


@dataclass(frozen=True, slots=True)
class ConceptModel:
    concept: str
    model_id: str
    updated_at: float | None = None
    version: int | None = None
    pending_count: int | None = None


@dataclass(frozen=True, slots=True)
class ConceptDetail:
    """One concept: its current global model, the adapters waiting, how long its history is."""

    concept: str
    model_id: str
    version: int | None
    pending_count: int | None
    history_length: int | None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    """One event of a concept's history: an adapter submitted, a merge, or metadata set."""

    seq: int | None
    index: int | None
    kind: str
    by: str
    at: float | None
    adapter: str = ""
    weight: float | None = None
    model_id: str = ""
    version: int | None = None
    adapters: tuple[str, ...] = ()
    metadata: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class RegistryCommit:
    index: int | None
    term: int | None
    concept: str
    model_id: str
    at: float | None = None


@dataclass(frozen=True, slots=True)
class Registry:
    members: tuple[RegistryMember, ...]
    concepts: tuple[ConceptModel, ...]
    commits: tuple[RegistryCommit, ...]


@dataclass(frozen=True, slots=True)
class MetricSamples:
    """Prometheus samples: (name, sorted label pairs) → value."""

    samples: Mapping[tuple[str, tuple[tuple[str, str], ...]], float]

    def value(self, name: str, default: float | None = None, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))), default)

    def family(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [(dict(labels), v) for (n, labels), v in self.samples.items() if n == name]


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """One message of a node-wide events stream: what changed, for an early refresh."""

    kind: str
    body: Mapping[str, Any]
