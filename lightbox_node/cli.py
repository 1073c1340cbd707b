"""The `lightbox-node` command: init, id, config, run.

A thin shell: it parses flags, builds the config, and turns `LightboxError` into a
one-line message and exit status 1 instead of a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

from lightbox_node import __version__
from lightbox_node.config import (
    ROLES,
    SETTINGS,
    NodeConfig,
    load_config,
    parse_assignments,
    render_config_file,
)
from lightbox_node.errors import ConfigError, LightboxError
from lightbox_node.identity import Identity, PeerId, load_or_create
from lightbox_node.logs import configure_logging
from lightbox_node.registry_cli import add_registry_parser, run_registry
from lightbox_node.sim.cli import add_simulate_parser, run_simulate
from lightbox_node.tui.cli import add_dashboard_parser, run_dashboard

log = logging.getLogger("lightbox.cli")


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        help="node data folder (default: $LIGHTBOX_DATA_DIR, "
        "else $XDG_DATA_HOME/lightbox or ~/.local/share/lightbox)",
    )
    common.add_argument("--config", type=Path, help="config file (default: DATA_DIR/config.toml)")
    common.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set any config value (repeatable); see `lightbox-node config`",
    )
    common.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    common.add_argument(
        "--log-json", action="store_true", default=None, help="print logs as JSON lines"
    )

    parser = argparse.ArgumentParser(
        prog="lightbox-node",
        description="A Lightbox peer: queue server, GPU host and registry member.",
    )
    parser.add_argument("--version", action="version", version=f"lightbox-node {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser(
        "init",
        parents=[common],
        help="create the data folder, node key and config file",
        description="Create the data folder (0700), the node key (0600), a commented config "
        "file and the database. Safe to re-run: nothing existing is overwritten.",
    )
    init.add_argument(
        "--admin",
        metavar="USERNAME",
        help="also create this administrator account; the password is asked for, or read "
        "from $LIGHTBOX_ADMIN_PASSWORD when there is no terminal",
    )
    commands.add_parser(
        "id",
        parents=[common],
        help="print this node's peer id",
        description="Print the peer id of the key in the data folder.",
    )
    commands.add_parser(
        "config",
        parents=[common],
        help="print the effective configuration",
        description="Print every setting's effective value after file, environment and flags.",
    )
    for name, verb in (("block", "refuse"), ("allow", "allow"), ("unblock", "forget")):
        decide = commands.add_parser(
            name,
            parents=[common],
            help=f"{verb} a peer by id (persisted; a running node applies it within seconds)",
            description={
                "block": "Defederate a peer: close its links, drop its records, refuse it.",
                "allow": "Allow a peer (lifts a block; with allowlist_only, admits it).",
                "unblock": "Remove any block or allow entry for a peer.",
            }[name],
        )
        decide.add_argument("peer_id", help="the peer's id (lb1…)")
        if name != "unblock":
            decide.add_argument("--reason", default="", help="why, for whoever reads the list")
    commands.add_parser(
        "policy",
        parents=[common],
        help="list blocked and allowed peers",
        description="List the block/allow entries in this node's database.",
    )
    add_dashboard_parser(commands, [common])
    add_registry_parser(commands, [common])
    add_simulate_parser(commands)  # its own --config: sharing `common` would rewrite ours
    run = commands.add_parser(
        "run",
        parents=[common],
        help="run the node",
        description="Run the node until SIGINT or SIGTERM. Creates the key on first run.",
    )
    run.add_argument("--roles", help=f"comma-separated roles from {', '.join(ROLES)}")
    run.add_argument("--host", dest="http_host", help="address for the HTTP API and editor")
    run.add_argument("--http-port", type=int, help="HTTP port (0 picks a free one)")
    run.add_argument("--p2p-port", type=int, help="peer-to-peer port (0 picks a free one)")
    run.add_argument(
        "--bootstrap",
        action="append",
        metavar="PEER_ID@HOST:PORT",
        help="bootstrap peer (repeatable)",
    )
    run.add_argument(
        "--no-mdns",
        dest="mdns",
        action="store_false",
        default=None,
        help="do not discover or announce on the LAN with mDNS",
    )
    return parser


def _config_from_args(args: argparse.Namespace) -> NodeConfig:
    overrides: dict[str, Any] = parse_assignments(args.set)
    for name in ("log_level", "log_json", "http_host", "http_port", "p2p_port", "mdns"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "roles", None) is not None:
        overrides.update(parse_assignments([f"roles={args.roles}"]))
    if getattr(args, "bootstrap", None):
        overrides["bootstrap"] = list(args.bootstrap)
    return load_config(data_dir=args.data_dir, config_file=args.config, overrides=overrides)


def _ensure_data_dir(config: NodeConfig) -> tuple[Identity, bool]:
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    identity, created = load_or_create(config.key_file)
    if not config.config_file.exists():
        config.config_file.write_text(render_config_file(config), "utf-8")
    return identity, created


def _cmd_init(config: NodeConfig, admin: str | None = None) -> int:
    from lightbox_node.store import open_database

    identity, created = _ensure_data_dir(config)
    database = open_database(config.database_file)
    try:
        if admin:
            from lightbox_node.accounts import create_admin

            create_admin(database, admin, _admin_password())
            print(f"admin:     {admin} (created)")
    finally:
        database.close()
    state = "created" if created else "kept existing"
    print(f"data dir:  {config.data_dir}")
    print(f"node key:  {config.key_file} ({state})")
    print(f"config:    {config.config_file}")
    print(f"peer id:   {identity.peer_id}")
    return 0


def _admin_password() -> str:
    import getpass

    from_env = os.environ.get("LIGHTBOX_ADMIN_PASSWORD")
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise ConfigError("no terminal to ask for the admin password: set LIGHTBOX_ADMIN_PASSWORD")
    password = getpass.getpass("admin password: ")
    if password != getpass.getpass("again: "):
        raise ConfigError("the two passwords differ; run init --admin again")
    return password


def _cmd_id(config: NodeConfig) -> int:
    print(Identity.load(config.key_file).peer_id)
    return 0


def _cmd_config(config: NodeConfig) -> int:
    print(f"data_dir = {str(config.data_dir)!r}")
    for setting in SETTINGS:
        print(f"{setting.name} = {getattr(config, setting.name)!r}")
    return 0


def _cmd_run(config: NodeConfig) -> int:
    from lightbox_node.node import run_node

    identity, created = _ensure_data_dir(config)
    if created:
        log.info("created a new node key", extra={"path": str(config.key_file)})

    async def main() -> None:
        shutdown = trio.Event()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                ready = await nursery.start(run_node, config, identity, shutdown)
                print(f"peer id: {ready.peer_id}", flush=True)
                print(f"p2p:     {ready.p2p_url}", flush=True)
                print(f"editor:  {ready.editor_url}", flush=True)
                async for signum in signals:
                    log.info("signal received", extra={"signal": signal.Signals(signum).name})
                    shutdown.set()
                    break

    try:
        trio.run(main)
    except BaseExceptionGroup as group:
        # A service that failed to start (a port in use, say) is one clear error, not a tree.
        matched, _ = group.split(LightboxError)
        if matched is None:
            raise
        raise _leaves(matched)[0] from None
    return 0


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def _cmd_policy_change(config: NodeConfig, args: argparse.Namespace) -> int:
    from lightbox_node.gossip.peer_policy import (
        PolicyEntry,
        Verdict,
        delete_entry,
        save_entry,
    )
    from lightbox_node.store import open_database

    peer = PeerId.parse(args.peer_id)
    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = open_database(config.database_file)
    try:
        if args.command == "unblock":
            delete_entry(database, peer)
            print(f"{peer}: no longer blocked or allowed")
            return 0
        verdict = Verdict.BLOCK if args.command == "block" else Verdict.ALLOW
        try:
            entry = PolicyEntry(peer, verdict, args.reason, time.time())
        except ValueError as exc:
            raise ConfigError(f"--reason: {exc}") from None
        save_entry(database, entry)
        print(f"{peer}: {verdict.value}ed" + (f" ({args.reason})" if args.reason else ""))
        return 0
    finally:
        database.close()


def _cmd_policy(config: NodeConfig) -> int:
    from lightbox_node.gossip.peer_policy import load_policy
    from lightbox_node.store import open_database

    database = open_database(config.database_file)
    try:
        entries = load_policy(database).entries()
    finally:
        database.close()
    if not entries:
        print("no peers are blocked or allowed")
    for entry in entries:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(entry.decided_at or 0))
        print(f"{entry.verdict.value:<6} {entry.peer}  {when}  {entry.reason}")
    return 0


_COMMANDS = {
    "init": _cmd_init,
    "id": _cmd_id,
    "config": _cmd_config,
    "run": _cmd_run,
    "policy": _cmd_policy,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "dashboard":  # a client of a node: it reads no node config itself
        return run_dashboard(args)
    if args.command == "simulate":  # its --config is the simulation's, not the node's
        return run_simulate(args)
    try:
        config = _config_from_args(args)
        configure_logging(config.log_level, config.log_json)
        if args.command in ("block", "allow", "unblock"):
            return _cmd_policy_change(config, args)
        if args.command == "init":
            return _cmd_init(config, args.admin)
        if args.command == "registry":
            return run_registry(config, args)
        return _COMMANDS[args.command](config)
    except LightboxError as exc:
        print(f"lightbox-node: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
