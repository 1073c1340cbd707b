"""The in-memory Raft log: indexes after a snapshot, batching, truncation, compaction, configs."""

from __future__ import annotations

import pytest
from raftsim import peer

from lightbox_node.raft import LogEntry, Snapshot
from lightbox_node.raft.log import RaftLog

A, B, C, D = peer(1), peer(2), peer(3), peer(4)


def command(term: int, size: int = 10) -> LogEntry:
    return LogEntry.of_command(term, A, {"pad": "x" * size})


def test_an_empty_log_starts_after_its_snapshot() -> None:
    log = RaftLog(Snapshot(5, 2, (A, B)))
    assert (log.first_index, log.last_index, log.last_term) == (6, 5, 2)
    assert log.term_at(5) == 2 and log.term_at(4) is None and log.term_at(6) is None
    assert log.members == (A, B) and log.config_index == 5
    with pytest.raises(IndexError):
        log.entry(5)


def test_batches_respect_count_and_bytes_but_always_carry_one_entry() -> None:
    log = RaftLog(Snapshot(0, 0, (A,)), [command(1, 100) for _ in range(10)])
    assert len(log.batch(1, 3, 1 << 20)) == 3
    size = len(log.batch(1, 1, 1 << 20)[0].command["pad"])
    assert len(log.batch(1, 10, 350)) == 2  # each entry is a little over 100 bytes
    assert len(log.batch(1, 10, 1)) == 1
    assert log.batch(11, 10, 1000) == []
    assert size == 100


def test_truncation_drops_the_suffix_and_its_configs() -> None:
    log = RaftLog(Snapshot(0, 0, (A, B, C)))
    log.append([LogEntry.noop(1), LogEntry.config(1, [A, B, C, D]), command(2)])
    assert log.members == (A, B, C, D) and log.config_index == 2
    log.truncate_from(2)
    assert log.last_index == 1 and log.members == (A, B, C) and log.config_index == 0


def test_members_at_an_index_follow_the_config_entries() -> None:
    log = RaftLog(Snapshot(0, 0, (A, B, C)))
    log.append([LogEntry.noop(1), LogEntry.config(1, [A, B]), command(1), LogEntry.config(2, [A])])
    assert [log.members_at(i) for i in range(5)] == [(A, B, C), (A, B, C), (A, B), (A, B), (A,)]


def test_compaction_keeps_entries_after_a_matching_snapshot() -> None:
    log = RaftLog(Snapshot(0, 0, (A, B, C)))
    log.append([LogEntry.noop(1), LogEntry.config(1, [A, B]), command(2), command(2)])
    log.compact(Snapshot(2, 1, (A, B), b"state"))
    assert (log.first_index, log.last_index) == (3, 4)
    assert log.term_at(2) == 1 and log.entry(3).term == 2
    assert log.members == (A, B) and log.config_index == 2


def test_compaction_discards_a_log_that_conflicts_with_the_snapshot() -> None:
    log = RaftLog(Snapshot(0, 0, (A, B, C)))
    log.append([LogEntry.noop(1), command(1), command(1)])
    log.compact(Snapshot(2, 3, (A, B, C), b"state"))
    assert (log.first_index, log.last_index, log.last_term) == (3, 2, 3)


def test_the_first_index_of_a_term_run_is_found_for_the_fast_back_up() -> None:
    log = RaftLog(Snapshot(2, 1, (A,)))
    log.append([command(1), command(3), command(3), command(3), command(4)])
    assert log.first_index_of_term_at(6) == 4
    assert log.first_index_of_term_at(3) == 3
    assert log.first_index_of_term_at(7) == 7
