"""``mailer check --links``: does every link answer? The one module that goes on the network.

Each unique URL is asked once (a cache), by a small thread pool: HEAD first, then GET when
the server refuses HEAD (405, 501) or the HEAD fails. Redirects are followed by hand, so a
redirect to another host is seen (a moved page, a parked domain, a link shortener) and not
followed there. Contract: :func:`check_urls` takes URLs and returns one :class:`Answer` per
unique URL; it raises nothing (a failure is an answer). HTTPS certificates are verified.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from mailer import __version__

TIMEOUT_SECONDS = 10.0
WORKERS = 8
MAX_REDIRECTS = 5
USER_AGENT = f"mailer-check/{__version__} (link checker)"


@dataclass(frozen=True)
class Answer:
    url: str
    status: int | None  # the last HTTP status, None when no server answered
    problem: str = ""  # "" when the link works
    broken: bool = False  # an error (4xx, 5xx, no answer) rather than a warning (redirect)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the 3xx surfaces as an HTTPError, and _follow decides


_OPENER = urllib.request.build_opener(_NoRedirects())


def _ask(url: str, method: str, timeout: float) -> tuple[int, str]:
    """(status, Location) of one request; raises OSError when nothing answers."""
    request = urllib.request.Request(url, method=method, headers={"User-Agent": USER_AGENT})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, exc.headers.get("Location", "") if exc.headers else ""


def _request(url: str, timeout: float) -> tuple[int, str]:
    """HEAD, then GET on 405/501 or a failed HEAD."""
    try:
        status, location = _ask(url, "HEAD", timeout)
        if status not in (405, 501):
            return status, location
    except (OSError, ValueError, http.client.HTTPException):
        pass  # e.g. a server that drops HEAD requests: GET decides
    return _ask(url, "GET", timeout)


def check_url(url: str, timeout: float = TIMEOUT_SECONDS) -> Answer:
    current = url
    host = urlsplit(url).hostname
    for _ in range(MAX_REDIRECTS + 1):
        try:
            status, location = _request(current, timeout)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            return Answer(url, None, f"no answer from the server: {reason}", broken=True)
        if 300 <= status < 400 and location:
            target = urljoin(current, location)
            if urlsplit(target).hostname != host:
                return Answer(url, status, f"redirects ({status}) to another host: {target}")
            current = target
            continue
        if status >= 400:
            return Answer(url, status, f"the server answers {status}", broken=True)
        return Answer(url, status)
    return Answer(url, None, f"more than {MAX_REDIRECTS} redirects", broken=True)


def check_urls(
    urls: Iterable[str], *, workers: int = WORKERS, timeout: float = TIMEOUT_SECONDS
) -> dict[str, Answer]:
    """One answer per unique URL, asked in parallel by ``workers`` threads."""
    unique = list(dict.fromkeys(urls))
    if not unique:
        return {}
    with ThreadPoolExecutor(max_workers=min(workers, len(unique))) as pool:
        answers = pool.map(lambda u: check_url(u, timeout), unique)
        return {answer.url: answer for answer in answers}
