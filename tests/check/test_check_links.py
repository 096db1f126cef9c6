"""`mailer check --links` against a local HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import Result

from mailer.check.links import check_urls
from tests.check.conftest import ISSUE, edit

STUDY = f"{ISSUE}/study-tour-usa.md"
OTHER = f"{ISSUE}/monitoring-groups-all-regions.md"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    requests: Counter[tuple[str, str]]


class Handler(BaseHTTPRequestHandler):
    server: Server

    def _answer(self) -> None:
        self.server.requests[(self.command, self.path)] += 1
        port = self.server.server_address[1]
        status, headers = {
            "/ok": (200, {}),
            "/missing": (404, {}),
            "/broken": (500, {}),
            "/moved": (301, {"Location": f"http://localhost:{port}/ok"}),  # another host name
            "/here-too": (302, {"Location": "/ok"}),  # same host: followed
            "/no-head": (405 if self.command == "HEAD" else 200, {}),
        }.get(self.path, (404, {}))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = _answer
    do_GET = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_links_only(workdir: Path) -> None:
    """The copy without the sample's four example.org links: tests reach 127.0.0.1 only."""
    for path in (workdir / ISSUE).glob("*.md"):
        lines = path.read_text(encoding="utf-8").split("\n")
        path.write_text("\n".join(x for x in lines if not x.startswith("link: ")), "utf-8")
    assert "example.org" not in "".join(p.read_text() for p in (workdir / ISSUE).glob("*.md"))


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.requests = Counter()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.usefixtures("local_links_only")
def test_links_answer_or_are_reported_at_their_lines(
    check: Callable[..., Result], workdir: Path, server: Server
) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    links = " ".join(
        f"[{name}]({base}/{name})"
        for name in ("ok", "missing", "broken", "moved", "here-too", "no-head")
    )
    edit(workdir / STUDY, "For example, meetings", f"{links} For example, meetings")  # line 10
    edit(workdir / OTHER, "\n---\n", f"\nlink: {base}/ok\n---\n")  # the same URL again: line 3
    manifest = workdir / ISSUE / "issue.toml"
    edit(manifest, "This publication is", f"This [publication]({base}/missing) is")  # line 12
    result = check("--links")
    assert result.exit_code == 1, result.output
    lines = result.stdout.rstrip("\n").split("\n")
    assert lines == [
        f"{ISSUE}/issue.toml:12: error: {base}/missing: the server answers 404",
        f"{STUDY}:10: error: {base}/missing: the server answers 404",  # in the text's order
        f"{STUDY}:10: error: {base}/broken: the server answers 500",
        f"{STUDY}:10: warning: {base}/moved: redirects (301) to another host: "
        f"http://localhost:{server.server_address[1]}/ok",
        f"{ISSUE}: 3 errors, 1 warning",
    ]
    requests = server.requests
    assert requests[("HEAD", "/ok")] == 2  # once for /ok (both articles), once after /here-too
    assert requests[("HEAD", "/no-head")] == 1 and requests[("GET", "/no-head")] == 1
    assert requests[("GET", "/ok")] == 0  # GET only where HEAD is refused
    assert requests[("HEAD", "/moved")] == 1
    assert sum(n for (_, path), n in requests.items() if path == "/ok" or path == "/moved") == 3
    assert ("HEAD", "/missing") in requests and ("GET", "/missing") not in requests


def test_without_links_nothing_is_asked(
    check: Callable[..., Result], workdir: Path, server: Server
) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    edit(workdir / STUDY, "For example, meetings", f"[gone]({base}/missing) For example")
    result = check()
    assert result.exit_code == 0, result.output
    assert server.requests == Counter()


def test_one_request_per_unique_url_and_no_answer_is_an_answer(server: Server) -> None:
    base = f"http://127.0.0.1:{server.server_address[1]}"
    answers = check_urls([f"{base}/ok"] * 5 + [f"{base}/missing", "http://127.0.0.1:9/"])
    assert server.requests == Counter({("HEAD", "/ok"): 1, ("HEAD", "/missing"): 1})
    assert answers[f"{base}/ok"].problem == "" and answers[f"{base}/ok"].status == 200
    assert answers[f"{base}/missing"].broken and answers[f"{base}/missing"].status == 404
    refused = answers["http://127.0.0.1:9/"]  # nothing listens on the discard port
    assert refused.broken and refused.status is None
    assert refused.problem.startswith("no answer from the server")
