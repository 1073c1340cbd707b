"""The accounts tables: who may log in, the tokens issued to them, and spent challenges.

Plain SQL through the node's `sqlite_utils.Database`; each write is one committed transaction.
Password hashes stay in this module and `AccountService`: no row type that leaves them
carries a hash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from lightbox_node.accounts.errors import ChallengeReplayed, UsernameTaken
from lightbox_node.errors import StoreError
from lightbox_node.store.transactions import committed


def create_accounts_tables(db: Database) -> None:
    """Migration 5: accounts, their tokens, spent proof-of-work challenges; frozen once shipped."""
    db.execute(
        "CREATE TABLE accounts ("
        " username TEXT PRIMARY KEY NOT NULL,"
        " password_hash TEXT NOT NULL,"
        " role TEXT NOT NULL CHECK (role IN ('user', 'admin')),"
        " email TEXT,"
        " email_verified INTEGER NOT NULL DEFAULT 0,"
        " created_at REAL NOT NULL,"
        " tokens_valid_after_ms INTEGER NOT NULL DEFAULT 0"
        ") WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE api_tokens ("
        " token_id TEXT PRIMARY KEY NOT NULL,"
        " username TEXT NOT NULL,"
        " scope TEXT NOT NULL CHECK (scope IN ('user', 'admin', 'gpu-host')),"
        " label TEXT NOT NULL DEFAULT '',"
        " issued_at_ms INTEGER NOT NULL,"
        " expires_at_ms INTEGER NOT NULL,"
        " revoked_at_ms INTEGER"
        ") WITHOUT ROWID"
    )
    db.execute("CREATE INDEX api_tokens_by_user ON api_tokens (username)")
    db.execute(
        "CREATE TABLE pow_spent ("
        " challenge_id TEXT PRIMARY KEY NOT NULL,"
        " expires_at_ms INTEGER NOT NULL"
        ") WITHOUT ROWID"
    )


@dataclass(frozen=True, slots=True)
class AccountRow:
    """One account as stored, hash included; stays inside the accounts package."""

    username: str
    password_hash: str
    role: str
    email: str | None
    email_verified: bool
    created_at: float
    tokens_valid_after_ms: int


@dataclass(frozen=True, slots=True)
class TokenRow:
    """One issued token (never the token itself, which is not stored)."""

    token_id: str
    username: str
    scope: str
    label: str
    issued_at_ms: int
    expires_at_ms: int
    revoked_at_ms: int | None


class Duplicate(StoreError):
    """A row with this key exists already."""


def read(db: Database, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    try:
        return db.conn.execute(sql, parameters).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"could not read the accounts tables: {exc}") from exc


def load_accounts(db: Database) -> list[AccountRow]:
    rows = read(
        db,
        "SELECT username, password_hash, role, email, email_verified, created_at,"
        " tokens_valid_after_ms FROM accounts ORDER BY username",
    )
    return [
        AccountRow(name, hashed, role, email, bool(verified), created, valid_after)
        for name, hashed, role, email, verified, created, valid_after in rows
    ]


def load_live_tokens(db: Database, now_ms: int) -> list[TokenRow]:
    rows = read(
        db,
        "SELECT token_id, username, scope, label, issued_at_ms, expires_at_ms, revoked_at_ms"
        " FROM api_tokens WHERE expires_at_ms > ?",
        [now_ms],
    )
    return [TokenRow(*row) for row in rows]


def insert_account(db: Database, row: AccountRow, spent: tuple[str, int] | None = None) -> None:
    """Create the account, spending the proof-of-work challenge `spent` (id, expiry) in the
    same transaction, so a refused registration does not use up its challenge.

    Raises UsernameTaken or ChallengeReplayed and changes nothing then.
    """
    now_ms = int(row.created_at * 1000)
    with committed(db, f"create account {row.username!r}", on_conflict=Duplicate) as conn:
        taken = conn.execute("SELECT 1 FROM accounts WHERE username = ?", [row.username]).fetchone()
        if taken:
            raise UsernameTaken(f"the user name {row.username!r} is taken; choose another")
        if spent is not None:
            conn.execute("DELETE FROM pow_spent WHERE expires_at_ms <= ?", [now_ms])
            used = conn.execute(
                "SELECT 1 FROM pow_spent WHERE challenge_id = ?", [spent[0]]
            ).fetchone()
            if used:
                raise ChallengeReplayed(
                    "this challenge was already used; fetch a new one and solve it again"
                )
            conn.execute(
                "INSERT INTO pow_spent (challenge_id, expires_at_ms) VALUES (?, ?)", list(spent)
            )
        conn.execute(
            "INSERT INTO accounts (username, password_hash, role, email, email_verified,"
            " created_at, tokens_valid_after_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                row.username,
                row.password_hash,
                row.role,
                row.email,
                int(row.email_verified),
                row.created_at,
                row.tokens_valid_after_ms,
            ],
        )


def update_account(db: Database, row: AccountRow) -> None:
    with committed(db, f"update account {row.username!r}", on_conflict=Duplicate) as conn:
        conn.execute(
            "UPDATE accounts SET password_hash = ?, role = ?, email = ?, email_verified = ?,"
            " tokens_valid_after_ms = ? WHERE username = ?",
            [
                row.password_hash,
                row.role,
                row.email,
                int(row.email_verified),
                row.tokens_valid_after_ms,
                row.username,
            ],
        )


def insert_token(db: Database, row: TokenRow, now_ms: int) -> None:
    """Record an issued token, and forget tokens expired long enough ago to be useless."""
    with committed(db, "record a token", on_conflict=Duplicate) as conn:
        conn.execute("DELETE FROM api_tokens WHERE expires_at_ms <= ?", [now_ms])
        conn.execute(
            "INSERT INTO api_tokens (token_id, username, scope, label, issued_at_ms,"
            " expires_at_ms, revoked_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                row.token_id,
                row.username,
                row.scope,
                row.label,
                row.issued_at_ms,
                row.expires_at_ms,
                row.revoked_at_ms,
            ],
        )


def revoke_tokens(db: Database, token_ids: Sequence[str], now_ms: int) -> None:
    with committed(db, "revoke tokens", on_conflict=Duplicate) as conn:
        conn.executemany(
            "UPDATE api_tokens SET revoked_at_ms = ? WHERE token_id = ? AND revoked_at_ms IS NULL",
            [(now_ms, token_id) for token_id in token_ids],
        )
