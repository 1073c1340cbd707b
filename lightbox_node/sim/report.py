"""Simulation results as files and tables: the per-request CSV and the per-bucket summary.

Requests are bucketed by the user's trust just before submitting, in the paper's five
buckets (0–200 … 801–1000). Only served requests enter the response-time statistics;
refused, failed and unfinished ones are counted beside them, never averaged in (the
paper averaged its rejections in with the served jobs).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from lightbox_node.sim.network import FAILED, REFUSED, SERVED, UNFINISHED, Request, SetupResult

BUCKETS: tuple[tuple[float, str], ...] = (
    (200.0, "0-200"),
    (400.0, "201-400"),
    (600.0, "401-600"),
    (800.0, "601-800"),
    (math.inf, "801-1000"),
)
"""(upper bound, label): a trust t falls in the first bucket with t <= bound."""
BUCKET_LABELS = tuple(label for _, label in BUCKETS)
KINDS = ("all", "local", "federated")

REQUEST_COLUMNS = (
    "policy",
    "servers",
    "users_per_server",
    "hosts_per_server",
    "server",
    "user",
    "seq",
    "time",
    "trust",
    "bucket",
    "kind",
    "target_server",
    "outcome",
    "queue_wait",
    "response_time",
    "reason",
)


def bucket_of(trust: float) -> str:
    for bound, label in BUCKETS:
        if trust <= bound:
            return label
    return BUCKETS[-1][1]  # NaN: never produced, but never a crash either


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, interpolating linearly (numpy's default)."""
    if not ordered:
        return math.nan
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.3f}"


def request_rows(result: SetupResult) -> Iterable[list[str]]:
    """The CSV rows of one setup's requests (strings, fixed precision: byte-stable)."""
    head = [result.policy, str(result.servers), str(result.users), str(result.hosts)]
    for r in result.requests:
        yield [
            *head,
            str(r.server),
            str(r.user),
            str(r.seq),
            _number(r.submitted_at),
            _number(r.trust),
            bucket_of(r.trust),
            "federated" if r.federated else "local",
            str(r.target),
            r.outcome,
            _number(r.queue_wait),
            _number(r.response_time),
            r.reason,
        ]


def write_requests(out: io.TextIOBase, result: SetupResult, *, header: bool) -> None:
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(REQUEST_COLUMNS)
    writer.writerows(request_rows(result))


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """Response times of the served requests of one bucket, and counts of the rest."""

    policy: str
    servers: int
    users: int
    kind: str
    bucket: str
    requests: int
    served: int
    refused: int
    failed: int
    unfinished: int
    median_s: float
    p90_s: float
    p99_s: float
    max_s: float
    median_wait_s: float


SUMMARY_COLUMNS = tuple(f.name for f in fields(SummaryRow))


def summarize(result: SetupResult) -> list[SummaryRow]:
    """One row per kind (all, local, federated) and trust bucket."""
    groups: dict[tuple[str, str], list[Request]] = {}
    for r in result.requests:
        label = bucket_of(r.trust)
        groups.setdefault(("all", label), []).append(r)
        groups.setdefault(("federated" if r.federated else "local", label), []).append(r)
    rows = []
    for kind in KINDS:
        if kind != "all" and result.servers == 1:
            continue
        for label in BUCKET_LABELS:
            members = groups.get((kind, label), [])
            outcomes = {SERVED: 0, REFUSED: 0, FAILED: 0, UNFINISHED: 0}
            for r in members:
                outcomes[r.outcome] += 1
            times = sorted(r.response_time for r in members if r.outcome == SERVED)
            waits = sorted(r.queue_wait for r in members if r.queue_wait is not None)
            rows.append(
                SummaryRow(
                    policy=result.policy,
                    servers=result.servers,
                    users=result.users,
                    kind=kind,
                    bucket=label,
                    requests=len(members),
                    served=outcomes[SERVED],
                    refused=outcomes[REFUSED],
                    failed=outcomes[FAILED],
                    unfinished=outcomes[UNFINISHED],
                    median_s=percentile(times, 0.5),
                    p90_s=percentile(times, 0.9),
                    p99_s=percentile(times, 0.99),
                    max_s=times[-1] if times else math.nan,
                    median_wait_s=percentile(waits, 0.5),
                )
            )
    return rows


def write_summary(out: io.TextIOBase, rows: Iterable[SummaryRow]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SUMMARY_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                _number(v) if isinstance(v, float) else str(v)
                for v in (getattr(row, name) for name in SUMMARY_COLUMNS)
            ]
        )


def summary_table(rows: Sequence[SummaryRow], *, kind: str = "all") -> str:
    """A Markdown table: one line per setup, policy and bucket, served times and counts."""
    lines = [
        "| servers | users/server | policy | trust | served | median s | p90 s | p99 s "
        "| refused | failed | unfinished |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.kind != kind:
            continue
        lines.append(
            f"| {row.servers} | {row.users} | {row.policy} | {row.bucket} | {row.served} "
            f"| {_short(row.median_s)} | {_short(row.p90_s)} | {_short(row.p99_s)} "
            f"| {row.refused} | {row.failed} | {row.unfinished} |"
        )
    return "\n".join(lines)


def _short(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}"


__all__ = [
    "BUCKETS",
    "BUCKET_LABELS",
    "KINDS",
    "REQUEST_COLUMNS",
    "SUMMARY_COLUMNS",
    "SummaryRow",
    "bucket_of",
    "percentile",
    "request_rows",
    "summarize",
    "summary_table",
    "write_requests",
    "write_summary",
]
