"""Scheduling policies for the simulation: FIFO, the paper's trust scheme, and Lightbox's own.

Each policy builds the scheduler one simulated queue server runs. All three are the real
`Scheduler` (placement, prefetch, stealing, deadlines, federation accounting); they differ
only in the trust ledger it is given and in a few `SchedulerParams`:

* **fifo** — no trust at all. Every job, local or federated, gets the same priority and
  nobody is ever refused, so the per-host queues are first come, first served.
* **paper** — the paper's scheme as this project reads it (docs/simulation.md): every
  request costs a fixed `paper_decrement` points whatever its size, a user at zero is
  refused, and an account's trust resets to the maximum once `paper_reset_s` have passed
  since its last reset (the reset the paper's code meant to do; its timestamp was never
  advanced). Priority is the trust left after paying; a federated job gets the fixed
  `federated_priority` and is not charged anywhere (the paper skipped that check). No aging.
* **lightbox** — this project's scheme, the real code unchanged: `TrustLedger` (cost-based
  price, continuous recovery, refusal when trust does not cover the price), aging in the
  queues, and the peer-score-aware federated penalty with the forwarding server's own
  `peer:<id>` budget.

Pure: no trio. A policy also says what the CSV records as a user's trust at submit.
"""

from __future__ import annotations

from dataclasses import dataclass

from lightbox_node.sched.scheduler import Scheduler, SchedulerParams
from lightbox_node.sched.trust import (
    STANDARD_IMAGE_COST,
    TrustExhausted,
    TrustLedger,
    TrustParams,
)
from lightbox_node.sim.config import SimConfig

MAX_TRUST = 1000.0


class FlatLedger(TrustLedger):
    """No trust: every account has the same (full) trust, nothing is charged or refused.

    It remembers each user's *nominal* trust (what the workload gave them) only so that the
    results can be bucketed the same way as under the trust schemes; scheduling never sees it.
    """

    def __init__(self, params: TrustParams) -> None:
        super().__init__(params)
        self._nominal: dict[str, float] = {}

    def trust(self, user: str, now: float) -> float:
        return self.params.max_trust

    def nominal(self, user: str) -> float:
        return self._nominal.get(user, self.params.start_trust)

    def check(self, user: str, cost: float, now: float) -> float:
        return 0.0

    def charge(self, user: str, cost: float, now: float) -> float:
        return 0.0

    def refund(self, user: str, amount: float, now: float) -> float:
        return self.params.max_trust

    def set_trust(self, user: str, value: float, now: float) -> None:
        self._nominal[user] = float(value)


@dataclass(slots=True)
class _PaperAccount:
    trust: float
    reset_at: float


class PaperTrustLedger(TrustLedger):
    """The paper's trust: a fixed decrement per request, refusal at zero, a periodic reset.

    Accounts of forwarding servers (``peer:…``) are never charged: the paper did not check
    trust for federated requests. Suspension is inherited unchanged (never used here).
    """

    def __init__(self, params: TrustParams, decrement: float, reset_after_s: float) -> None:
        super().__init__(params)
        self.decrement = decrement
        self.reset_after_s = reset_after_s
        self._paper: dict[str, _PaperAccount] = {}

    def trust(self, user: str, now: float) -> float:
        return self._settle_paper(user, now).trust

    def check(self, user: str, cost: float, now: float) -> float:
        if user.startswith("peer:"):
            return 0.0
        if self.is_suspended(user):
            super().check(user, cost, now)  # raises UserSuspended
        account = self._settle_paper(user, now)
        if account.trust <= 0.0:
            retry_at = account.reset_at + self.reset_after_s
            raise TrustExhausted(user, self.decrement, account.trust, retry_at, now)
        return self.decrement

    def charge(self, user: str, cost: float, now: float) -> float:
        price = self.check(user, cost, now)
        if price:
            account = self._settle_paper(user, now)
            account.trust = max(0.0, account.trust - price)
        return price

    def refund(self, user: str, amount: float, now: float) -> float:
        # The scheduler refunds its own price; here a request's price is the decrement.
        account = self._settle_paper(user, now)
        if not user.startswith("peer:"):
            account.trust = min(self.params.max_trust, account.trust + self.decrement)
        return account.trust

    def set_trust(self, user: str, value: float, now: float) -> None:
        self._paper[user] = _PaperAccount(float(value), now)

    def _settle_paper(self, user: str, now: float) -> _PaperAccount:
        account = self._paper.get(user)
        if account is None:
            account = self._paper[user] = _PaperAccount(self.params.start_trust, now)
        elif now - account.reset_at >= self.reset_after_s:
            # Advance the reset time (the paper's code never did, so it never reset).
            account.trust = self.params.max_trust
            account.reset_at = now
        return account


@dataclass(frozen=True, slots=True)
class Policy:
    """How one policy builds a queue server's scheduler and reads a user's trust."""

    name: str
    config: SimConfig

    @property
    def job_cost(self) -> float:
        """The cost (pixel-steps) of one simulated request."""
        return self.config.job_cost * STANDARD_IMAGE_COST

    @property
    def peer_score_aware(self) -> bool:
        """Whether a forwarding server's peer score lowers its jobs' priority."""
        return self.name == "lightbox"

    def new_scheduler(self) -> Scheduler:
        c = self.config
        if self.name == "fifo":
            trust = TrustParams(federated_priority=MAX_TRUST)
            return Scheduler(SchedulerParams(trust=trust, aging_per_s=0.0), FlatLedger(trust))
        if self.name == "paper":
            trust = TrustParams(federated_priority=c.federated_priority)
            ledger = PaperTrustLedger(trust, c.paper_decrement, c.paper_reset_s)
            return Scheduler(SchedulerParams(trust=trust, aging_per_s=0.0), ledger)
        if self.name == "lightbox":
            trust = TrustParams(
                federated_priority=c.federated_priority, recovery_per_hour=c.recovery_per_hour
            )
            ledger = TrustLedger(trust) if c.charge_peers else _PeerExemptLedger(trust)
            return Scheduler(SchedulerParams(trust=trust, aging_per_s=c.aging_per_s), ledger)
        raise ValueError(f"unknown policy {self.name!r}")

    def trust_at_submit(self, scheduler: Scheduler, user: str, now: float) -> float:
        """The trust a request is bucketed by: the user's trust just before submitting."""
        ledger = scheduler.ledger
        if isinstance(ledger, FlatLedger):
            return ledger.nominal(user)
        return ledger.trust(user, now)


class _PeerExemptLedger(TrustLedger):
    """The real ledger, except that forwarding servers' accounts are never charged.

    Only with `charge_peers = false`, an experiment outside the real rules: it shows what
    federation looks like when a forwarding server's budget does not limit it.
    """

    def check(self, user: str, cost: float, now: float) -> float:
        return 0.0 if user.startswith("peer:") else super().check(user, cost, now)

    def charge(self, user: str, cost: float, now: float) -> float:
        return 0.0 if user.startswith("peer:") else super().charge(user, cost, now)

    def refund(self, user: str, amount: float, now: float) -> float:
        if user.startswith("peer:"):
            return self.params.max_trust
        return super().refund(user, amount, now)


__all__ = ["FlatLedger", "PaperTrustLedger", "Policy"]
