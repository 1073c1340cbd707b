"""Gossip convergence: rounds until 50 / 99 / 99.9 % of nodes hold a new record, vs the model.

Runs the pure simulation of the test suite (`tests/gossip/simnet.py`: real routers, real
signed records, bodies packed with the strict wire codec) on a random graph of about 8
links per node, with a fixed 100 ms per hop so that one round is one hop of forwarding.
Heartbeats stay at 1 s (10 rounds), so what spreads a record here is the eager push over
the mesh; IHAVE/IWANT and anti-entropy only mop up.

The model is the mean-field push epidemic with fanout f: each round every informed node
sends to f random nodes, so an uninformed node stays uninformed with probability e^(-f·i):

    i_(r+1) = 1 - (1 - i_r) · e^(-f · i_r),     i_0 = 1 / N

Rounds to a fraction are interpolated linearly between rounds, for model and measurement
alike. For context the closed-form estimates of the rounds to reach (nearly) everyone are
printed too: log_(f+1)(N) + ln(N)/f (Pittel / Karp et al.), and ln(N) + ln(N)/f, the
variant with a natural log in the first term (9.2 rounds at N = 1000, f = 3).

Bytes are everything the routers send (GRAFT/PRUNE, IHAVE/IWANT, SYNC/DIGEST and record
frames), per node per heartbeat round (1 s): idle, and while one new record is published
every second. Both should stay flat as N grows. "frames/node/rec" is the extra traffic per
node per record in units of the record's frame size: about the mesh degree minus one.

Run: .venv/bin/python bench/gossip.py   (about a minute; `--quick` for N = 100 only)
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "gossip"))

from simnet import SimNet

HOP_S = 0.1
FANOUT = 3
THRESHOLDS = (0.5, 0.99, 0.999)
TRIALS = 5
WARM_UP_S = 6.0


def model_curve(n: int, fanout: float, rounds: int = 60) -> list[float]:
    informed = [1.0 / n]
    for _ in range(rounds):
        i = informed[-1]
        informed.append(1.0 - (1.0 - i) * math.exp(-fanout * i))
    return informed


def rounds_to(curve: list[float], fraction: float) -> float:
    """Rounds (interpolated) until `curve` (fraction informed after each round) reaches it."""
    for r in range(1, len(curve)):
        if curve[r] >= fraction:
            before = curve[r - 1]
            return r - 1 + (fraction - before) / (curve[r] - before)
    return math.inf


def measured_curve(sim: SimNet, publisher: int, rounds: int = 40) -> list[float]:
    author, seq = sim.publish(publisher)
    start = sim.now
    sim.run_for(rounds * HOP_S + HOP_S / 2)
    arrivals = sim.arrivals[(author, seq)]
    n = len(sim.nodes)
    hops = [round((t - start) / HOP_S) for t in arrivals.values()]
    return [sum(1 for h in hops if h <= r) / n for r in range(rounds + 1)]


def bytes_per_node_round(sim: SimNet, seconds: int, publish_each_second: bool) -> float:
    rng = random.Random(99)
    before = sum(sim.bytes_sent)
    for _ in range(seconds):
        if publish_each_second:
            sim.publish(rng.randrange(len(sim.nodes)))
        sim.run_for(1.0)
    return (sum(sim.bytes_sent) - before) / len(sim.nodes) / seconds


def run(n: int, seed: int) -> dict:
    started = time.perf_counter()
    sim = SimNet(n, seed=seed, degree=8, latency_s=HOP_S, jitter_s=0.0)
    sim.run_until(WARM_UP_S)
    mesh = statistics.mean(len(node.router.mesh) for node in sim.nodes)
    rng = random.Random(seed)
    curves = []
    for _ in range(TRIALS):
        curves.append(measured_curve(sim, rng.randrange(n)))
        sim.run_for(2.0)
    sim.run_for(12.0)  # let the IHAVE window and anti-entropy settle before measuring bytes
    idle = bytes_per_node_round(sim, 20, publish_each_second=False)
    busy = bytes_per_node_round(sim, 20, publish_each_second=True)
    store = sim.nodes[0].store
    frame_bytes = statistics.mean(len(store.frame_of(record.author) or b"") for record in store)
    return {
        "n": n,
        "mesh": mesh,
        "rounds": {q: statistics.mean(rounds_to(c, q) for c in curves) for q in THRESHOLDS},
        "worst": {q: max(rounds_to(c, q) for c in curves) for q in THRESHOLDS},
        "idle": idle,
        "busy": busy,
        "frame": frame_bytes,
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    sizes = (100,) if "--quick" in sys.argv else (100, 1000)
    results = [run(n, seed=2024) for n in sizes]

    print(f"Gossip spread: {TRIALS} records per size, {HOP_S * 1000:.0f} ms per hop (1 round)")
    print(f"model: push epidemic i' = 1-(1-i)e^(-f i), f = {FANOUT}")
    print()
    header = (
        f"{'N':>6} {'reach':>6} {'measured':>9} {'worst':>6} {'model f=3':>10} "
        f"{'measured/model':>15}"
    )
    print(header)
    print("-" * len(header))
    for res in results:
        curve = model_curve(res["n"], FANOUT)
        for q in THRESHOLDS:
            model = rounds_to(curve, q)
            measured = res["rounds"][q]
            print(
                f"{res['n']:>6} {q * 100:>5.1f}% {measured:>9.2f} {res['worst'][q]:>6.2f} "
                f"{model:>10.2f} {measured / model:>15.2f}"
            )
    print()
    print("closed-form rounds to reach everyone, f = 3:")
    for res in results:
        n = res["n"]
        pittel = math.log(n, FANOUT + 1) + math.log(n) / FANOUT
        natural = math.log(n) + math.log(n) / FANOUT
        print(
            f"  N = {n:>5}: log_(f+1)N + lnN/f = {pittel:5.2f}    lnN + lnN/f = {natural:5.2f}"
            f"    measured 99.9% = {res['rounds'][0.999]:5.2f}"
        )
    print()
    header = (
        f"{'N':>6} {'mean mesh':>10} {'frame B':>8} {'idle B/node/round':>18} "
        f"{'1 rec/s B/node/round':>21} {'vs smallest N':>14} {'frames/node/rec':>16} "
        f"{'wall s':>7}"
    )
    print(header)
    print("-" * len(header))
    for res in results:
        print(
            f"{res['n']:>6} {res['mesh']:>10.2f} {res['frame']:>8.0f} {res['idle']:>18.1f} "
            f"{res['busy']:>21.1f} {res['busy'] / results[0]['busy']:>14.2f} "
            f"{(res['busy'] - res['idle']) / res['frame']:>16.2f} {res['seconds']:>7.1f}"
        )
    target = results[-1]["rounds"][0.999]
    verdict = "meets" if target <= 9 else "MISSES"
    print()
    print(f"N = {results[-1]['n']}: {target:.2f} rounds to 99.9% — {verdict} the target of <= 9")


if __name__ == "__main__":
    main()
