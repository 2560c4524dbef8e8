"""Which client cast a vote when the server sits behind proxies (``CMS_TRUSTED_PROXIES``).

``X-Forwarded-For`` is written by whoever sends the request, so it is believed only as far as it
was written by proxies this server trusts: each proxy appends the address it heard from, so,
reading from the right, the first address that is not a trusted proxy's is the client. Anything
to its left came from the client and is ignored. A header that is not a list of addresses where
it matters is not believed at all: the client is then the peer itself.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

Address = IPv4Address | IPv6Address

# A real chain of proxies is a handful long; past this many hops the header is not believed.
MAX_HOPS = 32


def parse_address(text: str) -> Address | None:
    """An IP address, with IPv4-mapped IPv6 (a dual-stack socket's view) read as IPv4."""
    try:
        address = ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: tuple[IPv4Network | IPv6Network, ...] = tuple(
            ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())

    def __contains__(self, address: Address) -> bool:
        return any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: Sequence[str]) -> str:
        """The client's address, from the peer and the ``X-Forwarded-For`` headers, in order."""
        direct = parse_address(peer)
        if direct is None:
            return peer  # not an IP socket (a test client): nothing to normalise or trust
        if direct not in self or not forwarded_for:
            return str(direct)
        hops = ",".join(forwarded_for).split(",")
        if len(hops) > MAX_HOPS:
            return str(direct)
        hop: Address | None = direct
        for text in reversed(hops):
            hop = parse_address(text)
            if hop is None:
                return str(direct)  # garbled by or after a trusted proxy: believe none of it
            if hop not in self:
                return str(hop)
        # Every hop is a trusted proxy: the left-most is the furthest back anyone vouches for.
        return str(hop)


@functools.lru_cache(maxsize=8)
def trusted_proxies(entries: tuple[str, ...]) -> TrustedProxies:
    """Parsed once per setting, not on every vote."""
    return TrustedProxies(entries)
