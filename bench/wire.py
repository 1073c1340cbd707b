"""Envelope throughput: `wire.seal` / `wire.open_envelope` against raw PyNaCl on the same bytes.

For a capability-record-sized body and a small body, measures in one run:

* seal: envelopes sealed per second (canonical pack + sign + frame) vs
  `nacl.signing.SigningKey.sign` of the very bytes `seal` signs;
* open: envelopes opened per second (strict decode + checks + verify) vs
  `nacl.signing.VerifyKey.verify` of the same signed bytes and signature.

Each pair is measured in short alternating slices (the order flips every round) so machine
noise hits both sides alike; the table shows medians over rounds, and the ratio is the median
of the per-round ratios lightbox/raw (target: >= 0.8).

    .venv/bin/python bench/wire.py [--seconds N] [--rounds N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import nacl
import nacl.signing

from lightbox_node import wire
from lightbox_node.identity import Identity

SEED = b"bench-wire-seed".ljust(32, b".")
NOW_MS = 1_700_000_000_000
TARGET_RATIO = 0.8


def capability_record() -> dict[str, Any]:
    """A realistic registry record: a GPU node advertising three tasks with parameter schemas."""

    def number(minimum: float, maximum: float, default: float) -> dict[str, Any]:
        return {"type": "number", "min": minimum, "max": maximum, "default": default}

    return {
        "node": {
            "name": "studio-3090",
            "version": "0.1.0",
            "gpu": {"name": "NVIDIA GeForce RTX 3090", "vram_mb": 24_576, "cuda": "12.4"},
            "queue": {"depth": 3, "max_depth": 32, "eta_s": 41.5},
        },
        "tasks": [
            {
                "task": "upscale",
                "model": "realesrgan-x4plus",
                "input": {"type": "image", "formats": ["png", "jpeg", "webp"], "max_mp": 24},
                "params": {
                    "scale": {"type": "integer", "enum": [2, 3, 4], "default": 4},
                    "tile": {"type": "integer", "min": 0, "max": 1024, "default": 512},
                    "face_enhance": {"type": "boolean", "default": False},
                },
                "cost": {"per_mp_ms": 180, "warm": True},
            },
            {
                "task": "remove-background",
                "model": "rembg-u2net",
                "input": {"type": "image", "formats": ["png", "jpeg"], "max_mp": 48},
                "params": {
                    "alpha_matting": {"type": "boolean", "default": False},
                    "erode_size": {"type": "integer", "min": 0, "max": 40, "default": 10},
                    "threshold": number(0.0, 1.0, 0.5),
                },
                "cost": {"per_mp_ms": 95, "warm": True},
            },
            {
                "task": "inpaint",
                "model": "stable-diffusion-xl-inpainting-1.0",
                "input": {"type": "image+mask", "formats": ["png"], "max_mp": 4},
                "params": {
                    "prompt": {"type": "string", "max_len": 1000, "default": ""},
                    "negative_prompt": {"type": "string", "max_len": 1000, "default": ""},
                    "steps": {"type": "integer", "min": 1, "max": 100, "default": 30},
                    "guidance": number(1.0, 20.0, 7.5),
                    "strength": number(0.0, 1.0, 0.99),
                    "seed": {"type": "integer", "min": 0, "max": 2**32 - 1, "default": None},
                    "scheduler": {
                        "type": "string",
                        "enum": ["euler", "euler_a", "dpmpp_2m", "ddim"],
                        "default": "euler_a",
                    },
                },
                "cost": {"per_step_ms": 210, "warm": False},
            },
        ],
        "licenses": ["apache-2.0", "openrail++"],
        "endpoints": ["wss://192.168.1.20:7700/peer", "wss://[fe80::1]:7700/peer"],
    }


def small_body() -> dict[str, Any]:
    return {"job": "j-4f2a", "state": "running", "progress": 0.42}


@dataclass
class Pair:
    """One comparison: a lightbox operation and its raw PyNaCl counterpart on the same bytes."""

    operation: str
    body_name: str
    body_bytes: int
    lightbox: Callable[[], object]
    raw: Callable[[], object]
    lightbox_rates: list[float]
    raw_rates: list[float]


def ops_per_second(operation: Callable[[], object], seconds: float) -> float:
    """Run `operation` repeatedly for about `seconds` and return calls per second."""
    calls = 0
    batch = 8
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            operation()
        calls += batch
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def make_pairs(identity: Identity, signing_key: nacl.signing.SigningKey) -> list[Pair]:
    verify_key = signing_key.verify_key
    pairs: list[Pair] = []
    for body_name, body in (("capability", capability_record()), ("small", small_body())):
        header = (identity, "lightbox/caps", 42, NOW_MS, NOW_MS + 600_000)
        frame = wire.seal(*header, body)
        signed, signature = msgpack.unpackb(frame)
        message = wire.SIGNING_CONTEXT + signed
        # The raw counterparts must do the same cryptographic work on the same bytes.
        assert signing_key.sign(message).signature == signature
        verify_key.verify(message, signature)
        opened = wire.open_envelope(frame, expect_domain="lightbox/caps", now_ms=NOW_MS)
        assert opened.envelope.body == wire.unpack(wire.pack(body))

        def seal(header: tuple[Any, ...] = header, body: Any = body) -> bytes:
            return wire.seal(*header, body)

        def raw_sign(message: bytes = message) -> object:
            return signing_key.sign(message)

        def open_(frame: bytes = frame) -> object:
            return wire.open_envelope(frame, expect_domain="lightbox/caps", now_ms=NOW_MS)

        def raw_verify(message: bytes = message, signature: bytes = signature) -> object:
            return verify_key.verify(message, signature)

        size = len(wire.pack(body))
        pairs.append(Pair("seal", body_name, size, seal, raw_sign, [], []))
        pairs.append(Pair("open+verify", body_name, size, open_, raw_verify, [], []))
    return pairs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=16.0, help="total measuring time")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds per pair")
    args = parser.parse_args(argv)

    identity = Identity.from_seed(SEED)
    signing_key = nacl.signing.SigningKey(SEED)
    pairs = make_pairs(identity, signing_key)
    slice_s = args.seconds / (args.rounds * len(pairs) * 2)

    for pair in pairs:  # warm up caches and allocators outside the measurement
        ops_per_second(pair.lightbox, 0.02)
        ops_per_second(pair.raw, 0.02)

    for round_index in range(args.rounds):
        for pair in pairs:
            sides = [(pair.lightbox, pair.lightbox_rates), (pair.raw, pair.raw_rates)]
            if round_index % 2:
                sides.reverse()
            for operation, rates in sides:
                rates.append(ops_per_second(operation, slice_s))

    msgpack_impl = "C" if msgpack.Packer.__module__.endswith("_cmsgpack") else "pure Python"
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"pynacl {nacl.__version__}, msgpack {'.'.join(map(str, msgpack.version))} "
        f"({msgpack_impl}); {args.rounds} rounds x {slice_s * 1000:.0f} ms slices, "
        f"{platform.machine()}"
    )
    header = f"{'operation':<12} {'body':<18} {'lightbox ops/s':>15} {'raw ops/s':>12} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    below_target = []
    for pair in pairs:
        ratio = statistics.median(
            lb / raw for lb, raw in zip(pair.lightbox_rates, pair.raw_rates, strict=True)
        )
        body = f"{pair.body_name} ({pair.body_bytes} B)"
        print(
            f"{pair.operation:<12} {body:<18} {statistics.median(pair.lightbox_rates):>15,.0f} "
            f"{statistics.median(pair.raw_rates):>12,.0f} {ratio:>7.2f}"
        )
        if ratio < TARGET_RATIO:
            below_target.append(f"{pair.operation}/{pair.body_name}")
    if below_target:
        print(f"below the {TARGET_RATIO} target: {', '.join(below_target)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
