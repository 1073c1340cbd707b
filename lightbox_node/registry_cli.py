"""`lightbox-node registry status|get CONCEPT|history CONCEPT`: the registry, read from a node.

A client of a running node's HTTP API (the read-only registry views), not of its database:
the registry's truth is what its Raft group committed, and a running node reads that through
the leader. The node is this data folder's (its `http_host`/`http_port`) unless `--url`
names another.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from lightbox_node.config import NodeConfig
from lightbox_node.errors import LightboxError

TIMEOUT_S = 15.0


class RegistryCliError(LightboxError):
    """The node could not be reached, or refused the request."""


def add_registry_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    registry = commands.add_parser(
        "registry",
        parents=parents,
        help="show the model registry: members, concepts, a concept's model and history",
        description="Read the model registry through a running node (this data folder's, "
        "or --url).",
    )
    registry.add_argument("--url", help="the node's HTTP address, e.g. http://127.0.0.1:7451/")
    registry.add_argument("--json", action="store_true", help="print the raw JSON answer")
    views = registry.add_subparsers(dest="view", required=True, metavar="VIEW")
    views.add_parser("status", help="Raft members, the leader, each concept's global model")
    get = views.add_parser("get", help="one concept: its global model and pending adapters")
    get.add_argument("concept")
    history = views.add_parser("history", help="one concept's adapters and merges, oldest first")
    history.add_argument("concept")


def run_registry(config: NodeConfig, args: argparse.Namespace) -> int:
    base = args.url or f"http://{_host(config.http_host)}:{config.http_port}/"
    if args.view == "status":
        answer = _get(base, "api/v1/registry")
        print(json.dumps(answer, indent=2) if args.json else render_status(answer))
    elif args.view == "get":
        answer = _get(base, f"api/v1/registry/concepts/{_quoted(args.concept)}")
        print(json.dumps(answer, indent=2) if args.json else render_concept(answer))
    else:
        events: list[dict[str, Any]] = []
        after = 0
        while True:  # the node pages; a history can be longer than one page
            page = _get(
                base, f"api/v1/registry/concepts/{_quoted(args.concept)}/history?after={after}"
            )["events"]
            events += page
            if not page:
                break
            after = int(page[-1]["seq"])
        if args.json:
            print(json.dumps({"concept": args.concept, "events": events}, indent=2))
        else:
            print(render_history(args.concept, events))
    return 0


def render_status(answer: dict[str, Any]) -> str:
    lines = [f"leader: {answer.get('leader') or 'none known'}", "members:"]
    for member in answer.get("members", []):
        mark = " (leader)" if member.get("leader") else ""
        lines.append(f"  {member['peer_id']}{mark}")
    concepts = answer.get("concepts", [])
    lines.append(f"concepts: {len(concepts)}")
    for concept in concepts:
        model = concept.get("model_id") or "no model yet"
        lines.append(
            f"  {concept['concept']:<24} v{concept.get('version') or 0:<4} {model}"
            f"  ({concept.get('pending_count') or 0} adapters pending)"
        )
    return "\n".join(lines)


def render_concept(answer: dict[str, Any]) -> str:
    lines = [
        f"concept: {answer['concept']}",
        f"model:   {answer.get('model') or 'no model yet'}",
        f"version: {answer.get('version') or 0}",
        f"pending adapters: {answer.get('pending_count') or 0}",
    ]
    for adapter in answer.get("pending_adapters", []):
        lines.append(f"  {adapter['adapter']}  weight {adapter['weight']:g}  by {adapter['by']}")
    for key, value in sorted((answer.get("metadata") or {}).items()):
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


def render_history(concept: str, events: list[dict[str, Any]]) -> str:
    lines = [f"history of {concept}: {len(events)} events"]
    for event in events:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((event.get("at") or 0) / 1000))
        if event.get("kind") == "merge":
            what = (
                f"merge v{event.get('version')} -> {event.get('model')} "
                f"({len(event.get('adapters') or [])} adapters)"
            )
        elif event.get("kind") == "adapter":
            what = f"adapter {event.get('adapter')} weight {event.get('weight')}"
        else:
            what = f"metadata {event.get('metadata')}"
        lines.append(f"  #{event.get('seq')} {when} {what} by {event.get('by')}")
    return "\n".join(lines)


def _host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _quoted(concept: str) -> str:
    return urllib.parse.quote(concept, safe="")


def _get(base: str, path: str) -> Any:
    url = base.rstrip("/") + "/" + path
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        try:
            detail = json.load(error).get("detail", error.reason)
        except (ValueError, AttributeError):
            detail = error.reason
        raise RegistryCliError(f"the node refused ({error.code}): {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RegistryCliError(
            f"cannot reach the node at {base} ({exc}); is it running? (--url names another)"
        ) from None


__all__ = ["add_registry_parser", "run_registry"]
