"""`lightbox-node dashboard` and `python -m lightbox_node.tui`: flags, defaults, and running
the app.

With no flags the dashboard opens the node of this machine: its address from the node's
config (data folder, config file, `--set`, as `lightbox-node run` reads them) and the
operator token from `DATA_DIR/api.token`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightbox_node.errors import LightboxError

DEFAULT_NODE = "http://127.0.0.1:7451"
TOKEN_FILE = "api.token"


def add_dashboard_parser(
    subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()
) -> argparse.ArgumentParser:
    """Add the `dashboard` command to a `lightbox-node` subparsers object."""
    parser = subparsers.add_parser(
        "dashboard",
        parents=list(parents),
        help="open the terminal dashboard of a node",
        description="A live terminal dashboard of a node, through its HTTP API: overview, "
        "peers, GPU hosts, jobs, trust, registry, and a form to submit jobs.",
    )
    add_dashboard_options(parser)
    return parser


def add_dashboard_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node",
        metavar="URL",
        help="the node's HTTP API (default: this machine's node, from its config; "
        f"else {DEFAULT_NODE})",
    )
    parser.add_argument(
        "--token",
        help="API token, or @FILE to read it from a file (default: DATA_DIR/api.token, "
        "the operator token of this machine's node)",
    )
    parser.add_argument(
        "--user",
        default="operator",
        help="with the operator token, the local user to act as (default: operator)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="give up on one request after this long (default: 5)",
    )
    parser.add_argument(
        "--poll",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="refresh interval when the node has no events stream (default: 1)",
    )
    # Standalone (`python -m lightbox_node.tui`) there are no common flags to inherit.
    for flag, kwargs in (
        ("--data-dir", {"type": Path, "help": "the local node's data folder (for its token)"}),
        ("--config", {"type": Path, "help": "the local node's config file"}),
        ("--set", {"action": "append", "default": [], "metavar": "NAME=VALUE"}),
    ):
        with contextlib.suppress(argparse.ArgumentError):
            parser.add_argument(flag, **kwargs)  # type: ignore[arg-type]


def _local_node(args: argparse.Namespace) -> tuple[str | None, Path | None]:
    """(API URL, data folder) of this machine's node, as its config says; Nones if unreadable."""
    from lightbox_node.config import load_config, parse_assignments

    try:
        config = load_config(
            data_dir=getattr(args, "data_dir", None),
            config_file=getattr(args, "config", None),
            overrides=parse_assignments(getattr(args, "set", None) or []),
        )
    except LightboxError:
        return None, getattr(args, "data_dir", None)
    host = config.http_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.http_port}", config.data_dir


def resolve(args: argparse.Namespace) -> tuple[str, str | None, str]:
    """(node URL, token, user) from the flags and this machine's node."""
    url, data_dir = _local_node(args)
    node = args.node or url or DEFAULT_NODE
    if "://" not in node:
        node = "http://" + node
    token = args.token
    if token and token.startswith("@"):
        try:
            token = Path(token[1:]).expanduser().read_text().strip()
        except OSError as exc:
            raise LightboxError(f"cannot read the token file {token[1:]}: {exc}") from None
    if not token and data_dir is not None:
        with contextlib.suppress(OSError):
            token = (data_dir / TOKEN_FILE).read_text().strip() or None
    return node, token, args.user


def run_dashboard(args: argparse.Namespace) -> int:
    """Run the dashboard until the user quits; the exit status."""
    from lightbox_node.tui.app import DashboardApp
    from lightbox_node.tui.client import NodeClient

    try:
        node, token, user = resolve(args)
    except LightboxError as exc:
        print(f"lightbox-node dashboard: error: {exc}", file=sys.stderr)
        return 1
    client = NodeClient(node, token, user, timeout_s=args.timeout)
    DashboardApp(client, poll_s=args.poll).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lightbox_node.tui",
        description="A live terminal dashboard of a Lightbox node, through its HTTP API.",
    )
    add_dashboard_options(parser)
    return run_dashboard(parser.parse_args(argv))
