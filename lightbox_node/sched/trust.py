"""The trust ledger: each user's trust score, spent by the compute they use, recovering over time.

A user's trust starts at `start_trust`, falls by the price of every job they submit and
recovers linearly (`recovery_per_hour`) up to `max_trust`. The ledger stores, per user, the
trust at the last update and the time of that update, and recomputes on every read. The
update time is advanced on *every* read and write (the paper's reference implementation
never advanced it, so its trust reset never happened).

The refusal rule: a job is accepted when the user's current trust covers its price,
``trust >= price``; the price is ``clamp(cost * trust_per_cost, minimum_charge, max_trust)``,
so it is never below `minimum_charge` (> 0) and a user at zero is always refused (the paper's
rule), trust never goes negative, and a job dearer than a full bucket is still possible from
full trust. A refusal says when trust will cover the price again (`TrustExhausted.retry_at`).

`charge` checks and deducts in one call, so two requests can never both spend the same
points (the paper read a stale score and lost decrements); the shell serialises calls.
Pure: no trio, no I/O, time is passed in as float seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from lightbox_node.sched.jobs import JobError

STANDARD_IMAGE_COST = 512 * 512 * 25
"""Pixel-steps of one 512×512, 25-step, batch-1 image: the yardstick for prices and deadlines."""

_SECONDS_PER_HOUR = 3600.0
_TOLERANCE = 1e-6
"""Slack (relative to the price, at least in points) when comparing trust with a price, so that
`retry_at` is never early by a rounding error, even with epoch timestamps."""


class TrustExhausted(JobError):
    """The user's trust does not cover the job's price now; `retry_at` says when it will."""

    def __init__(self, user: str, price: float, available: float, retry_at: float, now: float):
        self.user = user
        self.price = price
        self.available = available
        self.retry_at = retry_at
        super().__init__(
            f"{user} has {available:.1f} trust points and this job costs {price:.1f}; trust "
            f"recovers over time, so submit it again in {_duration(retry_at - now)} "
            f"(at t={retry_at:.0f}), or ask for a smaller job"
        )


class UserSuspended(JobError):
    """An administrator suspended this user; nothing is accepted until they are restored."""

    def __init__(self, user: str, reason: str):
        self.user = user
        self.reason = reason
        super().__init__(
            f"{user} is suspended ({reason}); no jobs are accepted until an administrator "
            "restores the account"
        )


def _duration(seconds: float) -> str:
    seconds = max(0, math.ceil(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


@dataclass(frozen=True, slots=True)
class TrustParams:
    """How trust is spent and recovered; one object, validated on construction."""

    max_trust: float = 1000.0
    start_trust: float = 1000.0
    """Trust of a user never seen before."""
    recovery_per_hour: float = 1000.0
    """Points regained per hour: the default refills an empty account in one hour."""
    trust_per_cost: float = 50.0 / STANDARD_IMAGE_COST
    """Points per unit of job cost: a 512×512, 25-step image costs 50 points (2**-17 each)."""
    minimum_charge: float = 1.0
    """The least any job costs, so that even tiny jobs are refused at zero trust."""
    federated_priority: float = 400.0
    """Queue priority of a job forwarded by a well-behaved queue node (the paper's 400/1000)."""

    def __post_init__(self) -> None:
        for name in (
            "max_trust",
            "start_trust",
            "recovery_per_hour",
            "trust_per_cost",
            "minimum_charge",
            "federated_priority",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"trust setting {name} must be a finite number, not {value!r}")
        if self.max_trust <= 0:
            raise ValueError("max_trust must be > 0")
        if not 0 <= self.start_trust <= self.max_trust:
            raise ValueError(f"start_trust must be between 0 and max_trust ({self.max_trust})")
        if self.recovery_per_hour <= 0:
            raise ValueError("recovery_per_hour must be > 0, or a refused user could never return")
        if self.trust_per_cost < 0:
            raise ValueError("trust_per_cost must be >= 0")
        if not 0 < self.minimum_charge <= self.max_trust:
            raise ValueError("minimum_charge must be > 0 and at most max_trust")
        if not 0 <= self.federated_priority <= self.max_trust:
            raise ValueError("federated_priority must be between 0 and max_trust")

    @property
    def recovery_per_s(self) -> float:
        return self.recovery_per_hour / _SECONDS_PER_HOUR

    def price(self, cost: float) -> float:
        """Trust points a job of this cost takes."""
        if not math.isfinite(cost) or cost < 0:
            raise ValueError(f"a job cost must be a finite number >= 0, not {cost!r}")
        return min(self.max_trust, max(self.minimum_charge, cost * self.trust_per_cost))


@dataclass(frozen=True, slots=True)
class TrustRow:
    """One user's account as persisted: trust as of `updated_at`, and any suspension."""

    user: str
    trust: float
    updated_at: float
    suspended: bool = False
    reason: str = ""


@dataclass(slots=True)
class _Account:
    trust: float
    updated_at: float
    suspended: bool = False
    reason: str = ""


class TrustLedger:
    """Every user's trust; users not seen yet have `start_trust` and no account."""

    def __init__(self, params: TrustParams | None = None) -> None:
        self.params = params or TrustParams()
        self._accounts: dict[str, _Account] = {}

    # -- reading ------------------------------------------------------------------------

    def trust(self, user: str, now: float) -> float:
        """The user's trust at `now`, after recovery since the last update."""
        account = self._accounts.get(user)
        if account is None:
            return self.params.start_trust
        return self._settle(account, now)

    def recovery_eta(self, user: str, now: float) -> float:
        """Seconds until the user's trust is back at `max_trust` (0 when already full)."""
        missing = self.params.max_trust - self.trust(user, now)
        return max(0.0, missing / self.params.recovery_per_s)

    def is_suspended(self, user: str) -> bool:
        account = self._accounts.get(user)
        return account is not None and account.suspended

    def users(self) -> list[str]:
        """Users with an account (charged, refunded, set or suspended at least once)."""
        return sorted(self._accounts)

    def __contains__(self, user: object) -> bool:
        return user in self._accounts

    # -- spending -----------------------------------------------------------------------

    def check(self, user: str, cost: float, now: float) -> float:
        """The price of a job of `cost` for `user`; raise as `charge` would, deduct nothing."""
        price = self.params.price(cost)
        account = self._accounts.get(user)
        if account is not None and account.suspended:
            raise UserSuspended(user, account.reason)
        available = self.trust(user, now)
        if price - available > _TOLERANCE * max(1.0, price):
            # Recovery is linear, so trust covers the price after exactly this long.
            retry_at = max(now, now + (price - available) / self.params.recovery_per_s)
            raise TrustExhausted(user, price, available, retry_at, now)
        return price

    def charge(self, user: str, cost: float, now: float) -> float:
        """Check and deduct the price of a job of `cost` in one step; returns the price.

        Raises UserSuspended or TrustExhausted (with `retry_at`) and changes nothing then.
        """
        price = self.check(user, cost, now)
        account = self._account(user, now)
        account.trust = max(0.0, account.trust - price)
        return price

    def refund(self, user: str, amount: float, now: float) -> float:
        """Give back `amount` points (a job that never ran or failed); returns the new trust."""
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"a refund must be a finite number >= 0, not {amount!r}")
        account = self._account(user, now)
        account.trust = min(self.params.max_trust, account.trust + amount)
        return account.trust

    # -- administration -----------------------------------------------------------------

    def suspend(self, user: str, reason: str, now: float) -> None:
        """Refuse every job of `user` (with `reason` in the message) until `restore`."""
        account = self._account(user, now)
        account.suspended = True
        account.reason = reason or "no reason given"

    def restore(self, user: str, now: float) -> None:
        """Lift a suspension; trust kept recovering meanwhile."""
        account = self._account(user, now)
        account.suspended = False
        account.reason = ""

    def set_trust(self, user: str, value: float, now: float) -> None:
        """Set the user's trust outright (an administrator's correction)."""
        if not isinstance(value, int | float) or not 0 <= value <= self.params.max_trust:
            raise ValueError(f"trust must be between 0 and {self.params.max_trust}, not {value!r}")
        account = self._account(user, now)
        account.trust = float(value)

    # -- persistence --------------------------------------------------------------------

    def snapshot(self) -> list[TrustRow]:
        """Every account as a row, sorted by user; `load` restores exactly this state."""
        return [
            TrustRow(user, a.trust, a.updated_at, a.suspended, a.reason)
            for user, a in sorted(self._accounts.items())
        ]

    def rows(self, users: Iterable[str]) -> list[TrustRow]:
        """`snapshot` rows of just these users (those with an account), sorted by user: what
        a shell saves after changing a few accounts, without walking every account."""
        accounts = self._accounts
        return [
            TrustRow(user, a.trust, a.updated_at, a.suspended, a.reason)
            for user in sorted(set(users))
            if (a := accounts.get(user)) is not None
        ]

    def load(self, rows: Iterable[TrustRow | tuple]) -> None:
        """Restore accounts from `snapshot` rows (or equal tuples), replacing those users'.

        Recovery continues from each row's `updated_at`, so a restart resets nobody.
        """
        for row in rows:
            if not isinstance(row, TrustRow):
                row = TrustRow(*row)
            trust = min(self.params.max_trust, max(0.0, float(row.trust)))
            self._accounts[row.user] = _Account(
                trust, float(row.updated_at), bool(row.suspended), row.reason
            )

    # -- internals ----------------------------------------------------------------------

    def _account(self, user: str, now: float) -> _Account:
        account = self._accounts.get(user)
        if account is None:
            account = self._accounts[user] = _Account(self.params.start_trust, now)
        else:
            self._settle(account, now)
        return account

    def _settle(self, account: _Account, now: float) -> float:
        """Apply recovery up to `now` and advance the update time (never backwards)."""
        if now > account.updated_at:
            recovered = account.trust + (now - account.updated_at) * self.params.recovery_per_s
            account.trust = min(self.params.max_trust, recovered)
            account.updated_at = now
        return account.trust


__all__ = [
    "STANDARD_IMAGE_COST",
    "TrustExhausted",
    "TrustLedger",
    "TrustParams",
    "TrustRow",
    "UserSuspended",
]
