"""Capability records: what a node advertises, sealed as a signed envelope and checked strictly.

A capability record says who a node is on the network (its peer id), which roles it takes,
where it can be dialled, which tasks it runs (their schemas, opaque here) and how many job
slots are free right now. It travels as an envelope of domain `lightbox/capability/v1`
(see `lightbox_node.wire`), so it is signed by its author, carries a sequence number (the
highest per author wins) and has a validity window.

Body layout (a msgpack array inside the envelope's signed bytes)::

    [network, roles, addresses, tasks, free_slots, version, queues]
    [network, roles, addresses, tasks, free_slots, version, queues, blobs]

    network     str, 1..64 chars      must equal the receiver's network name
    roles       [str, ...]            1..3 of "queue", "gpu", "registry", no repeats,
                                      in that canonical order
    addresses   [str, ...]            0..8 dialable URLs: "ws://" or "wss://" followed by
                                      1..240 printable ASCII characters without spaces
    tasks       [map, ...]            0..64 task schemas, each a map with a text "name"
                                      (1..128 chars, unique in the record); the rest of
                                      the map is opaque plain data defined by `tasks`
    free_slots  int                   0..65536
    version     str, 1..64 chars      the author's software version, printable ASCII
    queues      [bytes(32), ...]      0..16 queue nodes (public keys) this GPU host takes
                                      jobs from: how another queue node finds where to
                                      federate a job for this host
    blobs       [bytes(32), ...]      optional, 1..64 SHA-256 digests of blobs the author
                                      holds and offers to peers (model weights, adapters),
                                      newest first, no repeats

The `blobs` field is left out when a node announces nothing, so a record without it is
exactly the seven-field record of earlier versions and stays readable everywhere; it is
part of the signed body, so nobody but the author can claim what the author holds. Only a
bounded set is announced (never every job image): a peer that wants another blob asks its
links directly (the blob exchange's "have" query).

The record's lifetime (`expires_at_ms - issued_at_ms`) is at most one hour, so a node that
stops republishing disappears from everyone's view soon after it expires.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lightbox_node.config import ROLES
from lightbox_node.errors import MalformedMessage, WrongDomain
from lightbox_node.identity import Identity, PeerId
from lightbox_node.wire import DEFAULT_LIMITS, VerifiedEnvelope, WireLimits, open_envelope, seal

RECORD_DOMAIN = "lightbox/capability/v1"

MAX_NETWORK_LEN = 64
MAX_ADDRESSES = 8
MAX_TASKS = 64
MAX_TASK_NAME_LEN = 128
MAX_VERSION_LEN = 64
MAX_FREE_SLOTS = 1 << 16
MAX_RECORD_TTL_MS = 3600 * 1000

RECORD_LIMITS = dataclasses.replace(DEFAULT_LIMITS, max_frame=256 << 10, max_bin=256 << 10)
"""Wire limits for records: one record frame is at most 256 KiB (task schemas included)."""

_ADDRESS = re.compile(r"wss?://[\x21-\x7e]{1,240}")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_BODY_FIELDS = 7
_BODY_FIELDS_WITH_BLOBS = 8
MAX_QUEUES = 16
MAX_BLOBS = 64
"""Blob digests one record may announce: 2 KiB, small beside the task schemas."""
DIGEST_LEN = 32


def message_id_of(frame: bytes) -> bytes:
    """The 16-byte id of a frame, computed before any decoding: equal to
    `VerifiedEnvelope.message_id`, so seen caches can skip known frames without verifying."""
    return hashlib.blake2b(frame, digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class CapabilityRecord:
    """One verified advertisement of a node, as of its `seq`.

    `tasks` holds read-only mappings (nested lists become tuples); `plain_tasks()` gives
    mutable copies for code that wants ordinary dicts.
    """

    author: PeerId
    seq: int
    issued_at_ms: int
    expires_at_ms: int
    network: str
    roles: tuple[str, ...]
    addresses: tuple[str, ...]
    tasks: tuple[Mapping[str, Any], ...]
    free_slots: int
    version: str
    queues: tuple[PeerId, ...] = ()
    blobs: tuple[bytes, ...] = ()
    """SHA-256 digests of the blobs the author offers, newest first."""

    def __hash__(self) -> int:
        # The tasks are mappings (unhashable); author + seq + window identify a record.
        return hash((self.author, self.seq, self.issued_at_ms, self.expires_at_ms))

    def is_live(self, now_ms: int) -> bool:
        return self.expires_at_ms > now_ms

    def plain_tasks(self) -> list[dict[str, Any]]:
        return [_thaw(task) for task in self.tasks]


def build_record_frame(
    identity: Identity,
    *,
    network: str,
    roles: Iterable[str],
    addresses: Iterable[str] = (),
    tasks: Iterable[Mapping[str, Any]] = (),
    free_slots: int = 0,
    version: str,
    queues: Iterable[PeerId] = (),
    blobs: Iterable[bytes] = (),
    seq: int,
    now_ms: int,
    ttl_ms: int,
    limits: WireLimits = RECORD_LIMITS,
) -> bytes:
    """Seal a capability record authored by `identity`, valid for `ttl_ms` from `now_ms`.

    Roles are put in canonical order. Raises MalformedMessage (or FrameTooLarge) if the
    record would be refused by receivers, so a node never publishes what peers drop.
    """
    role_set = set(roles)
    body = [
        network,
        [role for role in ROLES if role in role_set] + sorted(role_set - set(ROLES)),
        list(addresses),
        [_thaw(task) for task in tasks],
        free_slots,
        version,
        [peer.public_key for peer in queues],
    ]
    announced = list(blobs)
    if announced:  # without blobs the record stays the seven-field one older nodes read
        body.append(announced)
    _parse_body(body)
    if type(ttl_ms) is not int or not 0 < ttl_ms <= MAX_RECORD_TTL_MS:
        raise MalformedMessage(f"record ttl must be 1..{MAX_RECORD_TTL_MS} ms, got {ttl_ms!r}")
    return seal(identity, RECORD_DOMAIN, seq, now_ms, now_ms + ttl_ms, body, limits)


def open_record(
    frame: bytes,
    now_ms: int,
    network: str,
    limits: WireLimits = RECORD_LIMITS,
) -> tuple[CapabilityRecord, VerifiedEnvelope]:
    """Verify a record frame from untrusted bytes and validate its body.

    Raises only WireError subclasses: the envelope's own errors (bad signature, wrong
    domain, expired, from the future, too large), MalformedMessage for a body of the wrong
    shape, types or bounds, and WrongDomain for a record of another network.
    """
    verified = open_envelope(frame, expect_domain=RECORD_DOMAIN, now_ms=now_ms, limits=limits)
    envelope = verified.envelope
    if envelope.expires_at_ms - envelope.issued_at_ms > MAX_RECORD_TTL_MS:
        raise MalformedMessage(
            f"record from {envelope.author.short} lives over the {MAX_RECORD_TTL_MS} ms limit"
        )
    rec_network, roles, addresses, tasks, free_slots, version, queues, blobs = _parse_body(
        envelope.body
    )
    if rec_network != network:
        raise WrongDomain(
            f"record from {envelope.author.short} is for network {rec_network!r}, "
            f"this node is on {network!r}"
        )
    record = CapabilityRecord(
        author=envelope.author,
        seq=envelope.seq,
        issued_at_ms=envelope.issued_at_ms,
        expires_at_ms=envelope.expires_at_ms,
        network=rec_network,
        roles=roles,
        addresses=addresses,
        tasks=tasks,
        free_slots=free_slots,
        version=version,
        queues=queues,
        blobs=blobs,
    )
    return record, verified


def _parse_body(
    body: Any,
) -> tuple[
    str,
    tuple[str, ...],
    tuple[str, ...],
    tuple[Mapping[str, Any], ...],
    int,
    str,
    tuple[PeerId, ...],
    tuple[bytes, ...],
]:
    """Check the body's exact shape, types and bounds; raise MalformedMessage saying what's off."""
    if type(body) is not list or len(body) not in (_BODY_FIELDS, _BODY_FIELDS_WITH_BLOBS):
        raise MalformedMessage(
            "a capability record body is "
            "[network, roles, addresses, tasks, free_slots, version, queues] "
            "with an optional [blobs] after queues"
        )
    network, roles, addresses, tasks, free_slots, version, queues = body[:_BODY_FIELDS]
    blobs = _parse_blobs(body[_BODY_FIELDS]) if len(body) == _BODY_FIELDS_WITH_BLOBS else ()
    if type(network) is not str or not 0 < len(network) <= MAX_NETWORK_LEN:
        raise MalformedMessage(f"record network must be 1..{MAX_NETWORK_LEN} chars of text")
    if type(roles) is not list or not roles or any(type(r) is not str for r in roles):
        raise MalformedMessage("record roles must be a non-empty list of text")
    canonical = [role for role in ROLES if role in roles]
    if roles != canonical:
        raise MalformedMessage(
            f"record roles must be distinct, known ({', '.join(ROLES)}) and in that order"
        )
    if type(addresses) is not list or len(addresses) > MAX_ADDRESSES:
        raise MalformedMessage(f"record addresses must be a list of at most {MAX_ADDRESSES}")
    for address in addresses:
        if type(address) is not str or not _ADDRESS.fullmatch(address):
            raise MalformedMessage(
                "record address must be ws:// or wss:// and up to 240 printable characters"
            )
    if type(tasks) is not list or len(tasks) > MAX_TASKS:
        raise MalformedMessage(f"record tasks must be a list of at most {MAX_TASKS}")
    names: set[str] = set()
    for task in tasks:
        if type(task) is not dict:
            raise MalformedMessage("each record task must be a map")
        name = task.get("name")
        if type(name) is not str or not 0 < len(name) <= MAX_TASK_NAME_LEN:
            raise MalformedMessage(f"each record task needs a text name of 1..{MAX_TASK_NAME_LEN}")
        if name in names:
            raise MalformedMessage(f"record lists task {name[:40]!r} twice")
        names.add(name)
    if type(free_slots) is not int or not 0 <= free_slots <= MAX_FREE_SLOTS:
        raise MalformedMessage(f"record free_slots must be an integer in 0..{MAX_FREE_SLOTS}")
    if (
        type(version) is not str
        or not 0 < len(version) <= MAX_VERSION_LEN
        or not _PRINTABLE.fullmatch(version)
    ):
        raise MalformedMessage(f"record version must be 1..{MAX_VERSION_LEN} printable chars")
    if (
        type(queues) is not list
        or len(queues) > MAX_QUEUES
        or any(type(q) is not bytes or len(q) != 32 for q in queues)
    ):
        raise MalformedMessage(f"record queues must be at most {MAX_QUEUES} 32-byte keys")
    return (
        network,
        tuple(roles),
        tuple(addresses),
        tuple(_freeze(task) for task in tasks),
        free_slots,
        version,
        tuple(PeerId(q) for q in queues),
        blobs,
    )


def _parse_blobs(blobs: Any) -> tuple[bytes, ...]:
    """The optional announced blobs: present means non-empty (an empty list is never sent)."""
    if (
        type(blobs) is not list
        or not 0 < len(blobs) <= MAX_BLOBS
        or any(type(b) is not bytes or len(b) != DIGEST_LEN for b in blobs)
    ):
        raise MalformedMessage(
            f"record blobs, when present, must be 1..{MAX_BLOBS} {DIGEST_LEN}-byte digests"
        )
    if len(set(blobs)) != len(blobs):
        raise MalformedMessage("record blobs must not repeat a digest")
    return tuple(blobs)


def _freeze(value: Any) -> Any:
    if type(value) is dict:
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if type(value) is list:
        return tuple(_freeze(item) for item in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_thaw(item) for item in value]
    return value


__all__ = [
    "MAX_BLOBS",
    "MAX_RECORD_TTL_MS",
    "RECORD_DOMAIN",
    "RECORD_LIMITS",
    "CapabilityRecord",
    "build_record_frame",
    "message_id_of",
    "open_record",
]
