"""Who may talk to the HTTP transports: the bearer token, the Host and Origin lists.

The checks themselves are the SDK's: its bearer middleware (401 without a valid token) and its
transport security middleware (421 for a Host, 403 for an Origin not on the list). This module
only decides what goes on the lists.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket

from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings

from .config import Config, is_loopback

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class StaticTokenVerifier:
    """Accepts exactly one token (compared in constant time); the SDK's ``TokenVerifier`` protocol."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode(), self._token):
            return AccessToken(token=token, client_id="agent-jobs-token", scopes=[])
        return None


def auth_settings(base_url: str) -> AuthSettings:
    """The SDK wants an issuer URL even for a plain resource server; with no auth provider it is never used."""
    return AuthSettings(issuer_url=base_url, resource_server_url=None, required_scopes=None)


def _host_header_name(address: str) -> str:
    try:
        if ipaddress.ip_address(address.strip("[]")).version == 6:
            return f"[{address.strip('[]')}]"
    except ValueError:
        pass
    return address


def _local_addresses() -> list[str]:
    """Every address and name this machine answers to, for a wildcard bind (0.0.0.0 or ::)."""
    import psutil

    names = {socket.gethostname(), socket.getfqdn()}
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                names.add(addr.address.split("%", 1)[0])
    return sorted(n for n in names if n)


def allowed_hosts(cfg: Config, port: int) -> list[str]:
    """Host headers accepted: loopback names with the port, plus the bound address's names, plus ``--allowed-host``.

    On a wildcard bind the machine's host names and interface addresses are accepted (with the
    port): a client reaching the server by any of them is fine; a foreign name (DNS rebinding) is not.
    """
    names = list(LOOPBACK_NAMES)
    if not is_loopback(cfg.host) or cfg.host not in ("127.0.0.1", "localhost", "::1"):
        try:
            wildcard = ipaddress.ip_address(cfg.host.strip("[]")).is_unspecified
        except ValueError:
            wildcard = False
        names += _local_addresses() if wildcard else [cfg.host]
    hosts = [f"{_host_header_name(name)}:{port}" for name in dict.fromkeys(names)]
    return [*dict.fromkeys(hosts), *cfg.allowed_hosts]


def allowed_origins(cfg: Config, hosts: list[str]) -> list[str]:
    """Origin headers accepted: the server's own origins (http or https and an allowed Host), plus ``--allowed-origin``.

    A page served from the very address a client reaches the server by is the server's own
    origin, as a browser (or the MCP conformance suite) sends it; a DNS-rebinding page has a
    foreign Host, refused before its Origin is looked at. ``name:*`` hosts give ``scheme://name:*``,
    which the SDK reads as any port.
    """
    own = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    return [*dict.fromkeys([*own, *cfg.allowed_origins])]


def transport_security(cfg: Config, port: int) -> TransportSecuritySettings:
    """DNS-rebinding protection, always on: Host from :func:`allowed_hosts`, Origin the same hosts or listed."""
    hosts = allowed_hosts(cfg, port)
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=hosts,
        allowed_origins=allowed_origins(cfg, hosts),
    )
