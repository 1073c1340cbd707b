"""Discovery: where peers might be. Bootstrap addresses from config, and mDNS on the LAN.

Everything found here is a *hint*: an address to dial. A peer is known only after a
handshake proves its key, so a spoofed mDNS answer or a stale bootstrap entry costs one
failed dial, never a trusted link.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from lightbox_node.errors import ConfigError, PeerIdError
from lightbox_node.identity import PeerId
from lightbox_node.net.link import LINK_PATH

log = logging.getLogger("lightbox.discovery")

MDNS_SERVICE_TYPE = "_lightbox._tcp.local."
MDNS_CLOSE_GRACE_S = 0.3
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]{1,253}):(?P<port>\d{1,5})$")


@dataclass(frozen=True, slots=True)
class PeerHint:
    """An address where a peer may listen, and the peer id expected there if known."""

    url: str
    peer_id: PeerId | None = None
    source: str = "bootstrap"


def link_url(host: str, port: int) -> str:
    """The WebSocket URL of a node's peer-link listener."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"ws://{host}:{port}{LINK_PATH}"


def parse_bootstrap(entry: str) -> PeerHint:
    """Parse `PEER_ID@HOST:PORT` (verified: the handshake must prove that key) or `HOST:PORT`."""
    peer_text, sep, address = entry.strip().rpartition("@")
    peer_id: PeerId | None = None
    if sep:
        try:
            peer_id = PeerId.parse(peer_text)
        except PeerIdError as exc:
            raise ConfigError(f"bootstrap entry {entry!r}: {exc}") from None
    match = _HOST_PORT.match(address)
    if not match or not 0 < int(match["port"]) < 65536:
        raise ConfigError(
            f"bootstrap entry {entry!r}: expected PEER_ID@HOST:PORT or HOST:PORT, "
            "with a port from 1 to 65535"
        )
    host = match["host"].strip("[]")
    return PeerHint(link_url(host, int(match["port"])), peer_id, "bootstrap")


def parse_bootstrap_list(entries: Iterable[str]) -> list[PeerHint]:
    return [parse_bootstrap(entry) for entry in entries]


# -- mDNS (zeroconf runs its own thread; results are handed to trio through a channel) ------


def _usable_addresses(listen_host: str) -> list[bytes]:
    """Addresses to announce: the listen address itself unless it is a wildcard."""
    if listen_host not in ("0.0.0.0", "", "::"):
        return [socket.inet_aton(listen_host)] if ":" not in listen_host else []
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
    except OSError:
        return []
    found = {info[4][0] for info in infos}
    return [socket.inet_aton(a) for a in sorted(found) if not ipaddress.ip_address(a).is_loopback]


async def run_mdns(
    peer_id: PeerId,
    roles: tuple[str, ...],
    network: str,
    listen_host: str,
    port: int,
    hints: trio.MemorySendChannel[PeerHint],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Announce this node and report other nodes of the same network, until cancelled."""
    from zeroconf import ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

    token = trio.lowlevel.current_trio_token()
    me = str(peer_id)
    info = ServiceInfo(
        MDNS_SERVICE_TYPE,
        f"{me[:40]}.{MDNS_SERVICE_TYPE}",
        port=port,
        properties={"peer": me, "roles": ",".join(roles), "net": network},
        server=f"{me[:40]}.local.",
        addresses=_usable_addresses(listen_host),
    )
    zc = await trio.to_thread.run_sync(Zeroconf)

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        # Runs on zeroconf's thread: resolve there, then hand a hint to trio.
        if state_change is ServiceStateChange.Removed:
            return
        found = zeroconf.get_service_info(service_type, name, timeout=2000)
        if found is None or found.port is None:
            return
        props = {
            k.decode(errors="replace"): (v or b"").decode(errors="replace")
            for k, v in found.properties.items()
        }
        if props.get("net") != network or props.get("peer") == me:
            return
        try:
            remote = PeerId.parse(props.get("peer", ""))
        except PeerIdError:
            return  # garbage on the LAN: ignore it
        for address in found.parsed_addresses():
            hint = PeerHint(link_url(address, found.port), remote, "mdns")
            try:
                trio.from_thread.run_sync(hints.send_nowait, hint, trio_token=token)
            except (trio.WouldBlock, trio.ClosedResourceError, trio.RunFinishedError):
                return

    try:
        await trio.to_thread.run_sync(zc.register_service, info)
        browser = ServiceBrowser(zc, MDNS_SERVICE_TYPE, handlers=[on_change])
        log.info("mdns announcing", extra={"service": info.name, "port": port})
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            browser.cancel()
    finally:
        # Goodbye packets are a courtesy: give them a moment, never hold up shutdown.
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + MDNS_CLOSE_GRACE_S
            await trio.to_thread.run_sync(zc.close, abandon_on_cancel=True)
