"""Raft consensus for the model registry: pure cores, no trio, no sockets, time passed in.

* `core` — `RaftNode`, one Raft server: messages, ticks and client requests in, actions out
  (`Persist` first, then `Send`, `RequestDone`, `LeaderChanged`, `PeerEvent`).
* `log` — the replicated log, snapshots, and the durable state (`DurableState`, `Persist`).
* `messages` — the wire messages and their strict parsing from untrusted bodies.
* `storage` — `RaftStorage` (SQLite, fsync'd commits) and `MemoryRaftStorage`.
* `registry` — the registry state machine: current global model per concept and its history.
* `client` — `RegistryClient`, which finds the leader by itself.

The trio shell that runs them over peer links lives in `node`.
"""

from lightbox_node.raft.client import ClientParams, RegistryClient
from lightbox_node.raft.core import (
    CLIENT_PROTOCOL,
    ApplyContext,
    LeaderChanged,
    Outcome,
    RaftAction,
    RaftNode,
    RaftParams,
    RaftStatus,
    RequestDone,
    Role,
    StateMachine,
)
from lightbox_node.raft.log import DurableState, LogEntry, Persist, Snapshot
from lightbox_node.raft.messages import PROTOCOL, Status
from lightbox_node.raft.registry import InvalidCommand, Registry, RegistryLimits
from lightbox_node.raft.storage import MemoryRaftStorage, RaftStorage, create_raft_tables

__all__ = [
    "CLIENT_PROTOCOL",
    "PROTOCOL",
    "ApplyContext",
    "ClientParams",
    "DurableState",
    "InvalidCommand",
    "LeaderChanged",
    "LogEntry",
    "MemoryRaftStorage",
    "Outcome",
    "Persist",
    "RaftAction",
    "RaftNode",
    "RaftParams",
    "RaftStatus",
    "RaftStorage",
    "Registry",
    "RegistryClient",
    "RegistryLimits",
    "RequestDone",
    "Role",
    "Snapshot",
    "StateMachine",
    "Status",
    "create_raft_tables",
]
