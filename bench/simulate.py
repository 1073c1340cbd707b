"""Simulation speed: one virtual hour of the paper's largest setup, beside the paper's 7 min.

The paper stood for an hour of use with 7 minutes of wall time (hundreds of threads, time
scaled by 10). This runs the same hour of 4 queue servers × 200 users × 20 GPU hosts each in
virtual time (the simulation's virtual clock, the real scheduler core) once per policy, and
prints the wall and CPU time, the virtual/wall ratio beside the paper's, and the work done.
Target: ≤ 30 s wall on a 2-core machine. With --profile it runs cProfile over one policy and
prints where the time goes, grouped (scheduler core, the simulation shell, ...) and by
function.

    python bench/simulate.py [--policies fifo,paper,lightbox] [--profile POLICY]
                             [--servers 4] [--users 200] [--duration-s 3600]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pstats
import time
from collections import defaultdict

from lightbox_node.sim.config import SimConfig, build_config
from lightbox_node.sim.network import OUTCOMES, run_setup

PAPER_WALL_S = 7 * 60.0
"""The paper's wall time for one scaled hour."""
TARGET_S = 30.0


def measure(config: SimConfig, policy: str, servers: int, users: int, label: str = "") -> None:
    cpu = time.process_time()
    result = run_setup(config, policy, servers, users)
    cpu = time.process_time() - cpu
    outcomes = dict.fromkeys(OUTCOMES, 0)
    for request in result.requests:
        outcomes[request.outcome] += 1
    events = sum(c["submitted"] + c["refused"] + c["done"] + c["faults"] for c in result.counters)
    ratio = result.virtual_s / result.wall_s
    verdict = "ok" if result.wall_s <= TARGET_S else "over target"
    print(
        f"{label or policy:9s} {result.wall_s:7.1f} {cpu:7.1f} {ratio:9.0f}x "
        f"{PAPER_WALL_S / result.wall_s:8.1f}x {len(result.requests):9d} "
        f"{outcomes['served']:8d} {outcomes['refused']:8d} {outcomes['failed']:7d} "
        f"{events:9d}  {verdict}"
    )


def profile(config: SimConfig, policy: str, servers: int, users: int) -> None:
    profiler = cProfile.Profile()
    profiler.runcall(run_setup, config, policy, servers, users)
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = defaultdict(float)
    total = 0.0
    for (path, _, name), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "lightbox_node/sched" in path:
            group = "scheduler core (lightbox_node.sched)"
        elif "lightbox_node/sim" in path:
            group = "simulation shell (lightbox_node.sim)"
        elif "/trio/" in path:
            group = "trio (run loop, MockClock, channels)"
        elif path == "~" and name.startswith("<built-in"):
            group = "builtins (mostly called by the above)"
        else:
            group = "other"
        groups[group] += own
        total += own
    print(f"\nprofile of {policy} ({total:.1f} s under cProfile, own time by group):")
    for group, own in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"  {own:7.2f} s  {100 * own / total:5.1f} %  {group}")
    print("\ntop functions by own time:")
    stats.sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", default="fifo,paper,lightbox")
    parser.add_argument("--servers", type=int, default=4)
    parser.add_argument("--users", type=int, default=200, help="users per server")
    parser.add_argument("--duration-s", type=float, default=3600.0)
    parser.add_argument("--profile", metavar="POLICY", help="also profile this policy")
    args = parser.parse_args()
    config = build_config(
        "paper", overrides={"duration_s": args.duration_s, "users": (args.users,)}
    )
    hosts = config.hosts_for(args.users)
    print(
        f"{args.servers} servers x {args.users} users x {hosts} GPU hosts each, "
        f"{args.duration_s:.0f} virtual seconds per run; the paper: {PAPER_WALL_S:.0f} s wall "
        f"per scaled hour ({3600 / PAPER_WALL_S:.1f}x); target <= {TARGET_S:.0f} s wall\n"
    )
    print(
        f"{'policy':9s} {'wall s':>7s} {'cpu s':>7s} {'virt/wall':>10s} {'vs paper':>9s} "
        f"{'requests':>9s} {'served':>8s} {'refused':>8s} {'failed':>7s} {'sched ev':>9s}"
    )
    for policy in args.policies.split(","):
        measure(config, policy, args.servers, args.users)
    if "lightbox" in args.policies.split(","):
        # The real rule charges federated jobs to the forwarding server's account, which runs
        # dry at this load and makes users retry (far more events); this row shows the same
        # policy with that budget lifted, for the cost of the simulation itself.
        unlimited = dataclasses.replace(config, charge_peers=False)
        measure(unlimited, "lightbox", args.servers, args.users, label="lightbox*")
        print("lightbox*: charge_peers = false (federated jobs not charged to the forwarder)")
    if args.profile:
        profile(config, args.profile, args.servers, args.users)


if __name__ == "__main__":
    main()
