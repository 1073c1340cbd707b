"""Real processes on loopback: a 200 MiB blob outlives a holder killed mid-transfer."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import trio

from lightbox_node.blobs import CHUNK, PROTOCOL, BlobExchange
from lightbox_node.identity import Identity, PeerId
from lightbox_node.net import PeerLink, dial
from lightbox_node.net.discovery import PeerHint
from lightbox_node.store import BlobId, BlobStore
from lightbox_node.swarm import Swarm
from tests.blobs.blob_peer import NETWORK

REPO = Path(__file__).resolve().parents[2]
SIZE = 200 << 20


class PeerProcess:
    """`python -m tests.blobs.blob_peer`, its stdout read line by line by one thread."""

    def __init__(self, root: Path, seed: str, *extra: str) -> None:
        command = [sys.executable, "-m", "tests.blobs.blob_peer", "--root", str(root)]
        self.proc = subprocess.Popen(
            [*command, "--seed", seed, *extra],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        stdout = self.proc.stdout
        assert stdout is not None
        threading.Thread(target=lambda: [self._lines.put(ln) for ln in stdout], daemon=True).start()
        self.peer_id = PeerId.parse(self._line("peer id:"))
        self.url = self._line("p2p:")
        self._line("ready:")

    def _line(self, prefix: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        self.proc.kill()
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        raise AssertionError(f"blob peer printed no {prefix!r} line; stderr:\n{stderr}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def make_blob(root: Path) -> BlobId:
    """SIZE random bytes in a store, with the digest list peers will ask for."""
    store = BlobStore(root)
    with store.open_writer() as writer:
        for _ in range(SIZE // (8 << 20)):
            writer.write(os.urandom(8 << 20))
        blob_id = writer.commit()
    store.chunk_digests(blob_id, CHUNK)
    return blob_id


def share(source: Path, target: Path, blob_id: BlobId) -> None:
    """Give another store the same blob (and digest list) by hard links: no copying."""
    for path in [*(source / "sha256").rglob("*"), *(source / "chunks").rglob("*")]:
        if path.is_file():
            linked = target / path.relative_to(source)
            linked.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, linked)


@pytest.mark.slow
async def test_a_200_mib_blob_survives_a_holder_killed_mid_transfer_and_a_liar(
    tmp_path: Path,
) -> None:
    blob_id = make_blob(tmp_path / "doomed")
    share(tmp_path / "doomed", tmp_path / "steady", blob_id)
    share(tmp_path / "doomed", tmp_path / "liar", blob_id)
    peers: list[PeerProcess] = []
    try:
        doomed = PeerProcess(tmp_path / "doomed", "doomed")
        peers.append(doomed)
        steady = PeerProcess(tmp_path / "steady", "steady")
        peers.append(steady)
        liar = PeerProcess(tmp_path / "liar", "liar", "--corrupt")
        peers.append(liar)
        identity = Identity.from_seed(b"fetcher".ljust(32, b"."))

        async def dial_hint(nursery: trio.Nursery, hint: PeerHint) -> PeerLink:
            return await dial(nursery, hint.url, identity, NETWORK, hint.peer_id)

        swarm = Swarm(identity, network=NETWORK, roles=("queue",), version="test", dialer=dial_hint)
        swarm.add_hints([PeerHint(p.url, p.peer_id) for p in peers], pinned=True)
        store = BlobStore(tmp_path / "fetcher")
        exchange = BlobExchange(swarm, store)
        swarm.register(PROTOCOL, exchange)
        async with trio.open_nursery() as nursery:
            await nursery.start(swarm.run)
            await nursery.start(exchange.run)
            with trio.fail_after(20):
                while set(exchange.holders(blob_id)) != {p.peer_id for p in peers} or len(
                    swarm.linked_peers
                ) < len(peers):
                    await trio.sleep(0.05)
            at_kill: dict[PeerId, int] = {}
            last: dict[PeerId, int] = {}

            async def watch_and_kill() -> None:
                while True:
                    for transfer in exchange.transfers():
                        last.update(transfer.received_from)
                        total = transfer.total
                        if not at_kill and total and transfer.staged_bytes >= total // 4:
                            doomed.kill()
                            at_kill.update(transfer.received_from)
                            at_kill[PeerId(b"\0" * 32)] = transfer.staged_bytes
                    await trio.sleep(0.002)

            nursery.start_soon(watch_and_kill)
            started = time.monotonic()
            assert await exchange.fetch(blob_id) == blob_id
            elapsed = time.monotonic() - started
            nursery.cancel_scope.cancel()
        assert doomed.proc.returncode == -signal.SIGKILL
        assert 0 < at_kill[PeerId(b"\0" * 32)] < SIZE  # killed mid-transfer
        assert at_kill.get(doomed.peer_id, 0) > 0  # it had delivered a share
        assert last[steady.peer_id] > at_kill.get(steady.peer_id, 0)  # the other finished
        assert swarm.scores.score(liar.peer_id, trio.current_time()) < 0
        assert liar.peer_id not in last  # none of its chunks was kept
        await trio.to_thread.run_sync(store.verify, blob_id)
        assert store.staged_fetches() == []
        print(f"200 MiB across processes in {elapsed:.2f} s ({SIZE / elapsed / 1e6:.0f} MB/s)")
    finally:
        for peer in peers:
            peer.kill()
