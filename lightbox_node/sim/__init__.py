"""The virtual-time simulation of trust scheduling: whole networks of queue servers, GPU hosts
and users in one process, reproducing and extending the paper's Figure 15.

The queue servers run the real scheduler core (`lightbox_node.sched`) on a virtual clock
(`lightbox_node.sim.clock`, which keeps trio `MockClock`'s timestamps); policies (`fifo`,
`paper`, `lightbox`) only swap the trust ledger and a few scheduler settings. `run_setup`
simulates one network under one policy; `run_simulation` runs every setup of a `SimConfig`
and writes the CSV, the summary and the plots; `lightbox-node simulate` is the command (see
docs/simulation.md).
"""

from lightbox_node.sim.config import POLICY_NAMES, PRESETS, SimConfig, build_config
from lightbox_node.sim.network import OUTCOMES, Request, SetupResult, run_setup
from lightbox_node.sim.policies import FlatLedger, PaperTrustLedger, Policy
from lightbox_node.sim.report import BUCKET_LABELS, SummaryRow, bucket_of, summarize
from lightbox_node.sim.runner import SimulationOutput, run_simulation

__all__ = [
    "BUCKET_LABELS",
    "OUTCOMES",
    "POLICY_NAMES",
    "PRESETS",
    "FlatLedger",
    "PaperTrustLedger",
    "Policy",
    "Request",
    "SetupResult",
    "SimConfig",
    "SimulationOutput",
    "SummaryRow",
    "bucket_of",
    "build_config",
    "run_setup",
    "run_simulation",
    "summarize",
]
