"""The queue node's durable job journal, and the saved trust ledger: jobs survive a SIGKILL.

Every accepted job is written, and the write committed, before the job is acknowledged;
every later change of a job is committed before the call returns. With the database in WAL
mode and `synchronous=FULL` (see `open_database`), a committed transaction survives the
process being killed at any moment, so a restarted node loses no accepted job and, since a
finished job's final state is journaled too, runs no completed job again.

Each write method runs its own transaction and commits it before returning. They refuse to
run inside a transaction someone else left open on the connection, because that transaction,
not the journal, would then decide whether the write is durable.

Privacy: job inputs (prompts included) are stored only to run the job. A finished job's row
is deleted `retention_s` after its results were delivered (or after it finished, if they
never were); aggregate counters keep the numbers. Deletion zeroes the freed space
(`secure_delete`) and truncates the write-ahead log. Nothing here logs inputs, and no error
message quotes them.

Synchronous on purpose: the trio shell calls it through `trio.to_thread.run_sync`, one
thread at a time.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from sqlite_utils import Database

from lightbox_node.errors import LightboxError, StoreError, WireError
from lightbox_node.identity import PeerId
from lightbox_node.sched.jobs import FINAL_STATES, Attempt, Job, JobSpec, JobState, UnknownJob
from lightbox_node.store.transactions import batch, committed
from lightbox_node.wire import WireLimits, pack, unpack

JOURNAL_LIMITS = WireLimits(
    max_frame=16 << 20,
    max_str=16 << 20,
    max_bin=16 << 20,
    max_array=1 << 16,
    max_map=1 << 16,
    max_depth=32,
)
"""Bounds for a job's stored inputs. The same bounds pack and unpack them, and `accept`
refuses inputs over them, so a job that was accepted can always be read back."""

_FINAL_STATE_VALUES = tuple(sorted(state.value for state in FINAL_STATES))

JOB_COUNTERS = ("submitted", *_FINAL_STATE_VALUES)
"""Counters the journal keeps itself: jobs ever accepted, and jobs that ended in each final
state (done, faulted, cancelled, expired), purged jobs included."""
_FINAL_PLACEHOLDERS = ", ".join("?" * len(_FINAL_STATE_VALUES))

_JOB_COLUMNS = (
    "job_id",
    "owner",
    "origin",
    "task",
    "inputs",
    "cost",
    "submitted_at",
    "host",
    "federated_from",
    "remote_job_id",
    "state",
    "priority",
    "queued_at",
    "attempts",
    "faults",
    "progress",
    "progress_message",
    "results",
    "error",
    "finished_at",
    "delivered_at",
    "updated_at",
)
_SELECT_JOBS = f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs"
_INSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))})"
)
_UPDATE_JOB = (
    "UPDATE jobs SET state = ?, priority = ?, queued_at = ?, attempts = ?, faults = ?,"
    " progress = ?, progress_message = ?, results = ?, error = ?, finished_at = ?,"
    " updated_at = ? WHERE job_id = ?"
)


# -- migrations (frozen once shipped: later changes are new migrations) -------------------------


def create_jobs_tables(db: Database) -> None:
    """Migration 3: the job journal, and counters that outlive purged jobs."""
    db.execute(
        "CREATE TABLE jobs ("
        " job_id TEXT PRIMARY KEY NOT NULL,"
        " owner TEXT NOT NULL,"
        " origin TEXT NOT NULL,"
        " task TEXT NOT NULL,"
        " inputs BLOB,"
        " cost REAL NOT NULL,"
        " submitted_at REAL NOT NULL,"
        " host TEXT,"
        " federated_from TEXT,"
        " remote_job_id TEXT,"
        " state TEXT NOT NULL,"
        " priority REAL NOT NULL,"
        " queued_at REAL NOT NULL,"
        " attempts TEXT NOT NULL DEFAULT '[]',"
        " faults TEXT NOT NULL DEFAULT '[]',"
        " progress REAL NOT NULL DEFAULT 0,"
        " progress_message TEXT NOT NULL DEFAULT '',"
        " results TEXT NOT NULL DEFAULT '[]',"
        " error TEXT,"
        " finished_at REAL,"
        " delivered_at REAL,"
        " updated_at REAL NOT NULL"
        ")"
    )
    db.execute("CREATE INDEX jobs_by_state ON jobs (state)")
    db.execute("CREATE INDEX jobs_by_finished_at ON jobs (finished_at)")
    db.execute(
        "CREATE TABLE job_counters (name TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL)"
        " WITHOUT ROWID"
    )


def create_trust_table(db: Database) -> None:
    """Migration 4: the trust ledger's saved rows, one per user."""
    db.execute(
        "CREATE TABLE trust ("
        " user TEXT PRIMARY KEY NOT NULL,"
        " trust REAL NOT NULL,"
        " updated_at REAL NOT NULL,"
        " suspended INTEGER NOT NULL,"
        " reason TEXT NOT NULL DEFAULT ''"
        ") WITHOUT ROWID"
    )


def _read(db: Database, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    try:
        return db.conn.execute(sql, parameters).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"could not read the job journal: {exc}") from exc


# -- the job journal -----------------------------------------------------------------------------


class JobJournal:
    """Jobs in the database: written before they are acknowledged, reloaded after a restart."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock
        # Deleted rows are overwritten with zeros rather than left in free pages, so a
        # purged job's inputs cannot be read back out of the file.
        db.conn.execute("PRAGMA secure_delete = ON")

    # -- writing ---------------------------------------------------------------------------

    def accept(self, job: Job) -> None:
        """Journal a newly accepted job; durable on return, so it may then be acknowledged.

        Raises StoreError if a job with this id is already journaled (it is never
        overwritten) or if the job cannot be stored.
        """
        row = self._insert_row(job, self._clock())
        try:
            with committed(self._db, f"journal job {job.job_id}") as conn:
                conn.execute(_INSERT_JOB, row)
        except StoreError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError) and self._holds(job.job_id):
                raise _duplicate(job.job_id) from None
            raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run several journal and trust writes as one transaction: one fsync for all.

        The queue node's group commit writes each round's new jobs, changes, deliveries and
        trust rows this way; if anything fails, none of it is written.
        """
        with batch(self._db, "write a batch of journal changes"):
            yield

    def accept_many(self, jobs: Iterable[Job]) -> None:
        """Journal several new jobs in one transaction: all of them, or none.

        Much faster than one `accept` each, since the whole batch costs one fsync; for
        submissions that arrive together. A job id that is already journaled, or that
        appears twice in the batch, refuses the whole batch with a StoreError.
        """
        jobs = list(jobs)
        if not jobs:
            return
        now = self._clock()
        rows = [self._insert_row(job, now) for job in jobs]
        ids = [job.job_id for job in jobs]
        seen: set[str] = set()
        for job_id in ids:
            if job_id in seen:
                raise StoreError(
                    f"job {job_id} appears twice in one batch; no job of the batch was journaled"
                )
            seen.add(job_id)
        try:
            with committed(self._db, f"journal a batch of {len(rows)} jobs") as conn:
                conn.executemany(_INSERT_JOB, rows)
        except StoreError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                held = next((job_id for job_id in ids if self._holds(job_id)), None)
                if held is not None:
                    raise _duplicate(held, batch=True) from None
            raise

    def update(self, job: Job) -> None:
        """Journal the job's current state, attempts, progress and outcome; durable on return.

        The spec is never rewritten: it is fixed when the job is accepted. Raises StoreError
        if the job was never journaled.
        """
        self.update_many([job])

    def update_many(self, jobs: Iterable[Job]) -> None:
        """`update` for many jobs in one transaction (one fsync): all or nothing."""
        now = self._clock()
        rows = [
            (
                job.state.value,
                job.priority,
                job.queued_at,
                _dump_attempts(job.attempts),
                _dump_json(job.faults),
                job.progress,
                job.progress_message,
                _dump_json(job.results),
                job.error,
                job.finished_at,
                now,
                job.job_id,
            )
            for job in jobs
        ]
        if not rows:
            return
        with committed(self._db, f"journal changes of {len(rows)} job(s)") as conn:
            for row in rows:
                if conn.execute(_UPDATE_JOB, row).rowcount == 0:
                    raise StoreError(
                        f"job {row[-1]} is not in the journal, so its change cannot be saved; "
                        "a job must be accepted before it is updated (or it was purged). This "
                        "is a bug in lightbox-node: please report it with this message"
                    )

    def mark_delivered(self, job_id: str, now: float) -> None:
        """Record that the job's results reached their owner, which starts its retention.

        Only the first delivery counts, so fetching results again does not extend how long
        they are kept. Raises UnknownJob if the job is not (or no longer) journaled.
        """
        with committed(self._db, f"record delivery of job {job_id}") as conn:
            changed = conn.execute(
                "UPDATE jobs SET delivered_at = COALESCE(delivered_at, ?), updated_at = ?"
                " WHERE job_id = ?",
                (now, now, job_id),
            ).rowcount
        if changed == 0:
            raise UnknownJob(
                f"job {job_id} is not known here: it never was, or it was deleted after its "
                "retention period; submit it again if its results are still needed"
            )

    def purge(self, now: float, retention_s: float) -> int:
        """Delete finished jobs whose retention has run out; returns how many were deleted.

        Retention runs from delivery, or from finishing for results never delivered
        (whichever is later). The deleted jobs are added to the counters in the same
        transaction, so `counters()` reads the same before and after.
        """
        if retention_s < 0:
            raise ValueError(f"retention_s must be at least 0, not {retention_s}")
        cutoff = now - retention_s
        # The plain `finished_at <= ?` term lets SQLite use the finished_at index.
        where = (
            f"state IN ({_FINAL_PLACEHOLDERS}) AND finished_at IS NOT NULL"
            " AND finished_at <= ? AND COALESCE(delivered_at, finished_at) <= ?"
        )
        parameters = (*_FINAL_STATE_VALUES, cutoff, cutoff)
        with committed(self._db, "delete jobs past their retention") as conn:
            by_state = conn.execute(
                f"SELECT state, COUNT(*) FROM jobs WHERE {where} GROUP BY state", parameters
            ).fetchall()
            purged = sum(count for _, count in by_state)
            if purged:
                _add_to_counters(conn, [("submitted", purged), *by_state])
                conn.execute(f"DELETE FROM jobs WHERE {where}", parameters)
        if purged:
            # The write-ahead log still holds the deleted rows' old pages; copying it into
            # the database and truncating it drops them. Best effort: a reader on another
            # connection can make it do less, and the next purge tries again.
            _read(self._db, "PRAGMA wal_checkpoint(TRUNCATE)")
        return purged

    def bump(self, counter: str, by: int = 1) -> None:
        """Add to a counter of events that are not journaled jobs (a refused submission, say).

        The job counters in `JOB_COUNTERS` are kept by the journal itself, in the same
        transactions as the jobs they count, and cannot be bumped.
        """
        if not isinstance(counter, str) or not counter:
            raise ValueError(f"a counter name is non-empty text, not {counter!r}")
        if counter in JOB_COUNTERS:
            raise ValueError(
                f"{counter!r} is counted by the job journal itself from the jobs it holds; "
                "bump only other counters"
            )
        with committed(self._db, f"bump counter {counter!r}") as conn:
            _add_to_counters(conn, [(counter, by)])

    # -- reading ---------------------------------------------------------------------------

    def load(self, job_id: str) -> Job | None:
        """The journaled job with this id, or None if there is none."""
        rows = _read(self._db, f"{_SELECT_JOBS} WHERE job_id = ?", (job_id,))
        return _job_from_row(rows[0]) if rows else None

    def load_unfinished(self) -> list[Job]:
        """Every job not yet in a final state, oldest submission first: what a restart resumes."""
        rows = _read(
            self._db,
            f"{_SELECT_JOBS} WHERE state NOT IN ({_FINAL_PLACEHOLDERS})"
            " ORDER BY submitted_at, rowid",
            _FINAL_STATE_VALUES,
        )
        return [_job_from_row(row) for row in rows]

    def load_finished_since(self, since: float) -> list[Job]:
        """Jobs that finished at or after `since` and are still kept, earliest first."""
        rows = _read(
            self._db,
            f"{_SELECT_JOBS} WHERE finished_at >= ? AND state IN ({_FINAL_PLACEHOLDERS})"
            " ORDER BY finished_at, rowid",
            (since, *_FINAL_STATE_VALUES),
        )
        return [_job_from_row(row) for row in rows]

    def counters(self) -> dict[str, int]:
        """All counters: jobs ever submitted and ended per final state, purged ones included,
        and every bumped counter."""
        counts = dict.fromkeys(JOB_COUNTERS, 0)
        for name, value in _read(self._db, "SELECT name, value FROM job_counters"):
            counts[name] = counts.get(name, 0) + value
        for state, count in _read(self._db, "SELECT state, COUNT(*) FROM jobs GROUP BY state"):
            counts["submitted"] += count
            if state in _FINAL_STATE_VALUES:
                counts[state] += count
        return counts

    # -- helpers ---------------------------------------------------------------------------

    def _holds(self, job_id: str) -> bool:
        return bool(_read(self._db, "SELECT 1 FROM jobs WHERE job_id = ?", (job_id,)))

    @staticmethod
    def _insert_row(job: Job, now: float) -> tuple[Any, ...]:
        spec = job.spec
        return (
            spec.job_id,
            spec.owner,
            str(spec.origin),
            spec.task,
            _pack_inputs(spec),
            spec.cost,
            spec.submitted_at,
            _peer_text(spec.host),
            _peer_text(spec.federated_from),
            spec.remote_job_id,
            job.state.value,
            job.priority,
            job.queued_at,
            _dump_attempts(job.attempts),
            _dump_json(job.faults),
            job.progress,
            job.progress_message,
            _dump_json(job.results),
            job.error,
            job.finished_at,
            None,
            now,
        )


def _duplicate(job_id: str, *, batch: bool = False) -> StoreError:
    tail = "; no job of the batch was journaled" if batch else ""
    return StoreError(
        f"job {job_id} is already in the journal and is never overwritten{tail}; "
        "give a new job a fresh id"
    )


def _add_to_counters(conn: sqlite3.Connection, amounts: Iterable[tuple[str, int]]) -> None:
    conn.executemany(
        "INSERT INTO job_counters (name, value) VALUES (?, ?)"
        " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        list(amounts),
    )


# -- encoding rows -------------------------------------------------------------------------------


def _pack_inputs(spec: JobSpec) -> bytes:
    try:
        packed = pack(dict(spec.inputs), JOURNAL_LIMITS)
    except WireError as exc:
        # The wire error names a type or a limit, never the value itself.
        raise StoreError(f"the inputs of job {spec.job_id} cannot be journaled: {exc}") from None
    if len(packed) > JOURNAL_LIMITS.max_frame:
        raise StoreError(
            f"the inputs of job {spec.job_id} are {len(packed)} bytes, over the journal's "
            f"{JOURNAL_LIMITS.max_frame}-byte limit; pass large data as blobs"
        )
    return packed


def _peer_text(peer: PeerId | None) -> str | None:
    return None if peer is None else str(peer)


def _dump_json(value: list[str]) -> str:
    return json.dumps(list(value), ensure_ascii=False, separators=(",", ":"))


def _dump_attempts(attempts: Sequence[Attempt]) -> str:
    return json.dumps(
        [
            {
                "number": attempt.number,
                "host": str(attempt.host),
                "dispatched_at": attempt.dispatched_at,
                "deadline": attempt.deadline,
                "outcome": attempt.outcome,
            }
            for attempt in attempts
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _job_from_row(row: Sequence[Any]) -> Job:
    record = dict(zip(_JOB_COLUMNS, row, strict=True))
    job_id = record["job_id"]
    try:
        spec = JobSpec(
            job_id=job_id,
            owner=record["owner"],
            origin=PeerId.parse(record["origin"]),
            task=record["task"],
            inputs=_unpack_inputs(record["inputs"]),
            cost=record["cost"],
            submitted_at=record["submitted_at"],
            host=_parse_peer(record["host"]),
            federated_from=_parse_peer(record["federated_from"]),
            remote_job_id=record["remote_job_id"],
        )
        return Job(
            spec=spec,
            state=JobState(record["state"]),
            priority=record["priority"],
            queued_at=record["queued_at"],
            attempts=[_attempt_from_json(item) for item in json.loads(record["attempts"])],
            faults=list(json.loads(record["faults"])),
            progress=record["progress"],
            progress_message=record["progress_message"],
            results=list(json.loads(record["results"])),
            finished_at=record["finished_at"],
            error=record["error"],
        )
    except (LightboxError, ValueError, TypeError, KeyError) as exc:
        # Only the exception's type: its text could quote the stored inputs.
        raise StoreError(
            f"the journaled job {job_id} cannot be read back ({type(exc).__name__}); "
            "the database was changed outside lightbox-node or is damaged"
        ) from None


def _unpack_inputs(data: bytes | None) -> Mapping[str, Any]:
    if data is None:  # deleted for privacy; the row is on its way out
        return {}
    inputs = unpack(bytes(data), JOURNAL_LIMITS)
    if type(inputs) is not dict:
        raise TypeError("job inputs must be a map")
    return inputs


def _parse_peer(text: str | None) -> PeerId | None:
    return None if text is None else PeerId.parse(text)


def _attempt_from_json(item: Mapping[str, Any]) -> Attempt:
    return Attempt(
        number=item["number"],
        host=PeerId.parse(item["host"]),
        dispatched_at=item["dispatched_at"],
        deadline=item["deadline"],
        outcome=item["outcome"],
    )


# -- the trust ledger's rows ---------------------------------------------------------------------


class TrustRow(NamedTuple):
    """One user's saved standing, as the trust ledger's `snapshot()` gives and `load()` takes."""

    user: str
    trust: float
    updated_at: float
    suspended: bool
    reason: str


class TrustStore:
    """Saves and reloads the trust ledger's rows, so a restart keeps everyone's standing."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def save(self, rows: Iterable[Sequence[Any]]) -> None:
        """Insert or replace each `(user, trust, updated_at, suspended, reason)` row, all in
        one transaction; users not among `rows` are left as they are."""
        values = [
            (user, trust, updated_at, int(bool(suspended)), reason)
            for user, trust, updated_at, suspended, reason in rows
        ]
        if not values:
            return
        with committed(self._db, f"save {len(values)} trust rows") as conn:
            conn.executemany(
                "INSERT INTO trust (user, trust, updated_at, suspended, reason)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user) DO UPDATE SET"
                " trust = excluded.trust, updated_at = excluded.updated_at,"
                " suspended = excluded.suspended, reason = excluded.reason",
                values,
            )

    def load(self) -> list[TrustRow]:
        """Every saved row, ordered by user."""
        rows = _read(
            self._db, "SELECT user, trust, updated_at, suspended, reason FROM trust ORDER BY user"
        )
        return [
            TrustRow(user, trust, updated_at, bool(suspended), reason)
            for user, trust, updated_at, suspended, reason in rows
        ]
