"""Is a link's target one that works in an email? (The ``links`` checks' first half: the
form of the URL; :mod:`mailer.check.links` asks the server.)

An email has no base URL, so a relative link leads nowhere; ``javascript:`` and ``data:``
are blocked or stripped by mail programs. What is left is an absolute http(s) URL with a
host name that can exist, ``mailto:`` an address, and ``tel:`` a number (which the build
accepts too).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import idna

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")
_PHONE = re.compile(r"^\+?[0-9 ().-]{3,}$")


def url_problem(url: str, *, image: bool = False) -> str | None:
    """Why ``url`` does not work as a link (or, with ``image``, as an image's src) in an
    email; None when it does."""
    if not url.strip():
        return "the link has no target"
    scheme_match = _SCHEME.match(url)
    scheme = scheme_match.group(1).lower() if scheme_match else ""
    if scheme == "javascript":
        return f"{_quote(url)} is a javascript: link, which mail programs block"
    if scheme == "data":
        return f"{_quote(url)} is a data: URL, which mail programs block or strip"
    if scheme in ("http", "https"):
        return _http_problem(url)
    if not scheme or re.match(r"^[a-zA-Z]:[\\/]", url):  # C:\... is a path, not a scheme
        return (
            f"{_quote(url)} is a relative link, which leads nowhere in an email: "
            "write the full https:// URL"
        )
    if image:
        return f"{_quote(url)} is not an http(s) URL: mail programs cannot load the image"
    if scheme == "mailto":
        address = url[len("mailto:") :].partition("?")[0]
        local, at, domain = address.partition("@")
        if not (local and at and domain and _host_ok(domain.strip())):
            return f"{_quote(url)} is not a valid mailto: link (mailto:name@example.org)"
        return None
    if scheme == "tel":
        return None if _PHONE.match(url[4:]) else f"{_quote(url)} is not a valid tel: number"
    return f"{_quote(url)} is not an http(s) or mailto: URL"


def _http_problem(url: str) -> str | None:
    bad = f"{_quote(url)} is not a valid http(s) URL"
    if any(c.isspace() for c in url):
        return f"{bad}: it contains a space (write %20)"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return bad
    if not url.split(":", 1)[1].startswith("//"):
        return f"{bad}: write {parts.scheme}://HOST/..."
    if not parts.hostname or not _host_ok(parts.hostname):
        return f"{bad}: the host name is missing or malformed"
    return None


def _host_ok(host: str) -> bool:
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    name = host.rstrip(".").lower()
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError:
            return False
    labels = name.split(".")
    return (len(labels) > 1 or name == "localhost") and all(_LABEL.match(x) for x in labels)


def _quote(url: str) -> str:
    return repr(url if len(url) <= 60 else url[:60] + "…")
