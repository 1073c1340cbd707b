"""Peer scores: what each neighbour did, weighted and decaying, gating gossip and links.

Scored the GossipSub v1.1 way, from counters kept per `PeerId` (so a score survives
reconnects; a new link is no fresh start)::

    score = first_delivery_weight  * min(first_deliveries, first_delivery_cap)     (> 0)
          + invalid_message_weight * invalid_messages ** 2                          (< 0)
          + broken_promise_weight  * max(0, broken_promises - threshold) ** 2       (< 0)
          + flood_weight           * flood_reports                                  (< 0)
          + duplicate_weight       * max(0, duplicates - duplicate_cap)             (< 0)
          + colocation_weight      * max(0, ids_at_its_address - threshold) ** 2    (< 0)
          + job_ok_weight * min(jobs_ok, job_ok_cap) + job_fault_weight * jobs_faulted

Every counter decays exponentially toward zero with its own half-life, so old deeds fade.
The per-peer rate limit itself lives where bodies arrive (the router's token bucket), which
reports a `flood` event for each second a peer spends over it; each report counts here.
Addresses are compared whole for IPv4 and by /64 prefix for IPv6 (one host is easily given
a whole /64).

The thresholds, from mildest to harshest: below `gossip_threshold` we stop gossiping to the
peer, below `graylist_threshold` we ignore its messages, below `accept_threshold` we refuse
and close its links. Pure: time is passed in, nothing here touches the network.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, fields

from lightbox_node.gossip.actions import PeerEvent
from lightbox_node.identity import PeerId

_COUNTER_OF_KIND = {
    "first_delivery": "first_deliveries",
    "invalid_message": "invalid_messages",
    "broken_promise": "broken_promises",
    "flood": "flooding",
    "duplicate": "duplicates",
}
_COUNTERS = (
    "first_deliveries",
    "invalid_messages",
    "broken_promises",
    "flooding",
    "duplicates",
    "jobs_ok",
    "jobs_faulted",
)


@dataclass(frozen=True, slots=True)
class ScoreParams:
    """Weights, caps, half-lives (seconds) and thresholds; defaults suit a small network."""

    first_delivery_weight: float = 1.0
    first_delivery_cap: float = 50.0
    first_delivery_half_life: float = 600.0

    invalid_message_weight: float = -10.0
    invalid_message_half_life: float = 3600.0

    broken_promise_weight: float = -5.0
    broken_promise_threshold: float = 0.0
    broken_promise_half_life: float = 600.0

    flood_weight: float = -5.0
    """Per `flood` report: the router sends one per second a peer stays over its rate limit."""
    flood_half_life: float = 600.0

    duplicate_weight: float = -0.1
    duplicate_cap: float = 100.0
    """Duplicates are normal in gossip; only those beyond this many cost anything."""
    duplicate_half_life: float = 60.0

    colocation_weight: float = -10.0
    colocation_threshold: int = 3
    """Peer ids that may share one address before each extra one costs (squared)."""
    colocation_exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """Networks never penalised: a laptop demo runs many nodes on the loopback address."""

    job_ok_weight: float = 2.0
    job_ok_cap: float = 25.0
    job_fault_weight: float = -10.0
    job_half_life: float = 3600.0

    gossip_threshold: float = -10.0
    graylist_threshold: float = -80.0
    accept_threshold: float = -100.0

    decay_to_zero: float = 0.01
    """A decayed counter below this is zero, so that forgotten peers can be dropped."""
    max_peers: int = 10_000
    """Peers remembered at most; beyond, the least recently active harmless one is dropped."""

    def __post_init__(self) -> None:
        for name in ("first_delivery_weight", "job_ok_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} rewards good behaviour and must be >= 0")
        for name in (
            "invalid_message_weight",
            "broken_promise_weight",
            "flood_weight",
            "duplicate_weight",
            "colocation_weight",
            "job_fault_weight",
        ):
            if getattr(self, name) > 0:
                raise ValueError(f"{name} penalises bad behaviour and must be <= 0")
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name.endswith("_half_life") and not value > 0:
                raise ValueError(f"{spec.name} must be positive, not {value}")
        for name in (
            "first_delivery_cap",
            "broken_promise_threshold",
            "duplicate_cap",
            "colocation_threshold",
            "job_ok_cap",
            "decay_to_zero",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, not {getattr(self, name)}")
        if not (self.accept_threshold <= self.graylist_threshold <= self.gossip_threshold <= 0):
            raise ValueError(
                "thresholds must satisfy accept_threshold <= graylist_threshold <= "
                f"gossip_threshold <= 0, not {self.accept_threshold}, "
                f"{self.graylist_threshold}, {self.gossip_threshold}"
            )
        if self.max_peers < 1:
            raise ValueError(f"max_peers must be at least 1, not {self.max_peers}")
        for network in self.colocation_exempt:
            ipaddress.ip_network(network)  # raises ValueError for a typo


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One peer's score and what it is made of (each component already weighted)."""

    peer: PeerId
    score: float
    first_deliveries: float
    invalid_messages: float
    broken_promises: float
    flooding: float
    duplicates: float
    colocation: float
    application: float
    address: str | None
    """The address its current link comes from; None while it has no link."""


@dataclass(slots=True)
class _Record:
    first_deliveries: float = 0.0
    invalid_messages: float = 0.0
    broken_promises: float = 0.0
    flooding: float = 0.0
    duplicates: float = 0.0
    jobs_ok: float = 0.0
    jobs_faulted: float = 0.0
    decayed_at: float | None = None
    address: str | None = None
    address_group: str | None = None

    def is_blank(self) -> bool:
        return self.address is None and not any(getattr(self, name) for name in _COUNTERS)


class PeerScores:
    """The score of every peer this node has dealt with, by peer id."""

    def __init__(self, params: ScoreParams | None = None) -> None:
        self._params = params if params is not None else ScoreParams()
        self._records: OrderedDict[PeerId, _Record] = OrderedDict()
        self._by_group: dict[str, set[PeerId]] = {}
        self._half_lives = {
            "first_deliveries": self._params.first_delivery_half_life,
            "invalid_messages": self._params.invalid_message_half_life,
            "broken_promises": self._params.broken_promise_half_life,
            "flooding": self._params.flood_half_life,
            "duplicates": self._params.duplicate_half_life,
            "jobs_ok": self._params.job_half_life,
            "jobs_faulted": self._params.job_half_life,
        }
        self._exempt = [ipaddress.ip_network(n) for n in self._params.colocation_exempt]

    @property
    def params(self) -> ScoreParams:
        return self._params

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, peer: object) -> bool:
        return peer in self._records

    # -- what peers did ----------------------------------------------------------------------

    def observe(self, event: PeerEvent, now: float) -> None:
        """Count what a peer did; kinds this module does not score are ignored."""
        counter = _COUNTER_OF_KIND.get(event.kind)
        if counter is None:
            return
        record = self._touch(event.peer, now)
        setattr(record, counter, getattr(record, counter) + 1)

    def record_job(self, peer: PeerId, ok: bool, now: float) -> None:
        """The application score: a job this peer ran (or forwarded) completed or faulted."""
        record = self._touch(peer, now)
        if ok:
            record.jobs_ok += 1
        else:
            record.jobs_faulted += 1

    def note_address(self, peer: PeerId, ip: str) -> None:
        """The peer's link comes from `ip`; many peer ids at one address cost each of them."""
        group = self._address_group(ip)
        record = self._records.get(peer)
        if record is None:
            record = self._insert(peer)
        if record.address_group is not None:
            self._leave_group(peer, record.address_group)
        record.address, record.address_group = ip, group
        if group is not None:
            self._by_group.setdefault(group, set()).add(peer)

    def forget_address(self, peer: PeerId) -> None:
        """The peer's link closed; its score stays, for when it comes back."""
        record = self._records.get(peer)
        if record is None:
            return
        if record.address_group is not None:
            self._leave_group(peer, record.address_group)
        record.address = record.address_group = None

    # -- verdicts ----------------------------------------------------------------------------

    def score(self, peer: PeerId, now: float) -> float:
        """The peer's current score; 0 for a peer never seen."""
        record = self._records.get(peer)
        if record is None:
            return 0.0
        self._decay_record(record, now)
        return sum(self._components(peer, record).values())

    def may_gossip_to(self, peer: PeerId, now: float) -> bool:
        return self.score(peer, now) >= self._params.gossip_threshold

    def is_graylisted(self, peer: PeerId, now: float) -> bool:
        """Whether to ignore everything this peer sends."""
        return self.score(peer, now) < self._params.graylist_threshold

    def accepts(self, peer: PeerId, now: float) -> bool:
        """Whether to keep (or accept) a link with this peer at all."""
        return self.score(peer, now) >= self._params.accept_threshold

    def table(self, now: float) -> list[ScoreRow]:
        """Every remembered peer with its score components, best first."""
        rows = []
        for peer, record in self._records.items():
            self._decay_record(record, now)
            parts = self._components(peer, record)
            rows.append(ScoreRow(peer, sum(parts.values()), **parts, address=record.address))
        rows.sort(key=lambda row: (-row.score, str(row.peer)))
        return rows

    def decay(self, now: float) -> None:
        """Decay every counter to `now` and forget peers that have nothing left to remember."""
        for peer, record in list(self._records.items()):
            self._decay_record(record, now)
            if record.is_blank():
                del self._records[peer]

    # -- internals ---------------------------------------------------------------------------

    def _components(self, peer: PeerId, record: _Record) -> dict[str, float]:
        p = self._params
        broken_excess = max(0.0, record.broken_promises - p.broken_promise_threshold)
        return {
            "first_deliveries": p.first_delivery_weight
            * min(record.first_deliveries, p.first_delivery_cap),
            "invalid_messages": p.invalid_message_weight * record.invalid_messages**2,
            "broken_promises": p.broken_promise_weight * broken_excess**2,
            "flooding": p.flood_weight * record.flooding,
            "duplicates": p.duplicate_weight * max(0.0, record.duplicates - p.duplicate_cap),
            "colocation": p.colocation_weight * self._colocation_surplus(record) ** 2,
            "application": p.job_ok_weight * min(record.jobs_ok, p.job_ok_cap)
            + p.job_fault_weight * record.jobs_faulted,
        }

    def _colocation_surplus(self, record: _Record) -> int:
        if record.address_group is None:
            return 0
        sharing = len(self._by_group.get(record.address_group, ()))
        return max(0, sharing - self._params.colocation_threshold)

    def _touch(self, peer: PeerId, now: float) -> _Record:
        """The peer's record, decayed to `now` and marked most recently active."""
        record = self._records.get(peer)
        if record is None:
            record = self._insert(peer)
        else:
            self._records.move_to_end(peer)
        self._decay_record(record, now)
        return record

    def _insert(self, peer: PeerId) -> _Record:
        if len(self._records) >= self._params.max_peers:
            self._evict()
        record = _Record()
        self._records[peer] = record
        return record

    def _evict(self) -> None:
        """Drop one peer, least recently active first, preferring one whose record is harmless.

        A peer without a link and with a score of at least 0 loses nothing it should keep;
        forgetting a negative score instead would let a misbehaving peer start afresh.
        """
        fallback: PeerId | None = None
        for peer, record in self._records.items():
            if record.address is not None:
                continue
            if fallback is None:
                fallback = peer
            if record.decayed_at is None or sum(self._components(peer, record).values()) >= 0:
                del self._records[peer]
                return
        victim = fallback if fallback is not None else next(iter(self._records))
        self.forget_address(victim)
        del self._records[victim]

    def _decay_record(self, record: _Record, now: float) -> None:
        if record.decayed_at is None or now <= record.decayed_at:
            if record.decayed_at is None:
                record.decayed_at = now
            return
        elapsed = now - record.decayed_at
        record.decayed_at = now
        floor = self._params.decay_to_zero
        for name, half_life in self._half_lives.items():
            value = getattr(record, name)
            if value:
                value *= 0.5 ** (elapsed / half_life)
                setattr(record, name, value if value >= floor else 0.0)

    def _address_group(self, ip: str) -> str | None:
        """The key under which peer ids count as colocated; None for exempt addresses."""
        address = ipaddress.ip_address(ip.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self._exempt):
            return None
        if isinstance(address, ipaddress.IPv6Address):
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def _leave_group(self, peer: PeerId, group: str) -> None:
        members = self._by_group.get(group)
        if members is not None:
            members.discard(peer)
            if not members:
                del self._by_group[group]


__all__ = ["PeerScores", "ScoreParams", "ScoreRow"]
