"""Jobs across real processes on loopback: two queue nodes, three GPU hosts."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.node_process import RunningNode


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Network:
    def __init__(self, tmp: Path) -> None:
        self.nodes: list[RunningNode] = []
        self.queue_a = self.add(tmp / "qa", roles="queue")
        self.queue_b = self.add(
            tmp / "qb", roles="queue", bootstrap=(self.queue_a.bootstrap_entry,)
        )
        self.hosts_a = [
            self.add(
                tmp / f"ha{i}",
                "--set",
                f"attach_to={self.queue_a.peer_id}",
                roles="gpu",
                bootstrap=(self.queue_a.bootstrap_entry,),
            )
            for i in range(2)
        ]
        self.host_b = self.add(
            tmp / "hb",
            "--set",
            f"attach_to={self.queue_b.peer_id}",
            roles="gpu",
            bootstrap=(self.queue_b.bootstrap_entry,),
        )

    def add(self, data: Path, *extra: str, roles: str, bootstrap: tuple[str, ...] = ()):
        node = RunningNode(data, *extra, roles=roles, bootstrap=bootstrap)
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    net = Network(tmp_path_factory.mktemp("dispatch"))
    try:
        # Both queue nodes have their hosts, and A has heard of B's host by gossip.
        wait_for(lambda: len(net.queue_a.api("tasks")[1].get("tasks", [])) == 4, 30, "A's hosts")
        wait_for(lambda: len(net.queue_b.api("tasks")[1].get("tasks", [])) == 4, 30, "B's hosts")
        wait_for(
            lambda: any(
                row["peer_id"] == net.host_b.peer_id
                and row["record"]
                and row["record"]["task_names"]
                for row in net.queue_a.api("peers")[1]["peers"]
            ),
            30,
            "A to learn B's host by gossip",
        )
        yield net
    finally:
        net.stop()


def submit(
    node: RunningNode, task: str, inputs: dict, user: str = "alice", host: str | None = None
) -> dict:
    body = {"task": task, "inputs": inputs, **({"host": host} if host else {})}
    status, job = node.api("jobs", method="POST", body=body, user=user)
    assert status == 201, job
    return job


def final_state(node: RunningNode, job_id: str, user: str = "alice", timeout: float = 30) -> dict:
    def done() -> dict | None:
        status, job = node.api(f"jobs/{job_id}", user=user)
        assert status == 200, job
        return job if job["state"] in ("done", "faulted", "cancelled", "expired") else None

    return wait_for(done, timeout, f"job {job_id} to end")  # type: ignore[return-value]


def test_a_local_job_runs_on_an_attached_host_and_returns_its_result(network: Network) -> None:
    job = submit(network.queue_a, "echo", {"text": "hello"})
    assert final_state(network.queue_a, job["job_id"])["state"] == "done"
    status, result = network.queue_a.api(f"jobs/{job['job_id']}/result")
    assert status == 200 and result["outputs"] == {"text": "aGVsbG8="}  # base64 of hello
    assert job["host"] in {h.peer_id for h in network.hosts_a}


def test_a_federated_job_runs_on_the_other_queue_nodes_host(network: Network) -> None:
    job = submit(network.queue_a, "echo", {"text": "far away"}, host=network.host_b.peer_id)
    final = final_state(network.queue_a, job["job_id"])
    assert final["state"] == "done", final
    status, result = network.queue_a.api(f"jobs/{job['job_id']}/result")
    assert status == 200 and result["outputs"] == {"text": "ZmFyIGF3YXk="}
    # On B the job belongs to A (a peer), never to A's user.
    status, trust = network.queue_b.api("trust/alice")
    assert trust["trust"] == 1000.0  # alice spent nothing on B


def test_a_job_faulting_three_times_fails_with_every_reason(network: Network) -> None:
    job = submit(network.queue_a, "fail", {"message": "no luck"})
    final = final_state(network.queue_a, job["job_id"])
    assert final["state"] == "faulted"
    assert len(final["faults"]) == 3 and all("no luck" in f for f in final["faults"])


def test_cancel_works_queued_dispatched_running_and_final(network: Network) -> None:
    host = network.hosts_a[0].peer_id

    def state(job: dict) -> str:
        return network.queue_a.api(f"jobs/{job['job_id']}", user="bob")[1]["state"]

    def cancel(job: dict) -> dict:
        status, body = network.queue_a.api(
            f"jobs/{job['job_id']}/cancel", method="POST", user="bob"
        )
        assert status == 200, body
        return body

    # Pinned to one host with one slot: one runs, one waits there prefetched, one is queued.
    running, prefetched, queued = (
        submit(network.queue_a, "sleep", {"seconds": 3.0}, user="bob", host=host) for _ in range(3)
    )
    assert queued["state"] == "queued"
    assert cancel(queued)["state"] == "cancelled"
    wait_for(lambda: state(running) == "running", 10, "the first job to run")
    assert state(prefetched) == "dispatched"
    assert cancel(prefetched)["state"] == "cancelled"
    stopped = cancel(running)
    assert stopped["state"] == "cancelled" and stopped["host"] == host
    # The host was told to stop both: a new job runs at once, not after the 3 s sleep.
    started = time.monotonic()
    follow = submit(network.queue_a, "echo", {"text": "next"}, user="bob", host=host)
    assert final_state(network.queue_a, follow["job_id"], user="bob")["state"] == "done"
    assert time.monotonic() - started < 2.0
    assert cancel(queued)["state"] == "cancelled"  # cancelling a final job changes nothing


def test_concurrent_submissions_by_one_user_never_lose_a_trust_decrement(network: Network) -> None:
    before = network.queue_a.api("trust/carol", user="carol")[1]["trust"]
    results: list[int] = []

    def one() -> None:
        status, _ = network.queue_a.api(
            "jobs", method="POST", body={"task": "noop", "inputs": {}}, user="carol"
        )
        results.append(status)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(201) == 40
    after = network.queue_a.api("trust/carol", user="carol")[1]["trust"]
    # Each noop costs the minimum charge of 1 point; recovery adds a little meanwhile.
    assert 40 - 1 <= before - after <= 40


def test_a_host_killed_mid_job_has_its_job_finished_by_another(network: Network) -> None:
    job = submit(network.queue_a, "sleep", {"seconds": 3.0}, user="dave")
    running = wait_for(
        lambda: (
            (j := network.queue_a.api(f"jobs/{job['job_id']}", user="dave")[1])["state"]
            == "running"
            and j
        ),
        15,
        "the job to start",
    )
    victim = next(h for h in network.hosts_a if h.peer_id == running["host"])
    victim.proc.send_signal(signal.SIGKILL)
    final = final_state(network.queue_a, job["job_id"], user="dave", timeout=40)
    assert final["state"] == "done", final
    assert final["attempts"] == 2 and final["host"] != victim.peer_id
    assert any("disconnect" in fault for fault in final["faults"]), final["faults"]
