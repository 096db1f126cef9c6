"""Benchmark of the web app: one-click unsubscribes and the archive against a bare endpoint.

    PYTHONPATH=. python benchmarks/web.py [--subscribers 100000] [--seconds 10] [--connections 50]

Builds a temporary newsletter with a SQLite list of 100,000 subscribers (imported through the
store's CSV import) and a dozen sent issues, starts `mailer serve` (uvicorn, one worker) and,
under the same uvicorn settings, a bare Starlette "hello" endpoint (benchmarks/hello_app.py)
as the ceiling. Debian's `wrk` drives each on loopback (50 connections): one-click POSTs,
each with a distinct valid token; GETs of the archive page; GETs of the bare endpoint.
Prints requests/s, p50/p99 latency, errors and the ratio to the ceiling, then counts the
unsubscribed rows: every POST sent must be persisted. Targets (issue 5): POST >= 30% of
the ceiling, p99 < 50 ms, zero errors, every unsubscribe persisted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2
from _system import require_tool
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mailer.config import load_config  # noqa: E402
from mailer.store import schema  # noqa: E402
from mailer.store.csv_import import import_csv  # noqa: E402
from mailer.store.db import open_store  # noqa: E402
from mailer.store.models import Issue, IssueState, Subscriber, SubscriberStatus  # noqa: E402
from mailer.tokens import make_token  # noqa: E402

LUA = Path(__file__).resolve().parent / "web_load.lua"
UVICORN_FLAGS = ["--no-access-log", "--no-server-header", "--log-level", "warning"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def build_newsletter(folder: Path, subscribers: int) -> tuple[str, list[str]]:
    """A config folder with the list and a dozen sent issues; returns (db url, tokens)."""
    shutil.copy(REPO / "mailer.toml", folder / "mailer.toml")
    (folder / ".mailer-secret").write_text(secrets.token_urlsafe(32) + "\n")
    os.chdir(folder)
    config = load_config()
    store = open_store(config.database_url, check_schema=False)
    schema.upgrade(store.engine)
    started = time.perf_counter()
    rows = "".join(f"reader{i}@example.org,Reader {i}\n" for i in range(subscribers))
    import_csv(store, io.StringIO("email,name\n" + rows, newline=""))
    print(f"imported {subscribers:,} subscribers in {time.perf_counter() - started:.1f} s")
    with store.session() as session, session.begin():
        for number in range(14, 26):
            session.add(
                Issue(
                    slug=f"{number:03d}-issue",
                    number=number,
                    subject=f"Democracy in Uzbekistan #{number}",
                    date=f"{2021 + number // 13}-{number % 12 + 1:02d}-05",
                    content_hash="0" * 64,
                    state=IssueState.SENT,
                    web_html="<!doctype html><p>web version</p>",
                )
            )
    with store.session() as session:
        uids = list(session.scalars(select(Subscriber.uid).order_by(Subscriber.id)))
    store.close()
    keys = config.secret_keys()
    tokens = [make_token(keys, uid, 25) for uid in uids]
    secrets.SystemRandom().shuffle(tokens)  # spread the writes over the whole table
    return config.database_url, tokens


def start(command: list[str], cwd: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=cwd, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx2.get(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except httpx2.TransportError:
            if process.poll() is not None:
                raise SystemExit(f"{command[2:4]} exited with {process.returncode}") from None
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"{command} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=15)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str, seconds: int, connections: int, *script_args: str, pid: int = 0
) -> dict[str, float]:
    threads = 1  # the server has one worker; leave the other core to it
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    command += ["-s", str(LUA), url, "--", *script_args]
    if script_args and script_args[0] == "post":
        command.append(str(threads))
    cpu = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu if pid else 0.0
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    # Server CPU per request: steadier than req/s when other jobs share the host.
    result["cpu_us"] = cpu / max(result["requests"], 1) * 1e6
    return result


def median_round(results: list[dict[str, float]]) -> dict[str, float]:
    """The round with the median throughput (other processes on the host add noise)."""
    return sorted(results, key=lambda r: r["rps"])[len(results) // 2]


def report(name: str, result: dict[str, float], ceiling: dict[str, float] | None) -> None:
    errors = result["socket_errors"] + result["timeouts"] + result["not_ok"]
    ratio = f"{result['rps'] / ceiling['rps']:6.1%}" if ceiling else "   100%"
    print(
        f"{name:<22} {result['rps']:8.0f} req/s  p50 {result['p50_us'] / 1000:6.2f} ms  "
        f"p99 {result['p99_us'] / 1000:6.2f} ms  errors {errors:.0f}  ratio {ratio}  "
        f"server CPU {result['cpu_us']:4.0f} us/req"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=5, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    require_tool("wrk", "wrk")
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        folder = Path(tmp)
        database_url, tokens = build_newsletter(folder, args.subscribers)
        # Disjoint tokens per round: every POST is a new unsubscribe.
        token_files = []
        share = len(tokens) // args.rounds
        for n in range(args.rounds):
            token_files.append(folder / f"tokens{n}.txt")
            token_files[-1].write_text("\n".join(tokens[n * share : (n + 1) * share]) + "\n")

        bare_port, app_port = free_port(), free_port()
        python = sys.executable
        bare = start(
            [python, "-m", "uvicorn", "--app-dir", str(REPO / "benchmarks"), "hello_app:app",
             "--port", str(bare_port), *UVICORN_FLAGS],
            folder,
            bare_port,
        )  # fmt: skip
        server = start([python, "-m", "mailer", "serve", "--port", str(app_port)], folder, app_port)
        bare_url, app_url = f"http://127.0.0.1:{bare_port}/", f"http://127.0.0.1:{app_port}"
        runs: dict[str, list[dict[str, float]]] = {"bare": [], "archive": [], "post": []}
        try:
            wrk(bare_url, 2, args.connections, "get")  # warm-up
            wrk(f"{app_url}/", 2, args.connections, "get")
            # Interleaved rounds, so a busy moment on the host hits every endpoint alike.
            for n in range(args.rounds):
                runs["bare"].append(
                    wrk(bare_url, args.seconds, args.connections, "get", pid=bare.pid)
                )
                runs["archive"].append(
                    wrk(f"{app_url}/", args.seconds, args.connections, "get", pid=server.pid)
                )
                runs["post"].append(
                    wrk(
                        app_url,
                        args.seconds,
                        args.connections,
                        "post",
                        str(token_files[n]),
                        pid=server.pid,
                    )
                )
        finally:
            stop(server)
            stop(bare)

        store = open_store(database_url)
        with store.session() as session:
            unsubscribed = session.scalar(
                select(func.count())
                .select_from(Subscriber)
                .where(Subscriber.status == SubscriberStatus.UNSUBSCRIBED)
            )
        store.close()

    print(
        f"\n{args.connections} connections, {args.rounds} interleaved rounds of {args.seconds} s, "
        "wrk on loopback, uvicorn 1 worker; median round:"
    )
    ceiling, archive, posts = (median_round(runs[k]) for k in ("bare", "archive", "post"))
    report("bare Starlette hello", ceiling, None)
    report("GET / (archive)", archive, ceiling)
    report("POST one-click", posts, ceiling)
    print("POST rounds:", ", ".join(f"{r['rps']:.0f} req/s p99 {r['p99_us'] / 1000:.1f} ms"
                                    for r in runs["post"]))  # fmt: skip
    print("bare rounds:", ", ".join(f"{r['rps']:.0f} req/s" for r in runs["bare"]))
    issued = sum(int(r["issued"]) for r in runs["post"])
    answered = sum(int(r["ok"]) for r in runs["post"])
    exhausted = any(r["issued"] > share for r in runs["post"])
    print(
        f"\nunsubscribed rows {unsubscribed:,}; POSTs sent {issued:,}, answered 200 "
        f"{answered:,}" + (" (tokens ran out!)" if exhausted else "")
    )
    all_runs = [r for rs in runs.values() for r in rs]
    checks = {
        "POST >= 30% of the bare endpoint": posts["rps"] >= 0.3 * ceiling["rps"],
        "POST p99 < 50 ms": posts["p99_us"] < 50_000,
        "zero errors": all(r["socket_errors"] + r["timeouts"] + r["not_ok"] == 0 for r in all_runs),
        # wrk stops mid-flight: the last POSTs of a round may be sent yet unanswered (and
        # then persisted or not), so: every answered one persisted, none beyond those sent.
        "every answered POST persisted": answered <= unsubscribed <= issued and not exhausted,
    }
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    main()
