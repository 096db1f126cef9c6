"""Who the client is: the socket peer, or what trusted reverse proxies say it is.

``X-Forwarded-For`` is a list every proxy appends the address it saw to; anyone can send
one, so it is believed only when the socket peer is one of ``trusted_proxies``, and then
only as far as the proxies go: the client is the rightmost address that is not a trusted
proxy (the left part may be the client's own invention). Without trusted proxies the socket
peer is the client, whatever the headers say.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(text: str) -> tuple[Network, ...]:
    """The ``trusted_proxies`` setting (already checked by mailer.settings) as networks."""
    return tuple(ipaddress.ip_network(item.strip()) for item in text.split(",") if item.strip())


def _address(text: str) -> Address | None:
    """An address as a proxy writes it: bare, or with a port (``1.2.3.4:80``, ``[::1]:80``)."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped:
        return found.ipv4_mapped  # ::ffff:1.2.3.4 is 1.2.3.4
    return found


def _trusted(address: Address, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks)


def client_ip(peer: str | None, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The client's address as text ("" when the peer is no IP address, e.g. a test client).

    ``forwarded_for``: every X-Forwarded-For header of the request, in order.
    """
    socket_peer = _address(peer or "")
    if socket_peer is None:
        return ""
    if not _trusted(socket_peer, trusted):
        return str(socket_peer)
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    client = socket_peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:  # garbage: the proxies' word ends at the last good hop
            break
        client = address
        if not _trusted(address, trusted):
            break
    return str(client)
