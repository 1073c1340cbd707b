"""Compose a node: its identity, store, peer network and HTTP API, in one trio nursery.

Each service is started with `nursery.start` so the node reports ready only when every
listener is bound. Shutdown is one cancel scope: set `shutdown`, and everything stops.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import trio

from lightbox_node import __version__
from lightbox_node.accounts import AccountService, AccountSettings
from lightbox_node.accounts.mail import SmtpMailer
from lightbox_node.api import NodeStatus, create_app, serve_http
from lightbox_node.api.settings import ApiSettings
from lightbox_node.blob_exchange import PROTOCOL as BLOBS_PROTOCOL
from lightbox_node.blob_exchange import BlobExchange
from lightbox_node.blob_references import job_blob_ids, registry_blob_ids
from lightbox_node.blobs import run_blob_collector
from lightbox_node.concepts import AdapterSubmitter, ConceptResolver
from lightbox_node.concepts.merger import Merger
from lightbox_node.config import NodeConfig
from lightbox_node.dispatch.attach import PROTOCOL as JOBS_PROTOCOL
from lightbox_node.dispatch.attach import JobsProtocol, run_local_pair
from lightbox_node.dispatch.federation import Federation
from lightbox_node.dispatch.host import GpuHost
from lightbox_node.dispatch.queue import QueueService
from lightbox_node.dispatch.test_tasks import test_task_runners
from lightbox_node.errors import ConfigError
from lightbox_node.gossip.peer_policy import load_policy
from lightbox_node.identity import Identity, PeerId
from lightbox_node.net import dial, serve_links
from lightbox_node.net.discovery import PeerHint, link_url, parse_bootstrap_list, run_mdns
from lightbox_node.net.link import PeerLink
from lightbox_node.raft import RaftStorage, Registry
from lightbox_node.raft.service import RegistryService
from lightbox_node.sched.scheduler import Scheduler, SchedulerParams
from lightbox_node.sched.trust import TrustParams
from lightbox_node.store import BlobId, BlobStore, Database, open_database, setdefault_meta
from lightbox_node.swarm import Swarm, SwarmParams
from lightbox_node.tasks import load_catalog

log = logging.getLogger("lightbox.node")

SHUTDOWN_GRACE_S = 1.0
"""How long the HTTP server gets to finish its requests after shutdown is asked."""

POLICY_RELOAD_S = 5.0
"""How often the peer block/allow list is re-read, so `lightbox-node block` takes effect."""


@dataclass(frozen=True, slots=True)
class NodeReady:
    """What a started node tells its caller: who it is and where people can reach it."""

    peer_id: str
    editor_url: str
    p2p_url: str
    queue: QueueService | None = None
    """The queue role's service, for callers embedding a node (benchmarks, tests)."""
    registry: RegistryService | None = None


async def run_node(
    config: NodeConfig,
    identity: Identity,
    shutdown: trio.Event,
    *,
    wall_clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[NodeReady] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the node until `shutdown` is set; report `NodeReady` once it is serving."""
    started_at = wall_clock()
    bootstrap = parse_bootstrap_list(config.bootstrap)  # bad entries fail before anything binds
    database = await trio.to_thread.run_sync(open_database, config.database_file)
    accounts: AccountService | None = None
    raft_database: Database | None = None
    try:
        await trio.to_thread.run_sync(BlobStore, config.blob_dir)
        await trio.to_thread.run_sync(
            setdefault_meta, database, "first_started_at", str(started_at)
        )
        api_token = await trio.to_thread.run_sync(_api_token, config)
        # Accounts get their own connection, so their writes never land in a journal batch.
        mailer = _mailer(config)  # a half-configured relay fails before anything starts
        accounts = await trio.to_thread.run_sync(
            partial(
                AccountService.open,
                config.database_file,
                identity,
                AccountSettings(pow_difficulty=config.pow_difficulty),
                mailer=mailer,
            )
        )
        policy = await trio.to_thread.run_sync(
            lambda: load_policy(database, allowlist_only=config.allowlist_only)
        )

        async def dial_hint(nursery: trio.Nursery, hint: PeerHint) -> PeerLink:
            return await dial(nursery, hint.url, identity, config.network, hint.peer_id)

        swarm = Swarm(
            identity,
            network=config.network,
            roles=config.roles,
            version=__version__,
            dialer=dial_hint,
            params=SwarmParams(target_links=config.target_links, record_ttl_s=config.record_ttl_s),
            policy=policy,
            wall_ms=lambda: int(wall_clock() * 1000),
        )
        swarm.add_hints(bootstrap, pinned=True)

        def status() -> NodeStatus:
            return NodeStatus(
                peer_id=str(identity.peer_id),
                network=config.network,
                roles=config.roles,
                version=__version__,
                started_at=started_at,
                uptime_s=round(wall_clock() - started_at, 3),
            )

        # HTTP lives in the outer nursery so it can finish its requests after shutdown;
        # everything else is cancelled the moment shutdown is asked.
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as services:
                p2p_port = await services.start(
                    serve_links,
                    swarm.serve_link,
                    config.listen_host,
                    config.p2p_port,
                    identity,
                    config.network,
                )
                p2p_url = link_url(_advertised_host(config.listen_host), p2p_port)
                swarm.addresses = (p2p_url,)
                await services.start(swarm.run)
                if config.mdns:
                    services.start_soon(_discover_on_lan, swarm, config, p2p_port)
                services.start_soon(_reload_policy, swarm, database)
                if "registry" in config.roles:
                    # Raft gets its own connection: its fsync'd commits never share a
                    # transaction with the job journal's batches.
                    raft_database = await trio.to_thread.run_sync(
                        open_database, config.database_file
                    )
                registry = await _start_registry(services, config, swarm, raft_database)
                exchange = BlobExchange(swarm, BlobStore(config.blob_dir))
                await services.start(exchange.run)
                swarm.register(BLOBS_PROTOCOL, exchange)
                merger = await _start_merger(services, config, registry, exchange)
                jobs = await _start_dispatch(
                    services, config, identity, swarm, database, registry, exchange
                )
                services.start_soon(
                    partial(
                        run_blob_collector,
                        exchange.store,
                        _blobs_in_use(exchange, jobs.queue, registry),
                        wall_clock=wall_clock,
                    )
                )
                editor_url = await outer.start(
                    serve_http,
                    create_app(
                        status,
                        swarm,
                        jobs.queue,
                        api_token=api_token,
                        accounts=accounts,
                        settings=ApiSettings(max_active_jobs=config.max_active_jobs),
                        registry=registry,
                        merge=merger.merge if merger is not None else None,
                    ),
                    config.http_host,
                    config.http_port,
                    shutdown,
                )
                ready = NodeReady(str(identity.peer_id), editor_url, p2p_url, jobs.queue, registry)
                log.info(
                    "node ready",
                    extra={
                        "peer_id": ready.peer_id,
                        "roles": ",".join(config.roles),
                        "editor": editor_url,
                        "p2p": p2p_url,
                    },
                )
                task_status.started(ready)
                await shutdown.wait()
                log.info("shutting down")
                services.cancel_scope.cancel()
            outer.cancel_scope.deadline = trio.current_time() + SHUTDOWN_GRACE_S
    finally:
        if accounts is not None:
            accounts.close()
        if raft_database is not None:
            raft_database.close()
        database.close()


async def _start_registry(
    nursery: trio.Nursery, config: NodeConfig, swarm: Swarm, raft_database: Database | None
) -> RegistryService:
    """Every node reads and writes the registry; a `registry` node is also a Raft server."""
    storage = RaftStorage(raft_database) if raft_database is not None else None
    registry = RegistryService(
        swarm,
        Registry(),
        storage,
        founders=[PeerId.parse(text) for text in config.registry_founders],
    )
    for protocol, inbox in registry.inboxes.items():
        swarm.register(protocol, inbox)
    await nursery.start(registry.run)
    return registry


async def _start_merger(
    nursery: trio.Nursery, config: NodeConfig, registry: RegistryService, exchange: BlobExchange
) -> Merger | None:
    """On a registry member with the ml extra: merges while leading, copies global models."""
    if registry.node is None:
        return None
    try:
        from lightbox_node.finetune.merge import merge_adapter_files
    except ImportError:
        log.info("no ml extra: this registry member will not merge concepts")
        return None
    store = exchange.store

    async def has_blob(blob_id: BlobId) -> bool:
        return await trio.to_thread.run_sync(store.has, blob_id)

    async def store_blob(data: bytes) -> str:
        blob_id = await trio.to_thread.run_sync(store.put, data)
        exchange.announce(blob_id)  # hosts find the new model in gossip
        return str(blob_id)

    merger = Merger(
        registry,
        lambda files, weights, parent: merge_adapter_files(files, weights, parent=parent),
        _blob_bytes(exchange),
        has_blob,
        store_blob,
        merge_every=config.merge_every,
    )
    await nursery.start(merger.run)
    return merger


def _blobs_in_use(
    exchange: BlobExchange, queue: QueueService | None, registry: RegistryService
) -> Callable[[], Awaitable[set[BlobId]]]:
    """What the blob collector must keep: announced blobs, jobs' blobs, registry models."""

    async def in_use() -> set[BlobId]:
        ids = set(exchange.announced())
        if queue is not None:
            ids |= job_blob_ids(queue.scheduler.jobs())
        if registry.node is not None:
            ids |= await registry_blob_ids(registry.read)
        return ids

    return in_use


def _blob_bytes(exchange: BlobExchange) -> Callable[[BlobId, list[PeerId]], Awaitable[bytes]]:
    """A blob's bytes, fetched first from `peers`, then from holders known from gossip."""

    async def blob_bytes(blob_id: BlobId, peers: list[PeerId]) -> bytes:
        more = [peer for peer in exchange.holders(blob_id) if peer not in peers]
        await exchange.fetch(blob_id, [*peers, *more])
        return await trio.to_thread.run_sync(exchange.store.get, blob_id)

    return blob_bytes


@dataclass(frozen=True, slots=True)
class _Dispatch:
    queue: QueueService | None
    host: GpuHost | None


async def _start_dispatch(
    nursery: trio.Nursery,
    config: NodeConfig,
    identity: Identity,
    swarm: Swarm,
    database: Database,
    registry: RegistryService,
    exchange: BlobExchange,
) -> _Dispatch:
    """The queue role's service and the gpu role's host, attached to each other and to peers."""
    queue = host = None
    blobs = exchange.store
    if "queue" in config.roles:
        params = SchedulerParams(trust=TrustParams(federated_priority=config.federated_priority))
        queue = QueueService(
            identity.peer_id,
            Scheduler(params),
            database,
            blobs,
            retention_s=config.job_retention_s,
            fetch_blob=lambda blob_id, peers, size: exchange.fetch(blob_id, peers, max_bytes=size),
        )
        await nursery.start(queue.run)
        submitter = AdapterSubmitter(
            registry.write, on_submitted=lambda blob: exchange.announce(BlobId.parse(blob))
        )
        queue.on_finished = submitter.job_finished
        await nursery.start(submitter.run)
    if "gpu" in config.roles:
        runners: dict = test_task_runners() if config.test_tasks else {}
        runners.update(await _model_runners(config))

        async def image_bytes(blob_text: str) -> bytes:
            """An image input: from this node's store, else fetched from the job's queues."""
            blob_id = BlobId.parse(blob_text)
            await exchange.fetch(blob_id, host.queues if host is not None else ())
            return await trio.to_thread.run_sync(blobs.get, blob_id)

        host = GpuHost(
            runners,
            slots=config.gpu_slots,
            on_change=swarm.capabilities_changed,
            images=image_bytes,
            store_blob=lambda data: trio.to_thread.run_sync(blobs.put, data),
            concepts=ConceptResolver(
                registry.read, _blob_bytes(exchange), members=lambda: registry.status().members
            ),
        )
        await nursery.start(host.run)
        swarm.set_tasks(host.task_schemas, lambda: host.queues)
    federation = None
    if queue is not None:
        federation = Federation(identity, swarm, queue)
        await nursery.start(federation.run)
        queue.find_host = federation.ensure_host
    protocol = JobsProtocol(
        swarm,
        queue,
        host,
        frozenset(PeerId.parse(text) for text in config.attach_to),
        federation,
    )
    swarm.register(JOBS_PROTOCOL, protocol)
    nursery.start_soon(protocol.run)
    if queue is not None and host is not None and not config.attach_to:
        await nursery.start(run_local_pair, queue, host, identity.peer_id)
    return _Dispatch(queue, host)


async def _model_runners(config: NodeConfig) -> dict:
    """Runners for every catalog model whose weights are here; tiny demo ones if asked.

    Nothing heavy is imported unless some model can be served: checking for weights is
    plain file work, and a node without models starts as fast as one without the ml extra.
    """
    catalog = await trio.to_thread.run_sync(load_catalog, config.models_dir)
    if config.demo_models:
        from lightbox_node.runners import build_tiny_models

        log.info("building tiny demo models (random weights) where none exist")
        await trio.to_thread.run_sync(build_tiny_models, config.data_dir, catalog)
    survey = await trio.to_thread.run_sync(catalog.survey, config.data_dir)
    if not any(availability.servable for availability in survey.values()):
        log.info(
            "no model weights found: serving test tasks only",
            extra={"hint": "set demo_models = true for tiny demo models"},
        )
        return {}
    from lightbox_node.runners import build_runners

    runners, reasons = await trio.to_thread.run_sync(build_runners, catalog, config.data_dir)
    for reason in reasons:
        log.info("model not served", extra={"reason": reason})
    log.info("serving models", extra={"tasks": ",".join(sorted(runners))})
    return runners


def _mailer(config: NodeConfig) -> SmtpMailer | None:
    """The SMTP relay of the settings (password from $LIGHTBOX_SMTP_PASSWORD), if any."""
    if config.smtp_host is None:
        return None
    if config.smtp_sender is None:
        raise ConfigError("smtp_host is set but smtp_sender is not: set the From address too")
    return SmtpMailer(
        config.smtp_host,
        config.smtp_port,
        config.smtp_sender,
        starttls=config.smtp_starttls,
        username=config.smtp_username,
        password=os.environ.get("LIGHTBOX_SMTP_PASSWORD"),
    )


def _api_token(config: NodeConfig) -> str:
    """The operator's API token, in a 0600 file beside the key; made on first start."""
    path = config.data_dir / "api.token"
    try:
        return path.read_text("ascii").strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(token + "\n")
        return token


def _advertised_host(listen_host: str) -> str:
    """The host others should dial: the listen address, or loopback for a wildcard here."""
    return "127.0.0.1" if listen_host in ("0.0.0.0", "", "::") else listen_host


async def _discover_on_lan(swarm: Swarm, config: NodeConfig, port: int) -> None:
    send, receive = trio.open_memory_channel[PeerHint](64)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            run_mdns, swarm.peer_id, config.roles, config.network, config.listen_host, port, send
        )
        async for hint in receive:
            log.debug(
                "mdns hint",
                extra={"peer": hint.peer_id.short if hint.peer_id else "-", "url": hint.url},
            )
            swarm.add_hints([hint])


async def _reload_policy(swarm: Swarm, database: Database) -> None:
    """Pick up blocks and allows written by `lightbox-node block` while the node runs."""
    while True:
        await trio.sleep(POLICY_RELOAD_S)
        policy = await trio.to_thread.run_sync(
            lambda: load_policy(database, allowlist_only=swarm.policy.allowlist_only)
        )
        swarm.replace_policy(policy)
