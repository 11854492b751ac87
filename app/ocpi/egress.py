"""Egress policy of the outbound OCPI client: which URLs and addresses a CPO may call.

Every URL a peer hands us (versions URL, endpoint URLs, `response_url`) is attacker-chosen, so:
- only `http`/`https`, a host, and no `user:password@` (it would replace Token B with Basic auth and
  end up stored and logged in the clear);
- the host is resolved first and every address it resolves to is checked; the connection then goes
  to a checked address (the client's network backend connects to the IP this module returned, so a
  second, different DNS answer cannot slip in between the check and the connect);
- loopback and this machine's own addresses (and the host of `public_base_url`), private ranges
  (RFC 1918, CGNAT 100.64/10, IPv6 ULA), link-local (cloud metadata lives there), multicast,
  unspecified and reserved ranges are refused.
  `egress_allow_loopback` lets loopback and this machine's own addresses through (tests, `make run`),
  `egress_allow_private` the private ranges; the others are never reachable.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from functools import lru_cache
from typing import Annotated

import httpx
from pydantic import AfterValidator, StringConstraints

from app.settings import Settings

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Ranges a deployment may legitimately share with its eMSPs (egress_allow_private).
PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


class UrlRefused(ValueError):
    """The URL itself is unusable (scheme, host, userinfo): refused before any DNS or network."""


class EgressRefused(Exception):
    """The destination address is not allowed by the egress policy."""


class UnresolvableHost(Exception):
    """DNS gave no address for the host (a network failure, not a policy decision)."""


def check_url(url: str) -> httpx.URL:
    """The parsed URL, or UrlRefused saying what is wrong with it."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise UrlRefused(f"malformed URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise UrlRefused("only http and https URLs are allowed")
    if parsed.userinfo:
        raise UrlRefused("URL must not contain credentials (user:password@); OCPI authenticates with the token")
    if not parsed.host:
        raise UrlRefused("URL has no host")
    return parsed


def _validate_peer_url(value: str) -> str:
    try:
        check_url(value)
    except UrlRefused as exc:
        raise ValueError(str(exc)) from None
    return value


# A URL a peer gives us to call later: checked on the way in, so a bad one is a 2001, never stored.
PeerUrl = Annotated[str, StringConstraints(min_length=1, max_length=255), AfterValidator(_validate_peer_url)]


def redact(url: str) -> str:
    """The URL with any userinfo masked, for logs and messages."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return "(malformed URL)"
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url


def _unwrap(ip: IpAddress) -> IpAddress:
    """IPv4-mapped / NAT64-free view: ::ffff:127.0.0.1 is 127.0.0.1 to the kernel."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=1)
def _bind_probe_works() -> bool:
    """False when the kernel lets us bind any address (ip_nonlocal_bind): the probe would lie."""
    return not _binds(ipaddress.ip_address("192.0.2.1"))  # TEST-NET-1: never assigned to a host


def _binds(ip: IpAddress) -> bool:
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((str(ip), 0))
        return True
    except OSError:
        return False


def is_own_address(ip: IpAddress) -> bool:
    """Assigned to an interface of this machine (where the platform itself listens)."""
    return _bind_probe_works() and _binds(ip)


class EgressPolicy:
    def __init__(self, settings: Settings) -> None:
        self.allow_loopback = settings.egress_allow_loopback
        self.allow_private = settings.egress_allow_private
        # Behind NAT our public name resolves to an address no interface has: refused by name.
        self.own_host = httpx.URL(settings.public_base_url).host.lower() if settings.public_base_url else None

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be called, or None when it may."""
        ip = _unwrap(ipaddress.ip_address(address))
        if ip.is_unspecified:
            return f"{ip} is the unspecified address"
        if ip.is_multicast:
            return f"{ip} is a multicast address"
        if ip.is_loopback:
            return None if self.allow_loopback else f"{ip} is a loopback address"
        if is_own_address(ip):  # this machine under another name: treated like loopback
            return None if self.allow_loopback else f"{ip} is an address of this platform"
        if ip.is_link_local:
            return f"{ip} is a link-local address"
        if any(ip in net for net in PRIVATE_NETWORKS if net.version == ip.version):
            return None if self.allow_private else f"{ip} is a private address"
        if not ip.is_global:
            return f"{ip} is a reserved (non-global) address"
        return None

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses `host` resolves to, all checked; EgressRefused if any is not allowed (a
        name mixing public and internal answers is refused rather than guessed at)."""
        if not self.allow_loopback and self.own_host and host.lower() == self.own_host:
            raise EgressRefused(f"{host} is this platform's public host")
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise UnresolvableHost(f"cannot resolve {host}: {exc}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            reason = self.refusal(address)
            if reason:
                raise EgressRefused(reason if address == host else f"{host} resolves to {reason}")
        if not addresses:
            raise UnresolvableHost(f"cannot resolve {host}")
        return addresses
