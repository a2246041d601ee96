"""The SSRF guard: which webhook URLs the service may call, and at which addresses.

Check a URL when an endpoint is registered (to refuse it with a clear reason) and again just
before every delivery (DNS answers change), then deliver to the addresses this check returned:
``transport.deliver`` connects to them and never resolves the name again, so there is no window
between the check and the connection for a rebinding DNS answer to slip through.

An operator may let production reach networks it vouches for
(``ALERTSHARE_WEBHOOK_ALLOWED_NETWORKS``): a partnership whose agencies' receivers sit on a
private network (the PSN, say) lists it. The metadata addresses stay refused whatever is listed.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any
from urllib.parse import quote, urlsplit

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network
# socket.getaddrinfo's shape; tests pass a stand-in so no real DNS is needed.
Resolve = Callable[[str, int], Iterable[tuple[Any, Any, Any, Any, tuple[Any, ...]]]]

DEFAULT_PORTS = {"http": 80, "https": 443}

# ipaddress (3.11) files these under is_private, which would make the reason misleading.
_PRIVATE = tuple(map(IPv4Network, ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))) + (
    IPv6Network("fc00::/7"),
)
_SHARED = IPv4Network("100.64.0.0/10")
# NAT64's well-known prefix carries an IPv4 address in its last 32 bits (RFC 6052).
_NAT64 = IPv6Network("64:ff9b::/96")
# Cloud instance-metadata services (AWS, Azure, GCP, OpenStack on 169.254.169.254; AWS's IPv6
# one on fd00:ec2::254) hand the machine's credentials to whoever asks from it. An allowed
# network may well contain one (169.254.0.0/16 or fd00::/8 for receivers on a private network),
# and any agency that may register a webhook could then aim the worker at it: never allowed.
METADATA_ADDRESSES = frozenset({IPv4Address("169.254.169.254"), IPv6Address("fd00:ec2::254")})


class UnsafeTarget(ValueError):
    """A webhook URL the service will not call; ``reason`` is one line, fit for an API caller."""

    def __init__(self, reason: str, *, address: str | None = None, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        # A name that does not resolve may be a resolver outage: worth retrying, not refusing.
        self.transient = transient
        # For logs only: telling a caller what its name resolved to would map internal DNS.
        self.address = address


@dataclass(frozen=True)
class CheckedTarget:
    """A checked webhook URL, with the addresses to connect to, in the resolver's order."""

    scheme: str
    hostname: str
    port: int
    path: str
    addresses: tuple[IPAddress, ...]

    @property
    def url(self) -> str:
        """Return the URL as checked (for logs and messages)."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        default = DEFAULT_PORTS[self.scheme] == self.port
        return f"{self.scheme}://{host}{'' if default else f':{self.port}'}{self.path}"


def allowed_networks(value: str | Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Return the networks of ``ALERTSHARE_WEBHOOK_ALLOWED_NETWORKS`` (comma-separated CIDRs,
    such as ``10.20.0.0/16,2001:db8:5::/48``; empty for none), or raise ``ValueError`` naming the
    first entry that is not one."""
    items = value.split(",") if isinstance(value, str) else value
    networks: list[IPNetwork] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            # Strict: 10.1.2.3/8 is more likely a typing slip than a wish for all of 10/8.
            network = ip_network(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a network in CIDR notation, such as 10.20.0.0/16"
            ) from None
        if network.prefixlen == 0:
            raise ValueError(f"{text} would let webhooks reach every address; list networks")
        networks.append(network)
    return tuple(networks)


def check_url(
    url: str,
    *,
    production: bool,
    allowed: Iterable[IPNetwork] = (),
    resolve: Resolve = socket.getaddrinfo,
) -> CheckedTarget:
    """Return ``url`` checked and resolved, or raise ``UnsafeTarget`` saying why not.

    In production only ``https`` is allowed and every address the host resolves to must be
    globally routable or in one of the ``allowed`` networks, and never a metadata address (one
    bad answer refuses the URL, since any of them may be the one used). In development ``http``
    is allowed too and any address is, so tests can call 127.0.0.1.
    """
    if any(char <= " " or char == "\x7f" for char in url):
        raise UnsafeTarget("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        # A bad port or an unclosed IPv6 bracket.
        raise UnsafeTarget("the URL is not valid") from None
    scheme = parts.scheme.lower()
    schemes = ("https",) if production else ("https", "http")
    if scheme not in schemes:
        raise UnsafeTarget(f"the URL must use {' or '.join(schemes)}")
    if "@" in parts.netloc:
        raise UnsafeTarget("the URL must not contain a user name or password")
    if "#" in url:
        raise UnsafeTarget("the URL must not contain a fragment")
    hostname = _hostname(parts.hostname)
    if port == 0:
        raise UnsafeTarget("the URL's port is not valid")
    port = port or DEFAULT_PORTS[scheme]
    addresses = _addresses(hostname, port, resolve)
    if production:
        networks = tuple(allowed)
        for address in addresses:
            if (refusal := _refusal(address, networks)) is not None:
                raise UnsafeTarget(f"the host resolves to {refusal}", address=str(address))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # HTTP request lines are ASCII; percent-encode the rest, keeping any existing escapes.
    path = quote(path, safe="/?%!$&'()*+,;=:@")
    return CheckedTarget(scheme, hostname, port, path, addresses)


def _hostname(raw: str | None) -> str:
    if not raw:
        raise UnsafeTarget("the URL has no host")
    if "%" in raw:
        raise UnsafeTarget("the URL's host must not carry an IPv6 zone")
    try:
        # The A-label form is what DNS, SNI and the Host header all expect.
        hostname = raw.encode("idna").decode("ascii").rstrip(".")
    except UnicodeError:
        raise UnsafeTarget("the URL's host name is not valid") from None
    if not hostname:
        raise UnsafeTarget("the URL has no host")
    return hostname


def _addresses(hostname: str, port: int, resolve: Resolve) -> tuple[IPAddress, ...]:
    try:
        return (ip_address(hostname),)
    except ValueError:
        pass
    try:
        answers = resolve(hostname, port)
        # getaddrinfo repeats each address once per socket type; keep the first of each.
        found = dict.fromkeys(ip_address(answer[4][0]) for answer in answers)
    except (OSError, UnicodeError, ValueError):
        raise UnsafeTarget("the host name does not resolve", transient=True) from None
    if not found:
        raise UnsafeTarget("the host name does not resolve", transient=True)
    return tuple(found)


def _refusal(address: IPAddress, allowed: tuple[IPNetwork, ...] = ()) -> str | None:
    """Return what kind of address this is if production must not call it, else None."""
    if isinstance(address, IPv6Address):
        # Judge an address that reaches an IPv4 host as that host (Python 3.11 calls
        # ::ffff:127.0.0.1 neither loopback nor private, and 6to4 of 10/8 "global").
        embedded = address.ipv4_mapped or (
            IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None
        )
        if embedded is not None:
            return _refusal(embedded, allowed)
        if address.sixtofour is not None and (refusal := _refusal(address.sixtofour, allowed)):
            return refusal
    if address not in METADATA_ADDRESSES and any(address in net for net in allowed):
        return None
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if isinstance(address, IPv4Address) and address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if any(address in network for network in _PRIVATE):
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "an address that is not globally routable"
    return None
