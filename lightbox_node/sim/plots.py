"""Figures of a simulation in the style of the paper's Figure 15 (matplotlib, Agg, PNG).

* `response_by_trust.png` — median response time of served requests by trust bucket: one
  panel per policy and network (single server, four servers), one line per user count.
* `policies_compared.png` — for the largest user count: median and p90 by bucket, one line
  per policy (top), and the share of requests not served (bottom): refused, failed, or
  still waiting when the run ended (starved, under a scheme without aging).
* `federated_vs_local.png` — with several servers: median response of local and
  federated requests by bucket, per policy.

matplotlib is imported only here, so the simulation itself does not need it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from lightbox_node.errors import LightboxError
from lightbox_node.sim.report import BUCKET_LABELS, SummaryRow

_POLICY_STYLE = {"fifo": "tab:gray", "paper": "tab:orange", "lightbox": "tab:blue"}
_DPI = 90


class PlotsUnavailable(LightboxError):
    """matplotlib is not installed."""


def _pyplot():  # type: ignore[no-untyped-def]
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable(
            "plots need matplotlib: install it with `pip install 'lightbox-node[sim]'` "
            "(or pass --no-plots to write only the CSV files)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(rows: Sequence[SummaryRow], field: str, **match: object) -> list[float]:
    by_bucket = {
        r.bucket: getattr(r, field)
        for r in rows
        if all(getattr(r, key) == value for key, value in match.items())
    }
    return [by_bucket.get(label, math.nan) for label in BUCKET_LABELS]


def _setup_title(servers: int) -> str:
    return "single server" if servers == 1 else f"{servers} servers (federated)"


def write_plots(rows: Sequence[SummaryRow], out_dir: Path) -> list[Path]:
    """Write every figure for these summary rows into `out_dir`; returns the files."""
    plt = _pyplot()
    policies = list(dict.fromkeys(r.policy for r in rows))
    servers = sorted({r.servers for r in rows})
    users = sorted({r.users for r in rows})
    x = range(len(BUCKET_LABELS))
    written = []

    fig, axes = plt.subplots(
        len(policies),
        len(servers),
        figsize=(4.6 * len(servers), 2.9 * len(policies)),
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for i, policy in enumerate(policies):
        for j, n in enumerate(servers):
            ax = axes[i][j]
            for u in users:
                ys = _series(rows, "median_s", policy=policy, servers=n, users=u, kind="all")
                ax.plot(x, ys, marker="o", markersize=3, label=f"{u} users")
            ax.set_title(f"{policy}: {_setup_title(n)}", fontsize=9)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("median response (s)")
    for ax in axes[-1]:
        ax.set_xticks(list(x), BUCKET_LABELS, fontsize=7)
        ax.set_xlabel("trust at submit")
    axes[0][-1].legend(fontsize=7, title="per server", title_fontsize=7)
    fig.suptitle("Response time of served requests by trust score", fontsize=11)
    fig.tight_layout()
    written.append(_save(fig, out_dir / "response_by_trust.png", plt))

    top = users[-1]
    fig, axes = plt.subplots(2, len(servers), figsize=(4.6 * len(servers), 6), squeeze=False)
    for j, n in enumerate(servers):
        ax, bottom = axes[0][j], axes[1][j]
        width = 0.8 / max(1, len(policies))
        for k, policy in enumerate(policies):
            color = _POLICY_STYLE.get(policy)
            match = {"policy": policy, "servers": n, "users": top, "kind": "all"}
            ax.plot(x, _series(rows, "median_s", **match), marker="o", color=color, label=policy)
            ax.plot(x, _series(rows, "p90_s", **match), linestyle="--", color=color)
            total = _series(rows, "requests", **match)
            served = _series(rows, "served", **match)
            lost = [(t - s) / t if t else math.nan for s, t in zip(served, total, strict=True)]
            offsets = [v + (k - (len(policies) - 1) / 2) * width for v in x]
            bottom.bar(offsets, lost, width=width, color=color, label=policy)
        ax.set_title(f"{_setup_title(n)}, {top} users per server", fontsize=9)
        ax.set_ylabel("response (s): median —, p90 --")
        ax.grid(alpha=0.3)
        ax.set_xticks(list(x), BUCKET_LABELS, fontsize=7)
        bottom.set_ylabel("share not served")
        bottom.set_ylim(0, 1)
        bottom.set_xticks(list(x), BUCKET_LABELS, fontsize=7)
        bottom.set_xlabel("trust at submit")
        bottom.grid(alpha=0.3, axis="y")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    written.append(_save(fig, out_dir / "policies_compared.png", plt))

    federated = [n for n in servers if n > 1]
    if federated:
        n = federated[-1]
        fig, axes = plt.subplots(1, len(policies), figsize=(4.2 * len(policies), 3.2))
        axes = axes if len(policies) > 1 else [axes]
        for ax, policy in zip(axes, policies, strict=True):
            for kind, style in (("local", "-"), ("federated", "--")):
                match = {"policy": policy, "servers": n, "users": top, "kind": kind}
                ys = _series(rows, "median_s", **match)
                ax.plot(x, ys, linestyle=style, marker="o", markersize=3, label=kind)
            ax.set_title(f"{policy}: {n} servers, {top} users each", fontsize=9)
            ax.set_xticks(list(x), BUCKET_LABELS, fontsize=7)
            ax.set_xlabel("trust at submit")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("median response (s)")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out_dir / "federated_vs_local.png", plt))
    return written


def _save(fig, path: Path, plt) -> Path:  # type: ignore[no-untyped-def]
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


__all__ = ["PlotsUnavailable", "write_plots"]
