"""A deterministic network of gossip routers in one process and virtual time (no trio).

`SimNet` is a discrete-event loop: every `Send` a router returns is packed with the strict
wire codec, counted, and delivered to the peer's router after a per-hop latency if the link
is still up; every node's heartbeat runs once per simulated second at its own phase. Links
can be cut and healed, raw bodies injected (to play a misbehaving node), and what each node
reported (peer events) and accepted (records, with arrival times) is kept for assertions.
The same seed replays the same run exactly. Used by the convergence tests and bench/gossip.py.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lightbox_node.gossip.actions import Action, PeerEvent, RecordAccepted, RecordRemoved, Send
from lightbox_node.gossip.record_store import RecordStore
from lightbox_node.gossip.records import build_record_frame
from lightbox_node.gossip.router import GossipParams, GossipRouter
from lightbox_node.identity import Identity, PeerId
from lightbox_node.wire import pack, unpack

EPOCH_MS = 1_700_000_000_000
NETWORK = "lightbox-sim"
SAMPLE_TASKS = (
    {
        "name": "txt2img",
        "title": "Text to image",
        "inputs": [
            {"name": "prompt", "type": "text", "max_length": 500},
            {"name": "steps", "type": "integer", "default": 20, "min": 1, "max": 100},
            {"name": "seed", "type": "seed"},
        ],
        "outputs": [{"name": "image", "type": "image"}],
    },
    {
        "name": "remove_background",
        "title": "Remove background",
        "inputs": [{"name": "image", "type": "image"}],
        "outputs": [{"name": "image", "type": "image"}],
    },
)


def wall_ms(now: float) -> int:
    return EPOCH_MS + int(now * 1000)


@dataclass
class SimNode:
    index: int
    identity: Identity
    store: RecordStore
    router: GossipRouter
    scores: dict[PeerId, float] = field(default_factory=dict)
    seq: int = 0

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id


class SimNet:
    """`n` routers joined by `edges` (or a random graph of about `degree` links per node)."""

    def __init__(
        self,
        n: int,
        *,
        seed: int,
        degree: int = 8,
        edges: Iterable[tuple[int, int]] | None = None,
        latency_s: float = 0.05,
        jitter_s: float = 0.02,
        params: GossipParams | None = None,
        store_capacity: int = 4096,
    ) -> None:
        self.rng = random.Random(seed)
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.now = 0.0
        self.nodes: list[SimNode] = []
        self._index: dict[PeerId, int] = {}
        for i in range(n):
            identity = Identity.from_seed(hashlib.sha256(f"simnet/{seed}/{i}".encode()).digest())
            store = RecordStore(NETWORK, capacity=store_capacity, own=identity.peer_id)
            node = SimNode(i, identity, store, None)  # type: ignore[arg-type]
            node.router = GossipRouter(
                identity.peer_id,
                store,
                rng=random.Random(self.rng.getrandbits(64)),
                params=params or GossipParams(),
                score_of=lambda peer, scores=node.scores: scores.get(peer, 0.0),
                wall_ms=wall_ms,
            )
            self.nodes.append(node)
            self._index[identity.peer_id] = i
        self._queue: list[tuple[float, int, str, Any]] = []
        self._counter = 0
        self.links: dict[tuple[int, int], int] = {}  # link -> epoch, bumped on every cut
        self._epoch = 0
        self.cut_links: list[tuple[int, int]] = []
        self.deaf: set[int] = set()  # nodes whose incoming bodies are lost, links staying up
        self.events: list[tuple[float, int, PeerEvent]] = []
        self.removed: list[tuple[float, int, RecordRemoved]] = []
        self.arrivals: dict[tuple[bytes, int], dict[int, float]] = defaultdict(dict)
        self.bytes_sent = [0] * n
        self.bodies_sent = [0] * n
        for a, b in edges if edges is not None else self._random_edges(n, degree):
            self.connect(a, b)
        for node in self.nodes:
            self._schedule(self.rng.random(), "beat", node.index)

    # -- topology ---------------------------------------------------------------------------

    def _random_edges(self, n: int, degree: int) -> list[tuple[int, int]]:
        """Each node links to degree/2 random others (so ~degree links each), then joined up."""
        edges: set[tuple[int, int]] = set()
        per_node = max(1, degree // 2)
        for a in range(n):
            picks = [b for b in self.rng.sample(range(n), min(n, per_node + 1)) if b != a]
            for b in picks[:per_node]:
                edges.add((min(a, b), max(a, b)))
        adjacency: dict[int, set[int]] = defaultdict(set)
        for a, b in edges:
            adjacency[a].add(b)
            adjacency[b].add(a)
        components = self._components(n, adjacency)
        for left, right in itertools.pairwise(components):
            edges.add((min(left[0], right[0]), max(left[0], right[0])))
        return sorted(edges)

    @staticmethod
    def _components(n: int, adjacency: dict[int, set[int]]) -> list[list[int]]:
        seen: set[int] = set()
        components = []
        for start in range(n):
            if start in seen:
                continue
            stack, component = [start], []
            seen.add(start)
            while stack:
                node = stack.pop()
                component.append(node)
                for other in sorted(adjacency[node]):
                    if other not in seen:
                        seen.add(other)
                        stack.append(other)
            components.append(component)
        return components

    def neighbours_of(self, i: int) -> list[int]:
        return sorted({b if a == i else a for a, b in self.links if i in (a, b)})

    def connect(self, a: int, b: int) -> None:
        key = (min(a, b), max(a, b))
        if key in self.links or a == b:
            return
        self._epoch += 1
        self.links[key] = self._epoch
        self._apply(a, self.nodes[a].router.peer_connected(self.nodes[b].peer_id, self.now))
        self._apply(b, self.nodes[b].router.peer_connected(self.nodes[a].peer_id, self.now))

    def disconnect(self, a: int, b: int) -> None:
        key = (min(a, b), max(a, b))
        if self.links.pop(key, None) is None:
            return
        self._apply(a, self.nodes[a].router.peer_disconnected(self.nodes[b].peer_id, self.now))
        self._apply(b, self.nodes[b].router.peer_disconnected(self.nodes[a].peer_id, self.now))

    def partition(self, group: Iterable[int]) -> list[tuple[int, int]]:
        """Cut every link between `group` and the rest; returns the links cut."""
        inside = set(group)
        crossing = [(a, b) for a, b in self.links if (a in inside) != (b in inside)]
        for a, b in crossing:
            self.disconnect(a, b)
        self.cut_links += crossing
        return crossing

    def heal(self) -> None:
        for a, b in self.cut_links:
            self.connect(a, b)
        self.cut_links = []

    # -- driving ----------------------------------------------------------------------------

    def publish(self, i: int, *, ttl_ms: int = 600_000, free_slots: int = 1) -> tuple[bytes, int]:
        """Node `i` publishes its next record; returns (author key, seq)."""
        node = self.nodes[i]
        node.seq += 1
        frame = build_record_frame(
            node.identity,
            network=NETWORK,
            roles=("gpu",),
            addresses=(f"ws://10.{i // 65536}.{i // 256 % 256}.{i % 256}:7450",),
            tasks=SAMPLE_TASKS,
            free_slots=free_slots,
            version="0.1.0",
            seq=node.seq,
            now_ms=wall_ms(self.now),
            ttl_ms=ttl_ms,
        )
        self._apply(i, node.router.publish(frame, self.now))
        return node.peer_id.public_key, node.seq

    def inject(self, sender: int, receiver: int, body: Any) -> None:
        """Deliver a raw gossip body as if `sender`'s node had sent it (to play an attacker)."""
        self._transmit(sender, receiver, body)

    def run_until(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            when, _, kind, payload = heapq.heappop(self._queue)
            self.now = when
            if kind == "beat":
                self._apply(payload, self.nodes[payload].router.heartbeat(self.now))
                self._schedule(self.now + 1.0, "beat", payload)
            else:
                sender, receiver, epoch, data = payload
                if self.links.get((min(sender, receiver), max(sender, receiver))) != epoch:
                    continue  # the link closed while the frame was in flight
                if receiver in self.deaf:
                    continue
                protocol, body = unpack(data)
                assert protocol == "gossip"
                router = self.nodes[receiver].router
                self._apply(receiver, router.receive(self.nodes[sender].peer_id, body, self.now))
        self.now = until

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    # -- observing --------------------------------------------------------------------------

    def holders(self, author: bytes, seq: int) -> int:
        """How many nodes hold `author`'s record at `seq` or newer."""
        peer = PeerId(author)
        return sum(
            1
            for node in self.nodes
            if (record := node.store.get(peer)) is not None and record.seq >= seq
        )

    def events_of(self, kind: str, about: int | None = None) -> list[tuple[float, int, PeerEvent]]:
        wanted = None if about is None else self.nodes[about].peer_id
        return [
            e for e in self.events if e[2].kind == kind and (wanted is None or e[2].peer == wanted)
        ]

    def index_of(self, peer: PeerId) -> int:
        return self._index[peer]

    # -- internals --------------------------------------------------------------------------

    def _schedule(self, when: float, kind: str, payload: Any) -> None:
        self._counter += 1
        heapq.heappush(self._queue, (when, self._counter, kind, payload))

    def _transmit(self, sender: int, receiver: int, body: Any) -> None:
        epoch = self.links.get((min(sender, receiver), max(sender, receiver)))
        if epoch is None:
            return
        data = pack(["gossip", body])
        self.bytes_sent[sender] += len(data)
        self.bodies_sent[sender] += 1
        delay = self.latency_s + (self.rng.random() * self.jitter_s if self.jitter_s else 0.0)
        self._schedule(self.now + delay, "deliver", (sender, receiver, epoch, data))

    def _apply(self, i: int, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                assert action.protocol == "gossip"
                self._transmit(i, self._index[action.peer], action.body)
            elif isinstance(action, PeerEvent):
                self.events.append((self.now, i, action))
            elif isinstance(action, RecordAccepted):
                key = (action.record.author.public_key, action.record.seq)
                self.arrivals[key].setdefault(i, self.now)
            elif isinstance(action, RecordRemoved):
                self.removed.append((self.now, i, action))
            else:  # pragma: no cover - a new action type the sim does not know yet
                raise AssertionError(f"unexpected action {action!r}")
