"""Real processes with no bootstrap entries find each other by mDNS, inside a private network.

mDNS multicast must never reach the machine's real network, so the whole scenario (nodes, HTTP
polling) runs in tests/mdns_scenario.py inside fresh network and PID namespaces made by
`unshare`: the only interface there is a private loopback, and when the scenario ends or is
killed, the kernel kills every process left in it and the namespace disappears. Where no
namespace can be made (an unprivileged CI runner, say), the test is skipped and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SCENARIO_TIMEOUT_S = 60

# Without user namespaces first (we may be root); then as root of a new user namespace, which
# unprivileged users may create where the kernel allows it. `--pid --fork --kill-child`: the
# scenario is PID 1 there, so nothing in the namespace outlives it or a killed `unshare`.
_UNSHARE_VARIANTS = (
    ["--net", "--pid", "--fork", "--kill-child"],
    ["--user", "--map-root-user", "--net", "--pid", "--fork", "--kill-child"],
)

# Can the namespace bring up its loopback, and run this Python?
_PROBE = 'ip link set lo up && "$0" -c pass'


def _namespace_prefix() -> list[str]:
    """A command prefix that runs its command in a fresh network namespace, or skips the test."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("mDNS test needs a private network namespace, but `unshare` is not installed")
    if shutil.which("ip") is None:
        pytest.skip("mDNS test needs `ip` (iproute2) to bring up loopback in its namespace")
    failures = []
    for flags in _UNSHARE_VARIANTS:
        prefix = [unshare, *flags]
        try:
            probe = subprocess.run(
                [*prefix, "sh", "-c", _PROBE, sys.executable],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            failures.append(f"`{' '.join(prefix)}`: {exc}")
            continue
        if probe.returncode == 0:
            return prefix
        failures.append(f"`{' '.join(prefix)} sh -c '{_PROBE}'`: {probe.stderr.strip()}")
    pytest.skip(
        "mDNS test runs only inside a private network namespace, and none could be made: "
        + "; ".join(failures)
    )


def _run_scenario(tmp_path: Path) -> dict[str, Any]:
    prefix = _namespace_prefix()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
    try:
        # On timeout `unshare` is killed; --kill-child then kills the namespace's PID 1, and
        # with it every node.
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "tests.mdns_scenario", str(tmp_path)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"mDNS scenario ran past {SCENARIO_TIMEOUT_S} s; stderr:\n{exc.stderr}"
        ) from None
    lines = done.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(
            f"mDNS scenario printed no result (exit={done.returncode});\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        ) from None


@pytest.mark.slow
def test_nodes_without_bootstrap_find_each_other_by_mdns(tmp_path: Path) -> None:
    result = _run_scenario(tmp_path)
    if "skip" in result:
        pytest.skip(result["skip"])
    if "error" in result:
        logs = "\n".join(f"--- {name}\n{tail}" for name, tail in result.get("logs", {}).items())
        raise AssertionError(f"mDNS scenario failed: {result['error']}\n{logs}")

    mdns_nodes = result["mdns"]
    quiet = result["quiet"]
    everyone = {node["peer_id"] for node in mdns_nodes}
    assert len(everyone) == len(mdns_nodes) >= 2
    for node in mdns_nodes:
        with_record = {peer for peer, has_record in node["peers"].items() if has_record}
        assert with_record >= everyone - {node["peer_id"]}, node
        # The --no-mdns node neither announces nor browses: nobody may know it at all.
        assert quiet["peer_id"] not in node["peers"], node
    assert quiet["peers"] == {}, quiet
    print(f"mDNS scenario timings: {result['timings']}")
