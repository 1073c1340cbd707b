"""Large job results across real processes: a 3 MB result comes back from a GPU host in
another process as a blob, and from a host of another queue node through that node."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightbox_node.dispatch.test_tasks import filler
from tests.node_process import RunningNode
from tests.test_dispatch_processes import final_state, submit, wait_for

pytestmark = pytest.mark.slow

BIG = 3_000_000
"""Several link messages' worth, like a 2048×2048 PNG or a LoRA adapter."""


class Network:
    """Queue nodes A and B, each with one GPU host in its own process."""

    def __init__(self, tmp: Path) -> None:
        self.nodes: list[RunningNode] = []
        self.queue_a = self.add(tmp / "qa", roles="queue")
        self.queue_b = self.add(tmp / "qb", roles="queue", bootstrap=(self.queue_a,))
        self.host_a = self.add(tmp / "ha", roles="gpu", bootstrap=(self.queue_a,))
        self.host_b = self.add(tmp / "hb", roles="gpu", bootstrap=(self.queue_b,))

    def add(self, data: Path, *, roles: str, bootstrap: tuple[RunningNode, ...] = ()):
        extra = ("--set", f"attach_to={bootstrap[0].peer_id}") if roles == "gpu" else ()
        entries = tuple(node.bootstrap_entry for node in bootstrap)
        node = RunningNode(data, *extra, roles=roles, bootstrap=entries)
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    net = Network(tmp_path_factory.mktemp("large-results"))
    try:
        for queue in (net.queue_a, net.queue_b):
            wait_for(lambda q=queue: "noop" in offered(q), 30, "each queue node's host")
        wait_for(
            lambda: any(
                row["peer_id"] == net.host_b.peer_id and row["record"]
                for row in net.queue_a.api("peers")[1]["peers"]
            ),
            30,
            "A to learn B's host by gossip",
        )
        yield net
    finally:
        net.stop()


def offered(node: RunningNode) -> set[str]:
    return {task["name"] for task in node.api("tasks")[1].get("tasks", [])}


def result_of(node: RunningNode, job_id: str) -> dict[str, bytes]:
    status, body = node.api(f"jobs/{job_id}/result")
    assert status == 200, body
    return {name: base64.b64decode(text) for name, text in body["outputs"].items()}


def test_a_3_mb_result_comes_back_from_a_host_in_another_process(network: Network) -> None:
    job = submit(network.queue_a, "noop", {"size": BIG})
    final = final_state(network.queue_a, job["job_id"])
    assert final["state"] == "done", final
    assert final["host"] == network.host_a.peer_id
    assert result_of(network.queue_a, job["job_id"]) == {"status": filler(BIG)}


def test_a_federated_3_mb_result_comes_back_through_the_serving_queue_node(
    network: Network,
) -> None:
    # Another size than above, so that neither queue node holds the blob already.
    size = BIG + 1
    job = submit(network.queue_a, "noop", {"size": size}, host=network.host_b.peer_id)
    final = final_state(network.queue_a, job["job_id"])
    assert final["state"] == "done", final
    assert result_of(network.queue_a, job["job_id"]) == {"status": filler(size)}
