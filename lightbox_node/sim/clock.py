"""Virtual time for the simulation: callbacks at given times, and steps later in the instant.

`VirtualClock.at(when, fn, *args)` runs `fn(*args)` once virtual time reaches `when`;
`soon(fn, *args)` runs it later in the current instant, after what is already due. Time
moves on only when nothing is left to run at the current instant, to the earliest timer,
as trio's `MockClock(autojump_threshold=0)` jumps when every task waits — with the same
arithmetic (``now += deadline - now`` until the deadline is reached), so a run keeps the
timestamps it had when the simulation ran as trio tasks. A step costs a heap operation and
a call, where a trio task paid a task switch and a cancel scope per sleep.

Within one instant, steps run first come, first served. Trio ran them in an arbitrary
order; the simulation's events fall on distinct instants (continuous random times), so its
results never depended on that order. Pure: no trio, no I/O, no clock of the machine.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from typing import Any

Step = Callable[..., object]


class Timer:
    """A step due at a time; `cancel` it before then and it never runs."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Step | None, args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args

    def cancel(self) -> None:
        self.fn = None

    @property
    def cancelled(self) -> bool:
        return self.fn is None


class VirtualClock:
    """Runs steps in virtual-time order; `now` is the current virtual time (from 0.0)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, Timer]] = []
        self._ready: deque[tuple[Step, tuple[Any, ...]]] = deque()
        self._seq = 0

    def at(self, when: float, fn: Step, *args: Any) -> Timer:
        """Run `fn(*args)` once the time is `when` (at once, in this instant, if it is past)."""
        timer = Timer(fn, args)
        self._seq += 1
        heapq.heappush(self._timers, (when, self._seq, timer))
        return timer

    def soon(self, fn: Step, *args: Any) -> None:
        """Run `fn(*args)` in the current instant, after the steps already due."""
        self._ready.append((fn, args))

    def run_until(self, end: float) -> None:
        """Run every step due before `end`, then move the time to `end`."""
        ready, timers = self._ready, self._timers
        pop = heapq.heappop
        while True:
            while ready:
                fn, args = ready.popleft()
                fn(*args)
            while timers and timers[0][2].fn is None:
                pop(timers)
            if not timers or timers[0][0] >= end:
                break
            self.now = _jump(self.now, timers[0][0])
            now = self.now
            while timers and timers[0][0] <= now:
                timer = pop(timers)[2]
                if timer.fn is not None:
                    ready.append((timer.fn, timer.args))
        self.now = _jump(self.now, end)


def _jump(now: float, deadline: float) -> float:
    """The time after jumping to `deadline`, rounded exactly as MockClock's autojump rounds."""
    while now < deadline:
        now += deadline - now
    return now


__all__ = ["Timer", "VirtualClock"]
