"""Notifier URLs under the address policy, as hosts are: checked when given (a literal address)
and again on every delivery on what the name resolves to; the request then goes to that one
checked address (no second lookup to rebind, no redirects followed).

The policy is DOCKFLEET_NOTIFIER_ALLOWED_NETWORKS, by default the hosts' own
DOCKFLEET_ALLOWED_NETWORKS (`loopback,private`): a LAN ntfy or Home Assistant works as is;
a public Discord or Slack hook needs the policy to allow it explicitly (`*`, or its CIDRs).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from app.config import Network, address_allowed

MAX_URL = 2000
SETTING = "DOCKFLEET_NOTIFIER_ALLOWED_NETWORKS"


class AddressError(ValueError):
    """A URL that cannot be used; the message never contains its path, query or userinfo."""


@dataclass(frozen=True)
class Target:
    """Where one request goes: the URL to the checked address, the Host header, the SNI name."""

    url: str
    host_header: str
    sni: str | None


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def check_url(url: str, networks: list[Network | str]) -> None:
    """AddressError when the URL is not http(s) with a host, or names an address outside the
    policy (a name is checked when it is resolved, at every delivery)."""
    if len(url) > MAX_URL:
        raise AddressError(f"longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise AddressError("not a URL (bad host or port)") from None
    if parts.scheme not in ("http", "https"):
        raise AddressError("must be an http:// or https:// URL")
    if not parts.hostname:
        raise AddressError("has no host")
    if parts.username or parts.password:
        raise AddressError("must not carry a user or password (use `secret`)")
    if port == 0:
        raise AddressError("port 0")
    ip = _literal(parts.hostname)
    if ip is not None and not address_allowed(ip, networks):
        raise AddressError(f"{ip} is outside {SETTING}")


def masked(url: str) -> str:
    """Scheme, host and port only: `https://discord.com/…` (paths and queries carry tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(invalid URL)"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}{port}/…"


async def resolve(url: str, networks: list[Network | str], deadline: float) -> Target:
    """The checked address the request goes to (AddressError when none may be used)."""
    check_url(url, networks)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    ip = _literal(host)
    if ip is None:
        try:
            async with asyncio.timeout(deadline):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
        except TimeoutError:
            raise AddressError(f"resolving {host} timed out") from None
        except OSError:
            raise AddressError(f"cannot resolve {host}") from None
        addresses = [str(info[4][0]) for info in infos]
        allowed = [a for a in addresses if address_allowed(a, networks)]
        if not allowed:
            raise AddressError(f"{host} resolves outside {SETTING}")
        ip = allowed[0]
    netloc = f"[{ip}]" if ":" in ip else ip
    if parts.port:
        netloc += f":{parts.port}"
    host_header = host if not parts.port else f"{host}:{parts.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    sni = host if parts.scheme == "https" and _literal(host) is None else None
    return Target(pinned, host_header, sni)
