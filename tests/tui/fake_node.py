"""A node's HTTP API as fixed answers behind `httpx.MockTransport`, for screens that must
look the same on every run (snapshots) and for the client's error paths."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

NOW = 1_800_000_000.0
NODE = "lb1aaaabbbbccccddddeeeeffffgggghhhhiiiijjjjkkkkllllmmmmnnnnoooo"
PEER_A = "lb1peeraaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"
MODEL = "sha256-" + "ab" * 32
ADAPTER_A = "sha256-" + "a1" * 32
ADAPTER_C = "sha256-" + "c3" * 32
PEER_B = "lb1peerbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2"

EVERY_INPUT_TASK = {
    "format": "lightbox.task/1",
    "name": "txt2img",
    "title": "Text to image",
    "description": "Paints what the prompt says.",
    "version": 1,
    "inputs": [
        {
            "type": "text",
            "name": "prompt",
            "label": "Prompt",
            "required": True,
            "help": "What to paint.",
            "max_length": 500,
        },
        {
            "type": "integer",
            "name": "steps",
            "label": "Steps",
            "default": 20,
            "min": 1,
            "max": 150,
            "step": 1,
        },
        {
            "type": "number",
            "name": "guidance",
            "label": "Guidance",
            "default": 7.5,
            "min": 0.0,
            "max": 30.0,
            "unit": "",
        },
        {"type": "boolean", "name": "tiling", "label": "Tiling", "default": False},
        {
            "type": "choice",
            "name": "sampler",
            "label": "Sampler",
            "default": "euler",
            "options": [{"value": "euler", "label": "Euler"}, {"value": "ddim", "label": "DDIM"}],
        },
        {"type": "seed", "name": "seed", "label": "Seed", "default": "random"},
        {"type": "image", "name": "init", "label": "Start image", "advanced": True},
    ],
    "outputs": [{"name": "image", "type": "image", "media_type": "image/png"}],
    "groups": [{"name": "main", "label": "Settings"}],
    "constraints": [],
    "cost": {"kind": "fixed", "units": 1.0, "unit": "jobs"},
}


def job(job_id: str, owner: str, task: str, state: str, progress: float, age: float) -> dict:
    return {
        "job_id": job_id,
        "owner": owner,
        "task": task,
        "state": state,
        "progress": progress,
        "progress_message": "",
        "attempts": 1,
        "faults": [],
        "results": [],
        "error": None,
        "host": PEER_A if state != "queued" else None,
        "submitted_at": NOW - age,
        "finished_at": None,
        "queue_position": 1 if state == "queued" else None,
    }


JOBS = [
    job("j-000000000000000000000001", "alice", "txt2img", "running", 0.4, 12),
    job("j-000000000000000000000002", "bob", "txt2img", "queued", 0.0, 30),
    job("j-000000000000000000000003", "alice", "upscale", "done", 1.0, 400),
    job("j-000000000000000000000004", "carol", "txt2img", "faulted", 0.2, 7200),
]

ANSWERS: dict[str, Any] = {
    "/api/v1/status": {
        "peer_id": NODE,
        "network": "lightbox-main",
        "roles": ["queue", "gpu"],
        "version": "0.1.0",
        "started_at": NOW - 3725,
        "uptime_s": 3725.0,
    },
    "/api/v1/admin/status": {
        "node": {},
        "peers": {"known": 2, "linked": 1},
        "jobs": {
            "by_state": {"running": 1, "queued": 1, "done": 1, "faulted": 1},
            "counters": {"done": 1},
        },
        "hosts": 1,
        "accounts": 3,
    },
    "/api/v1/peers": {
        "peers": [
            {
                "peer_id": PEER_A,
                "linked": True,
                "address": "127.0.0.1:7452",
                "liveness": "alive",
                "score": 12.5,
                "record": {
                    "seq": 3,
                    "issued_at_ms": (NOW - 5) * 1000,
                    "expires_at_ms": (NOW + 55) * 1000,
                    "roles": ["gpu"],
                    "addresses": ["ws://127.0.0.1:7452"],
                    "free_slots": 0,
                    "version": "0.1.0",
                    "task_names": ["txt2img", "upscale"],
                },
            },
            {
                "peer_id": PEER_B,
                "linked": False,
                "address": None,
                "liveness": "suspect",
                "score": -1.25,
                "record": None,
            },
        ]
    },
    "/api/v1/tasks": {
        "tasks": [
            {**EVERY_INPUT_TASK, "hosts": [{"peer_id": PEER_A, "attached": True, "free_slots": 0}]}
        ],
        "federated_only": [],
    },
    "/api/v1/admin/hosts": {
        "hosts": [
            {
                "peer_id": PEER_A,
                "online": True,
                "tasks": ["txt2img", "upscale"],
                "slots": 1,
                "free_slots": 0,
                "in_flight": ["j-000000000000000000000001"],
                "queued": 1,
                "queued_cost": 1.0,
                "seen_at": NOW - 1,
            }
        ]
    },
    "/api/v1/admin/queues": {
        "queues": [
            {
                "host": PEER_A,
                "jobs": [
                    {
                        "job_id": "j-000000000000000000000002",
                        "owner": "bob",
                        "task": "txt2img",
                        "priority": 812.5,
                        "cost": 1.0,
                        "submitted_at": NOW - 30,
                    }
                ],
            }
        ],
        "unplaced": [],
    },
    "/api/v1/admin/jobs": {"jobs": JOBS},
    "/api/v1/admin/users": {
        "users": [
            {
                "username": "alice",
                "account": {"role": "admin"},
                "trust": 998.2,
                "suspended": False,
                "recovery_eta_s": 12.0,
                "active_jobs": 1,
            },
            {
                "username": "bob",
                "account": None,
                "trust": 150.0,
                "suspended": True,
                "recovery_eta_s": 5400.0,
                "active_jobs": 1,
            },
        ]
    },
    "/api/v1/registry": {
        "members": [
            {"peer_id": NODE, "role": "leader", "term": 4},
            {"peer_id": PEER_A, "role": "follower", "term": 4},
        ],
        "concepts": [
            {
                "concept": "my-dog",
                "model_id": "sha256-" + "ab" * 32,
                "version": 1,
                "pending_count": 1,
                "updated_at": NOW - 7190,
            }
        ],
        "commits": [
            {"index": 17, "term": 4, "concept": "my-dog", "model_id": "sha256-" + "ab" * 32}
        ],
    },
}

ANSWERS["/api/v1/registry/concepts/my-dog"] = {
    "concept": "my-dog",
    "model": MODEL,
    "version": 1,
    "metadata": {"title": "My dog"},
    "pending_adapters": [
        {"adapter": ADAPTER_C, "weight": 1, "base": MODEL, "by": PEER_A, "at": (NOW - 20) * 1000}
    ],
    "pending_count": 1,
    "history_length": 4,
}
ANSWERS["/api/v1/registry/concepts/my-dog/history"] = {
    "concept": "my-dog",
    "events": [
        {"seq": 1, "index": 11, "kind": "adapter", "adapter": ADAPTER_A, "weight": 4,
         "base": None, "by": PEER_A, "at": (NOW - 7200) * 1000, "metadata": {}},
        {"seq": 2, "index": 17, "kind": "merge", "model": MODEL, "parent": None,
         "adapters": [ADAPTER_A], "weights": [4], "version": 1, "by": NODE,
         "at": (NOW - 7190) * 1000, "metadata": {}},
        {"seq": 3, "index": 18, "kind": "metadata", "metadata": {"title": "My dog"},
         "by": NODE, "at": (NOW - 3600) * 1000},
        {"seq": 4, "index": 21, "kind": "adapter", "adapter": ADAPTER_C, "weight": 1,
         "base": MODEL, "by": PEER_A, "at": (NOW - 20) * 1000, "metadata": {}},
    ],
}  # fmt: skip

ANSWERS["/api/v1/peers/" + PEER_A] = {
    **ANSWERS["/api/v1/peers"]["peers"][0],
    "score_components": {"first_deliveries": 10.0, "invalid_messages": 0.0, "jobs_done": 2.5},
}

METRICS = """\
# TYPE lightbox_job_events_total counter
lightbox_job_events_total{event="done"} 1
lightbox_job_latency_seconds_bucket{le="1.0"} 0
lightbox_job_latency_seconds_bucket{le="2.5"} 1
lightbox_job_latency_seconds_bucket{le="+Inf"} 1
lightbox_jobs{state="queued"} 1
"""

Handler = Callable[[httpx.Request], httpx.Response]


def fake_node(
    answers: dict[str, Any] | None = None, missing: tuple[str, ...] = ()
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering like a node; `missing` paths answer the node's 404."""
    table = {**ANSWERS, **(answers or {})}
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        path = request.url.path
        if path == "/metrics" and path not in missing:
            return httpx.Response(200, text=METRICS)
        if path in table and path not in missing:
            answer = table[path]
            if isinstance(answer, httpx.Response):
                return answer
            return httpx.Response(200, content=json.dumps(answer).encode())
        return httpx.Response(
            404,
            json={"error": "not_found", "detail": f"no API endpoint {request.method} {path}"},
        )

    return httpx.MockTransport(handle), seen
