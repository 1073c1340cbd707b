"""The operator's block and allow lists: semantics in memory, and persistence in SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightbox_node.errors import StoreError
from lightbox_node.gossip.peer_policy import (
    MAX_REASON_CHARS,
    PeerPolicy,
    PolicyEntry,
    Verdict,
    create_peer_policy_table,
    delete_entry,
    load_policy,
    save_entry,
)
from lightbox_node.identity import Identity, PeerId
from lightbox_node.store import MIGRATIONS, open_database

WITH_PEER_POLICY = MIGRATIONS  # the node's own schema registers the peer_policy table


def test_the_node_schema_creates_the_peer_policy_table() -> None:
    assert create_peer_policy_table in [m.apply for m in MIGRATIONS]


def peer(n: int) -> PeerId:
    return Identity.from_seed(n.to_bytes(32, "big")).peer_id


SPAMMER, FRIEND, STRANGER = peer(1), peer(2), peer(3)


# -- in memory -------------------------------------------------------------------------------


def test_every_peer_is_permitted_by_default() -> None:
    policy = PeerPolicy()
    assert not policy.is_blocked(STRANGER)
    assert policy.why_refused(STRANGER) is None


def test_a_blocked_peer_is_refused_with_its_reason() -> None:
    policy = PeerPolicy()
    entry = policy.block(SPAMMER, "floods jobs", 1_700_000_000.0)
    assert entry == PolicyEntry(SPAMMER, Verdict.BLOCK, "floods jobs", 1_700_000_000.0)
    assert policy.is_blocked(SPAMMER)
    assert policy.why_refused(SPAMMER) == "blocked by the operator: floods jobs"
    assert not policy.is_blocked(FRIEND)


def test_unblock_lifts_the_block() -> None:
    policy = PeerPolicy()
    policy.block(SPAMMER, "", 1.0)
    assert policy.unblock(SPAMMER)
    assert not policy.is_blocked(SPAMMER)
    assert not policy.unblock(SPAMMER)


def test_allowlist_only_mode_refuses_everyone_not_allowed() -> None:
    policy = PeerPolicy(allowlist_only=True)
    policy.allow(FRIEND, "our other queue node", 1.0)
    assert not policy.is_blocked(FRIEND)
    assert policy.is_blocked(STRANGER)
    assert "allowlist" in (policy.why_refused(STRANGER) or "")
    assert policy.disallow(FRIEND)
    assert policy.is_blocked(FRIEND)


def test_allowing_without_allowlist_mode_changes_nothing_for_others() -> None:
    policy = PeerPolicy()
    policy.allow(FRIEND)
    assert not policy.is_blocked(STRANGER)
    policy.allowlist_only = True
    assert policy.is_blocked(STRANGER) and not policy.is_blocked(FRIEND)


def test_the_latest_decision_on_a_peer_wins() -> None:
    policy = PeerPolicy(allowlist_only=True)
    policy.allow(FRIEND, "", 1.0)
    policy.block(FRIEND, "compromised key", 2.0)
    assert policy.is_blocked(FRIEND)
    assert policy.allowed() == []
    policy.allow(FRIEND, "key rotated back", 3.0)
    assert not policy.is_blocked(FRIEND)
    assert policy.blocked() == []


def test_unblock_does_not_touch_an_allow_and_disallow_does_not_touch_a_block() -> None:
    policy = PeerPolicy(allowlist_only=True)
    policy.allow(FRIEND)
    policy.block(SPAMMER, "", 1.0)
    assert not policy.unblock(FRIEND)
    assert not policy.disallow(SPAMMER)
    assert not policy.is_blocked(FRIEND) and policy.is_blocked(SPAMMER)


def test_entries_list_blocks_first() -> None:
    policy = PeerPolicy()
    policy.allow(FRIEND)
    policy.block(SPAMMER, "spam", 1.0)
    assert [e.verdict for e in policy.entries()] == [Verdict.BLOCK, Verdict.ALLOW]
    assert [e.peer for e in policy.blocked()] == [SPAMMER]
    assert [e.peer for e in policy.allowed()] == [FRIEND]


def test_an_overlong_reason_is_refused() -> None:
    with pytest.raises(ValueError, match="shorten"):
        PeerPolicy().block(SPAMMER, "x" * (MAX_REASON_CHARS + 1), 1.0)


# -- persistence -----------------------------------------------------------------------------


@pytest.fixture
def database_path(tmp_path: Path) -> Path:
    return tmp_path / "node.sqlite3"


def test_a_block_survives_a_restart(database_path: Path) -> None:
    with open_database(database_path, WITH_PEER_POLICY) as db:
        policy = load_policy(db)
        save_entry(db, policy.block(SPAMMER, "floods jobs", 1_700_000_000.5))
    with open_database(database_path, WITH_PEER_POLICY) as db:
        reopened = load_policy(db)
    assert reopened.is_blocked(SPAMMER)
    assert reopened.entry(SPAMMER) == PolicyEntry(
        SPAMMER, Verdict.BLOCK, "floods jobs", 1_700_000_000.5
    )
    assert not reopened.is_blocked(FRIEND)


def test_an_unblock_survives_a_restart(database_path: Path) -> None:
    with open_database(database_path, WITH_PEER_POLICY) as db:
        policy = load_policy(db)
        save_entry(db, policy.block(SPAMMER, "", 1.0))
    with open_database(database_path, WITH_PEER_POLICY) as db:
        policy = load_policy(db)
        assert policy.unblock(SPAMMER)
        delete_entry(db, SPAMMER, Verdict.BLOCK)
    with open_database(database_path, WITH_PEER_POLICY) as db:
        assert not load_policy(db).is_blocked(SPAMMER)


def test_the_allowlist_survives_a_restart_and_the_mode_comes_from_settings(
    database_path: Path,
) -> None:
    with open_database(database_path, WITH_PEER_POLICY) as db:
        policy = load_policy(db, allowlist_only=True)
        save_entry(db, policy.allow(FRIEND, "sister node", 5.0))
    with open_database(database_path, WITH_PEER_POLICY) as db:
        strict = load_policy(db, allowlist_only=True)
        open_ = load_policy(db)
    assert not strict.is_blocked(FRIEND) and strict.is_blocked(STRANGER)
    assert not open_.is_blocked(STRANGER)


def test_a_new_decision_replaces_the_stored_one(database_path: Path) -> None:
    with open_database(database_path, WITH_PEER_POLICY) as db:
        policy = load_policy(db)
        save_entry(db, policy.allow(FRIEND, "", 1.0))
        save_entry(db, policy.block(FRIEND, "changed my mind", 2.0))
        assert db.execute("SELECT count(*) FROM peer_policy").fetchone()[0] == 1
    with open_database(database_path, WITH_PEER_POLICY) as db:
        assert load_policy(db).is_blocked(FRIEND)


def test_deleting_with_a_verdict_leaves_another_verdict_alone(database_path: Path) -> None:
    with open_database(database_path, WITH_PEER_POLICY) as db:
        save_entry(db, PolicyEntry(FRIEND, Verdict.ALLOW))
        delete_entry(db, FRIEND, Verdict.BLOCK)
        assert load_policy(db).entry(FRIEND) is not None
        delete_entry(db, FRIEND)
        assert load_policy(db).entry(FRIEND) is None


def test_peer_ids_are_stored_in_their_readable_form(database_path: Path) -> None:
    with open_database(database_path, WITH_PEER_POLICY) as db:
        save_entry(db, PolicyEntry(SPAMMER, Verdict.BLOCK, "spam", 1.0))
        (stored,) = db.execute("SELECT peer_id FROM peer_policy").fetchone()
    assert stored == str(SPAMMER)


def test_a_damaged_row_is_reported_with_what_to_do(database_path: Path) -> None:
    with open_database(database_path, WITH_PEER_POLICY) as db:
        db.execute("INSERT INTO peer_policy (peer_id, verdict) VALUES ('lb1oops', 'block')")
        with pytest.raises(StoreError, match="DELETE FROM peer_policy"):
            load_policy(db)
