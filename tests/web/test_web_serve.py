"""`mailer serve` as a real process: uvicorn answering on a free port."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from mailer.store import schema
from mailer.store.db import open_store

from .helpers import add_issue


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serving(cwd: Path, env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`mailer serve --port PORT` in ``cwd``, stopped on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", "mailer", "serve", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.communicate(timeout=10)  # also closes the pipe


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(process.stdout.read().decode() if process.stdout else "exited")
        try:
            if httpx2.get(url, timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} did not come up")


def serve_env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env["MAILER_DATABASE_URL"] = database_url
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def test_mailer_serve_answers(config_env: Path, database_url: str) -> None:
    store = open_store(database_url, check_schema=False)
    schema.upgrade(store.engine)
    add_issue(store, 25, subject="May news")
    store.close()
    port = free_port()
    with serving(config_env, serve_env(database_url), port) as process:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz", process)
        page = httpx2.get(f"{base}/")
        assert "May news" in page.text
        assert page.headers["X-Frame-Options"] == "DENY"
        assert "server" not in page.headers  # no version banner
        assert httpx2.get(f"{base}/issues/025-issue").status_code == 200


def test_mailer_serve_refuses_an_unreachable_database(config_env: Path) -> None:
    url = f"sqlite:///{config_env / 'missing' / 'list.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "mailer", "serve", "--port", str(free_port())],
        cwd=config_env,
        env=serve_env(url),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: cannot open database")
    assert "Traceback" not in result.stderr


def test_mailer_serve_refuses_a_database_without_the_schema(config_env: Path) -> None:
    url = f"sqlite:///{config_env / 'empty.db'}"
    open_store(url, check_schema=False).close()  # a database file, never migrated
    result = subprocess.run(
        [sys.executable, "-m", "mailer", "serve", "--port", str(free_port())],
        cwd=config_env,
        env=serve_env(url),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert "upgrade" in result.stderr


def test_asgi_factory_under_uvicorn_reads_mailer_config(
    config_env: Path, database_url: str, tmp_path: Path
) -> None:
    store = open_store(database_url, check_schema=False)
    schema.upgrade(store.engine)
    add_issue(store, 25, subject="May news")
    store.close()
    env = serve_env(database_url)
    env["MAILER_CONFIG"] = str(config_env / "mailer.toml")
    port = free_port()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    command = [sys.executable, "-m", "uvicorn", "--factory", "mailer.web:create_app"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--no-access-log"],
        cwd=elsewhere,  # the config comes from MAILER_CONFIG, not the working directory
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
        page = httpx2.get(f"http://127.0.0.1:{port}/")
        assert "May news" in page.text and "Democracy in Uzbekistan" in page.text
    finally:
        process.terminate()
        process.communicate(timeout=10)  # also closes the pipe


def migrated(database_url: str) -> None:
    store = open_store(database_url, check_schema=False)
    schema.upgrade(store.engine)
    store.close()


def test_mailer_serve_on_a_port_in_use_is_one_line_and_exit_1(
    config_env: Path, database_url: str
) -> None:
    migrated(database_url)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mailer", "serve", "--port", str(port)],
            cwd=config_env,
            env=serve_env(database_url),
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"error: cannot listen on 127.0.0.1:{port}: address already in use\n"


def test_mailer_serve_on_an_address_it_cannot_have_is_one_line(
    config_env: Path, database_url: str
) -> None:
    migrated(database_url)
    result = subprocess.run(
        [sys.executable, "-m", "mailer", "serve", "--host", "192.0.2.1", "--port", "0"],
        cwd=config_env,
        env=serve_env(database_url),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "error: cannot listen on 192.0.2.1:0: cannot assign requested address\n"
    )


def test_mailer_serve_port_0_prints_the_port_it_got(config_env: Path, database_url: str) -> None:
    migrated(database_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "mailer", "serve", "--port", "0"],
        cwd=config_env,
        env=serve_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.match(r"serving .* on http://127\.0\.0\.1:(\d+) \(public URL ", line)
        assert found, line
        port = int(found[1])
        assert port != 0
        wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
    finally:
        process.terminate()
        process.communicate(timeout=10)


# Folder names an editor may give an issue: spaces, URL delimiters, %, non-ASCII; and a / and
# a %2F, which a slug from elsewhere than a folder might hold.
ODD_SLUGS = ["a b", "a#b", "a?b=c", "100%", "a%2Fb", "a/b", "ü-é", "a+b&c;d", '<"x">', "a\\b"]


def test_every_slug_is_percent_encoded_and_its_url_answers(
    config_env: Path, database_url: str
) -> None:
    """Through a real server (the test client decodes paths twice): the archive's links and
    the feed's resolve to each issue's own page."""
    import datetime as dt
    import xml.etree.ElementTree as ET
    from urllib.parse import urljoin

    from mailer.store.models import Issue, IssueState

    migrated(database_url)
    store = open_store(database_url)
    with store.session() as session, session.begin():
        for number, slug in enumerate(ODD_SLUGS, 1):
            session.add(
                Issue(
                    slug=slug,
                    number=number,
                    subject=f"Issue {number}",
                    date="2022-05-05",
                    content_hash="0" * 64,
                    state=IssueState.SENT,
                    web_html=f"<p>issue {number}</p>",
                    sent_at=dt.datetime.now(dt.UTC),
                )
            )
    store.close()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = serve_env(database_url)
    env["MAILER_BASE_URL"] = base
    with serving(config_env, env, port) as process:
        wait_until_up(f"{base}/healthz", process)
        page = httpx2.get(f"{base}/").text
        links = dict(
            (int(number), href)
            for href, number in re.findall(r'<a href="([^"]+)">Issue (\d+)</a>', page)
        )
        feed = ET.fromstring(httpx2.get(f"{base}/feed.xml").content)
        atom = "{http://www.w3.org/2005/Atom}"
        feed_links = {
            int((entry.findtext(f"{atom}title") or "").split()[1]): entry.findtext(f"{atom}id")
            for entry in feed.iter(f"{atom}entry")
        }
        assert sorted(links) == sorted(feed_links) == list(range(1, len(ODD_SLUGS) + 1))
        for number, slug in enumerate(ODD_SLUGS, 1):
            href = links[number]
            assert href.startswith("issues/") and "/" not in href.removeprefix("issues/"), href
            for url in (urljoin(f"{base}/", href), feed_links[number]):
                assert url == f"{base}/{href}"
                answer = httpx2.get(url)
                assert (answer.status_code, answer.text) == (200, f"<p>issue {number}</p>"), slug
