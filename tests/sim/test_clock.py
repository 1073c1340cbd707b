"""The simulation's virtual clock: steps in time order, and trio MockClock's timestamps."""

from __future__ import annotations

import random

import trio
import trio.testing

from lightbox_node.sim.clock import VirtualClock


def test_steps_run_in_time_order_and_timers_due_together_in_the_order_set() -> None:
    clock, seen = VirtualClock(), []
    for when, name in ((3.0, "c"), (1.0, "a"), (2.0, "b1"), (2.0, "b2")):
        clock.at(when, lambda name=name: seen.append((name, clock.now)))
    clock.run_until(10.0)
    assert seen == [("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("c", 3.0)]
    assert clock.now == 10.0


def test_soon_runs_later_in_the_same_instant_after_what_is_already_due() -> None:
    clock, seen = VirtualClock(), []

    def first() -> None:
        seen.append("first")
        clock.soon(lambda: seen.append(("soon", clock.now)))
        clock.at(clock.now, lambda: seen.append(("now", clock.now)))

    clock.at(1.0, first)
    clock.at(1.0, lambda: seen.append("second"))
    clock.at(2.0, lambda: seen.append("later"))
    clock.run_until(5.0)
    assert seen == ["first", "second", ("soon", 1.0), ("now", 1.0), "later"]


def test_a_cancelled_timer_never_runs_and_moves_no_time() -> None:
    clock, seen = VirtualClock(), []
    timer = clock.at(1.0, lambda: seen.append("cancelled"))
    clock.at(2.0, lambda: seen.append(clock.now))
    timer.cancel()
    clock.run_until(1.5)
    assert seen == [] and clock.now == 1.5 and timer.cancelled
    clock.run_until(3.0)
    assert seen == [2.0]


def test_run_until_leaves_what_is_due_at_or_after_the_end_for_later() -> None:
    clock, seen = VirtualClock(), []
    clock.at(4.0, lambda: seen.append(clock.now))
    clock.run_until(4.0)
    assert seen == [] and clock.now == 4.0
    clock.run_until(5.0)
    assert seen == [4.0]


def test_the_timestamps_are_those_of_trio_mock_clock_to_the_bit() -> None:
    """Relative sleeps from awkward times: trio's autojump rounds `now + (d - now)`, and a
    chain of sleeps must land on exactly the same floats here."""
    rng = random.Random(7)
    # Short and long sleeps mixed: a jump far beyond the time it starts from is where
    # `now + (deadline - now)` need not come out as `deadline`.
    chains = [[rng.choice((1e-3, 1.0, 700.0)) * rng.random() for _ in range(300)] for _ in range(5)]
    marks = [rng.uniform(0.0, 90_000.0) / 3 for _ in range(20)]

    async def in_trio() -> list[list[float]]:
        seen: list[list[float]] = [[] for _ in chains]

        async def chain(i: int) -> None:
            for seconds in chains[i]:
                await trio.sleep(seconds)
                seen[i].append(trio.current_time())

        async with trio.open_nursery() as nursery:
            for i in range(len(chains)):
                nursery.start_soon(chain, i)
            for mark in sorted(marks):  # other deadlines split the jumps
                await trio.sleep_until(mark)
        return seen

    expected = trio.run(in_trio, clock=trio.testing.MockClock(autojump_threshold=0))

    clock = VirtualClock()
    seen: list[list[float]] = [[] for _ in chains]

    def step(i: int, k: int) -> None:
        if k > 0:
            seen[i].append(clock.now)
        if k < len(chains[i]):
            clock.at(clock.now + chains[i][k], step, i, k + 1)

    for i in range(len(chains)):
        step(i, 0)
    for mark in sorted(marks):
        clock.run_until(mark)
    clock.run_until(1e9)
    assert seen == expected


def test_a_jump_far_beyond_now_lands_where_trio_mock_clock_lands() -> None:
    """`now + (deadline - now)` is not always `deadline` when the deadline is far beyond
    now; trio then jumps again, and the simulation's times depend on where it lands."""
    rng = random.Random(1)
    pairs: list[tuple[float, float]] = []
    while len(pairs) < 20:
        now, deadline = rng.uniform(0.0, 1.0), rng.uniform(1.0, 3600.0)
        if now + (deadline - now) != deadline:
            pairs.append((now, deadline))

    for now, deadline in pairs:

        async def in_trio(now: float = now, deadline: float = deadline) -> float:
            await trio.sleep_until(now)
            await trio.sleep_until(deadline)
            return trio.current_time()

        expected = trio.run(in_trio, clock=trio.testing.MockClock(autojump_threshold=0))
        assert virtual_time_after(now, deadline) == expected


def virtual_time_after(now: float, deadline: float) -> float:
    """The clock's time at a timer due at `deadline`, set at time `now`."""
    clock, seen = VirtualClock(), []
    clock.at(now, lambda: clock.at(deadline, lambda: seen.append(clock.now)))
    clock.run_until(deadline + 1.0)
    (when,) = seen
    return when
