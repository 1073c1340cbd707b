"""Who serves whom: routes "jobs" messages between the swarm, the queue service and the host.

On one link the same protocol carries both directions: `run`/`cancel` go to this node's GPU
host, everything else to its queue service. A GPU host attaches to the queue nodes named in
`attach_to`, or, when that is empty, to its own queue role if it has one, else to every
linked peer whose capability record says it is a queue node. In one process with both roles
the two talk through an in-process pair, not a link.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from lightbox_node.dispatch.federation import Federation
from lightbox_node.dispatch.host import GpuHost
from lightbox_node.dispatch.queue import QueueService
from lightbox_node.identity import PeerId
from lightbox_node.swarm import Swarm

log = logging.getLogger("lightbox.dispatch")

PROTOCOL = "jobs"
_TO_HOST = frozenset({"run", "cancel"})
_FEDERATION = frozenset({"fsubmit", "fcancel", "fhost"})
ATTACH_CHECK_S = 1.0
LOCAL_QUEUE_SIZE = 4096


class JobsProtocol:
    """The swarm's handler for "jobs": attaches hosts and queues over peer links."""

    def __init__(
        self,
        swarm: Swarm,
        queue: QueueService | None,
        host: GpuHost | None,
        attach_to: frozenset[PeerId] = frozenset(),
        federation: Federation | None = None,
    ) -> None:
        self.swarm = swarm
        self.queue = queue
        self.host = host
        self.federation = federation
        self.attach_to = attach_to
        self._attached: set[PeerId] = set()
        self._hosts_seen: set[PeerId] = set()

    def port_to(self, peer: PeerId) -> Callable[[Any], bool]:
        return lambda body: self.swarm.send(peer, PROTOCOL, body)

    # -- ProtocolHandler ----------------------------------------------------------------------

    def link_up(self, peer: PeerId) -> None:
        self._maybe_attach(peer)

    def link_down(self, peer: PeerId) -> None:
        if self.federation is not None:
            self.federation.link_down(peer)
        if self.queue is not None and peer in self._hosts_seen:
            self._hosts_seen.discard(peer)
            self.queue.detach_host(peer)
        if self.host is not None and peer in self._attached:
            self._attached.discard(peer)
            self.host.detach(peer)

    def message(self, peer: PeerId, body: Any) -> None:
        tag = body[0] if type(body) is list and body and type(body[0]) is str else None
        if tag in _TO_HOST:
            if self.host is not None and peer in self._attached:
                self.host.message(peer, body)
            return
        if self.queue is None:
            return
        if tag in _FEDERATION:
            self._federation_message(peer, tag, body)
            return
        if tag == "hello" and peer not in self._hosts_seen:
            self._hosts_seen.add(peer)
            self.queue.attach_host(peer, self.port_to(peer))
        self.queue.host_message(peer, body)

    def _federation_message(self, peer: PeerId, tag: str, body: list[Any]) -> None:
        if self.federation is None:
            return
        if tag == "fsubmit":
            score = self.swarm.scores.score(peer, trio.current_time())
            self.federation.submit_from(peer, body, score)
        elif tag == "fcancel":
            self.federation.cancel_from(peer, body)
        else:
            self.federation.from_serving_queue(peer, body)

    # -- attaching the GPU host to remote queues ----------------------------------------------

    def _wants(self, peer: PeerId) -> bool:
        if self.attach_to:
            return peer in self.attach_to
        if self.queue is not None:
            return False  # served locally
        record = next((r for r in self.swarm.records() if r.author == peer), None)
        return record is not None and "queue" in record.roles

    def _maybe_attach(self, peer: PeerId) -> None:
        if self.host is None or peer in self._attached or not self._wants(peer):
            return
        self._attached.add(peer)
        self.host.attach(peer, self.port_to(peer))

    async def run(self) -> None:
        """Attach to queue nodes whose records arrive after their links come up."""
        while True:
            for peer in self.swarm.linked_peers:
                self._maybe_attach(peer)
            await trio.sleep(ATTACH_CHECK_S)


async def run_local_pair(
    queue: QueueService,
    host: GpuHost,
    peer_id: PeerId,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Attach this node's GPU host to its own queue service, in process.

    Each direction is a memory channel drained by its own task, so neither side ever
    calls into the other while it is in the middle of handling something.
    """
    to_queue_send, to_queue_receive = trio.open_memory_channel[Any](LOCAL_QUEUE_SIZE)
    to_host_send, to_host_receive = trio.open_memory_channel[Any](LOCAL_QUEUE_SIZE)

    def sender(channel: trio.MemorySendChannel[Any]) -> Callable[[Any], bool]:
        def send(body: Any) -> bool:
            try:
                channel.send_nowait(body)
            except trio.WouldBlock:
                log.warning("local jobs queue full; message dropped")
                return False
            return True

        return send

    async def pump(receive: trio.MemoryReceiveChannel[Any], deliver: Callable[[Any], None]):
        async for body in receive:
            deliver(body)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump, to_queue_receive, lambda b: queue.host_message(peer_id, b))
        nursery.start_soon(pump, to_host_receive, lambda b: host.message(peer_id, b))
        queue.attach_host(peer_id, sender(to_host_send))
        host.attach(peer_id, sender(to_queue_send))
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            queue.detach_host(peer_id)
            host.detach(peer_id)
