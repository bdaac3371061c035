"""Address guard: the crawler never connects to loopback, private, link-local or metadata addresses.

A page can link to (or redirect to) ``http://169.254.169.254/``, ``http://10.0.0.5/`` or a host
name that resolves to one of those; fetching it would let the crawled site probe the network the
crawler runs in (SSRF). The guard works at two levels:

* :class:`crawlers.middlewares.AddressGuardMiddleware` (downloader middleware, first in the chain)
  resolves the host of every request (``getaddrinfo``: all IPv4 and IPv6 addresses) and refuses
  the request when ANY address is not public - the URL is recorded as ``blocked_address``;
* :class:`GuardedResolver` is the reactor's name resolver (``TWISTED_DNS_RESOLVER``): every
  connection the crawl makes (robots.txt included) resolves through it and it refuses blocked
  addresses at connect time, so a DNS answer that changes between the check and the connection
  (DNS rebinding) cannot get through either.

Addresses or networks listed in ``allow_addresses`` (setting ``DATASET_PLATFORM_ALLOW_ADDRESSES``)
pass, e.g. ``["127.0.0.1"]`` for a site served on this machine - on the ports an entry names
(``127.0.0.1:8080``), or, for an entry without a port, on the crawl's own ports only (those of its
start and sitemap URLs, setting ``DATASET_PLATFORM_OWN_PORTS``): allowing 127.0.0.1 for a site on
port 8080 does not open every other service of the machine to the crawled pages' links.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from scrapy.exceptions import IgnoreRequest
from scrapy.resolver import CachingThreadedResolver
from twisted.internet.error import DNSLookupError

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Cloud instance-metadata endpoints (checked before the general categories).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS DNS resolver
        "169.254.169.123",  # AWS time sync
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "fd00:ec2::254",  # AWS IPv6
        "fd00:ec2::253",
    )
)
#: Host names of metadata services and of this machine (refused without resolving them).
METADATA_HOSTNAMES = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.internal",
        "metadata.tencentyun.com",
        "localhost",
        "localhost.localdomain",
    }
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_RFC1918 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def classify_address(ip: str | IPAddress) -> str | None:
    """Why the crawler must not connect to ``ip`` (a category name), or None for a public address.

    Categories: ``metadata``, ``unspecified``, ``loopback``, ``link_local``, ``private`` (RFC 1918),
    ``unique_local`` (fc00::/7), ``shared`` (100.64/10), ``multicast``, ``reserved`` (every other
    non-global block: documentation, benchmarking, 240/4, broadcast, IETF...). IPv4-mapped,
    6to4 and Teredo IPv6 addresses are judged by the IPv4 address they carry. Raises ValueError for
    something that is not an IP address.
    """
    addr = ipaddress.ip_address(ip.strip("[]") if isinstance(ip, str) else ip)
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.scope_id:  # fe80::1%eth0
            addr = ipaddress.IPv6Address(str(addr).split("%", 1)[0])
        embedded = addr.ipv4_mapped or addr.sixtofour or (addr.teredo[1] if addr.teredo else None)
        if embedded is not None:
            inner = classify_address(embedded)
            if inner is not None:
                return inner
            if addr.ipv4_mapped is not None:
                return None  # ::ffff:8.8.8.8 is 8.8.8.8
    if addr in METADATA_ADDRESSES:
        return "metadata"
    if addr.is_unspecified or (isinstance(addr, ipaddress.IPv4Address) and addr in _THIS_NETWORK):
        return "unspecified"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link_local"
    if addr.is_multicast:
        return "multicast"
    if isinstance(addr, ipaddress.IPv4Address) and addr in _SHARED:
        return "shared"
    if isinstance(addr, ipaddress.IPv6Address) and addr in ipaddress.IPv6Network("fc00::/7"):
        return "unique_local"
    if isinstance(addr, ipaddress.IPv4Address) and any(addr in n for n in _RFC1918):
        return "private"
    if addr.is_private or addr.is_reserved or not addr.is_global:
        return "reserved"
    return None


def classify_hostname(host: str) -> str | None:
    """Why a host NAME must be refused without resolving it (metadata names, localhost), or None."""
    h = host.strip().rstrip(".").lower()
    if h in METADATA_HOSTNAMES:
        return "loopback" if h.startswith("localhost") else "metadata"
    if h.endswith(".localhost"):
        return "loopback"
    return None


def parse_networks(items: Iterable[str]) -> tuple[tuple[IPNetwork, int | None], ...]:
    """(network, port or None) of ``allow_addresses`` entries (an address is a /32 or /128). Raises ValueError."""
    from dataset_platform.contracts.crawl import split_allow_entry

    out = []
    for x in items:
        host, port = split_allow_entry(x)
        out.append((ipaddress.ip_network(host, strict=False), port))
    return tuple(out)


def url_port(scheme: str, port: int | None) -> int:
    """The port a URL connects to."""
    return port if port else (443 if scheme == "https" else 80)


class AddressPolicy:
    """Which addresses a crawl may connect to: public ones, plus the allowed networks (on their own
    ports, or on ``own_ports`` - the crawl's start URLs' ports - for an entry without one; any port
    when ``own_ports`` is empty)."""

    def __init__(self, allow: Sequence[str] = (), own_ports: Iterable[int] = ()) -> None:
        self.allowed = parse_networks(allow)
        self.own_ports = frozenset(int(p) for p in own_ports)

    def is_allowed(self, ip: str | IPAddress, port: int | None = None) -> bool:
        """Whether ``ip`` is in an allowed network (and, when ``port`` is given, allowed on that port)."""
        addr = ipaddress.ip_address(ip.strip("[]") if isinstance(ip, str) else ip)
        for net, allowed_port in self.allowed:
            if addr.version != net.version or addr not in net:
                continue
            if port is None or (allowed_port == port if allowed_port is not None
                                else not self.own_ports or port in self.own_ports):
                return True
        return False

    def refused(self, ip: str | IPAddress, port: int | None = None) -> str | None:
        """The category of ``ip`` (on ``port``) when the crawl must not connect to it, else None."""
        category = classify_address(ip)
        if category is None or self.is_allowed(ip, port):
            return None
        if port is not None and self.is_allowed(ip):
            return f"{category}, port {port} not allowed"
        return category

    def refused_host(self, host: str, port: int | None = None) -> tuple[str, str] | None:
        """(address or name, category) when ``host`` itself (a literal IP address or a refused
        name) must not be connected to (on ``port``); None when it is allowed or must be resolved first."""
        h = host.strip("[]")
        try:
            ipaddress.ip_address(h)
        except ValueError:
            category = classify_hostname(h)
            return (h.lower(), category) if category else None
        category = self.refused(h, port)
        return (_with_port(h, port) if category and "port" in category else h, category) if category else None

    @classmethod
    def from_settings(cls, settings: Any) -> AddressPolicy:
        return cls(settings.getlist("DATASET_PLATFORM_ALLOW_ADDRESSES"),
                   [int(p) for p in settings.getlist("DATASET_PLATFORM_OWN_PORTS")])


def _with_port(address: str, port: int | None) -> str:
    return address if port is None else (f"[{address}]:{port}" if ":" in address else f"{address}:{port}")


class BlockedAddress(IgnoreRequest):
    """A request refused because its host is (or resolves to) a refused address."""

    def __init__(self, address: str, category: str) -> None:
        super().__init__(f"refused address {address} ({category})")
        self.address = address
        self.category = category


#: host -> refused address, for hosts refused by the resolver at connect time (read by the spider).
REFUSED_AT_CONNECT: dict[str, str] = {}


class GuardedResolver(CachingThreadedResolver):
    """Scrapy's caching resolver that refuses to hand out refused addresses.

    The HTTP/1.1 download handler connects through ``HostnameEndpoint``, which resolves every host
    (IP literals included) through the reactor's resolver: this one.
    """

    def __init__(self, reactor: Any, cache_size: int, timeout: float, policy: AddressPolicy) -> None:
        super().__init__(reactor, cache_size, timeout)
        self.policy = policy

    @classmethod
    def from_crawler(cls, crawler: Any, reactor: Any) -> GuardedResolver:
        s = crawler.settings
        cache_size = s.getint("DNSCACHE_SIZE") if s.getbool("DNSCACHE_ENABLED") else 0
        return cls(reactor, cache_size, s.getfloat("DNS_TIMEOUT"), AddressPolicy.from_settings(s))

    def getHostByName(self, name: str, timeout: Sequence[int] = ()) -> Deferred[str]:
        refused = self.policy.refused_host(name)
        if refused is not None:
            REFUSED_AT_CONNECT[name.lower()] = refused[0]
            from twisted.internet import defer

            return defer.fail(DNSLookupError(f"refused address {refused[0]} ({refused[1]}) for {name}"))
        d = super().getHostByName(name, timeout)

        def check(address: str) -> str:
            category = self.policy.refused(address)
            if category is not None:
                REFUSED_AT_CONNECT[name.lower()] = address
                raise DNSLookupError(f"refused address {address} ({category}) for {name}")
            return address

        return d.addCallback(check)
