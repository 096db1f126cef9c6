"""Send the sample issue to N generated subscribers through postfix's smtp-sink, and compare.

    PYTHONPATH=. python benchmarks/send.py [--n 20000] [--connections 4] [--rate 500/s]
    PYTHONPATH=. python benchmarks/send.py --memory 10000,100000   # peak RSS flat in N?
    PYTHONPATH=. python benchmarks/send.py --dkim [--n 5000]       # signed vs unsigned
    PYTHONPATH=. python benchmarks/send.py --workers 1,2,4         # processes on PostgreSQL

End to end: a temporary folder with mailer.toml, a SQLite ledger holding N active
subscribers, postfix's ``smtp-sink`` on 127.0.0.1 (a free port), then ``mailer send --yes``
as a subprocess (compose, snapshot, send, ledger commits; its CPU time and peak RSS come from
wait4). The ceiling is measured in the same run: postfix's ``smtp-source`` sending the same
number of messages of the same size over the same number of connections (``-d``: reusing
them, as mailer does). Then a ``--rate`` run shows how closely the rate limit is held.
``--dkim`` instead sends N messages unsigned and N signed with a fresh 2048-bit RSA key
(DKIM via the ``MAILER_DKIM_*`` settings), and prints both rates and their ratio.
``--workers`` sends with 1, 2, 4... cooperating processes on PostgreSQL (benchmarks/
send_workers.py), the same total connections each time, against smtp-source at that total.
Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from _system import require_tool

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ISSUE = REPO / "issues" / "025-may-2022"
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"


@dataclass
class Run:
    messages: int
    wall: float  # whole process: start-up, compose, snapshot, send
    send_seconds: float  # the send phase as mailer reports it
    cpu: float  # user + system seconds of the process
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.messages / self.send_seconds


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_sink(port: int) -> subprocess.Popen[bytes]:
    user = ["-u", "root"] if os.geteuid() == 0 else []
    sink = subprocess.Popen(
        [SMTP_SINK, *user, f"127.0.0.1:{port}", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return sink
        except OSError:
            time.sleep(0.05)
    sink.kill()
    raise SystemExit(
        f"smtp-sink did not start: {sink.stderr.read().decode() if sink.stderr else ''}"
    )


def make_folder(root: Path, n: int, port: int, database_url: str = "") -> dict[str, str]:
    """mailer.toml, secret and a migrated database (SQLite unless ``database_url``) with
    ``n`` active subscribers."""
    shutil.copy(REPO / "mailer.toml", root / "mailer.toml")
    (root / ".mailer-secret").write_text(secrets.token_urlsafe(32) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env.update(
        PYTHONPATH=str(REPO),
        MAILER_LAYOUTS_DIR=str(REPO / "layouts"),
        MAILER_SMTP_URL=f"smtp://127.0.0.1:{port}",
        MAILER_DATABASE_URL=database_url or f"sqlite:///{root / 'subscribers.db'}",
    )
    subprocess.run(
        [sys.executable, "-m", "mailer", "init"],
        cwd=root,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    engine = sa.create_engine(env["MAILER_DATABASE_URL"])
    table = sa.Table("subscribers", sa.MetaData(), autoload_with=engine)
    now = sa.func.current_timestamp()
    with engine.begin() as conn:
        for start in range(0, n, 10_000):
            conn.execute(
                table.insert().values(created_at=now, updated_at=now, status_changed_at=now),
                [
                    {
                        "uid": secrets.token_hex(16),
                        "email": f"reader{i}@example.org",
                        "email_key": f"reader{i}@example.org",
                        "name": f"Reader {i}",
                        "status": "active",
                        "attributes": "{}",
                        "status_source": "import",
                        "status_reason": "",
                    }
                    for i in range(start, min(n, start + 10_000))
                ],
            )
    engine.dispose()
    return env


def mailer_send(root: Path, env: dict[str, str], *extra: str) -> Run:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "mailer", "send", str(SAMPLE_ISSUE), "--yes", *extra],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"mailer send failed ({status}):\n{output}")
    match = re.search(r"(\d+) sent in ([\d.]+) s", output)
    if not match:
        raise SystemExit(f"no summary in:\n{output}")
    return Run(
        messages=int(match.group(1)),
        wall=wall,
        send_seconds=float(match.group(2)),
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
    )


def message_size(root: Path) -> int:
    """Size of one real message (rendered as mailer sends it)."""
    code = (
        "import sys; from mailer.config import load_config; from mailer.compose import "
        "compose_issue; from mailer.compose.model import Newsletter; "
        "from mailer.send.message import MessageFactory; "
        "from mailer.send.ports import Recipient; "
        "c = load_config(); n = Newsletter.from_config(c); "
        "f = MessageFactory(compose_issue(sys.argv[1], n), c); "
        "print(len(f.build(Recipient('ab' * 16, 'reader1@example.org', 'Reader 1'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "MAILER_LAYOUTS_DIR": str(REPO / "layouts")}
    out = subprocess.run(
        [sys.executable, "-c", code, str(SAMPLE_ISSUE)],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip())


def smtp_source(port: int, n: int, size: int, connections: int) -> tuple[float, float]:
    """(messages/s, CPU s per 1000 messages) of postfix's own load generator."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            SMTP_SOURCE,
            "-d",
            "-s",
            str(connections),
            "-m",
            str(n),
            "-l",
            str(size),
            "-f",
            "newsletter@example.org",
            "-t",
            "reader@example.org",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit("smtp-source failed")
    return n / seconds, (usage.ru_utime + usage.ru_stime) / n * 1000


def dkim_env(root: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` plus DKIM signing with a new 2048-bit RSA key written into ``root``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (root / "dkim.pem").write_bytes(pem)
    return {
        **env,
        "MAILER_DKIM_KEY_FILE": str(root / "dkim.pem"),
        "MAILER_DKIM_SELECTOR": "bench",
        "MAILER_DKIM_DOMAIN": "example.org",
    }


def compare_dkim(port: int, n: int, connections: int, roots: list[Path]) -> None:
    """Send ``n`` messages unsigned, then ``n`` signed (fresh ledgers), and compare rates."""
    runs = []
    for signed in (False, True):
        root, env = fresh(n, port)
        roots.append(root)
        if signed:
            env = dkim_env(root, env)
        runs.append(mailer_send(root, env, "--connections", str(connections)))
    plain, signed_run = runs
    print(f"{n:,} subscribers, {connections} connections, 2048-bit RSA (rsa-sha256)")
    for label, run in (("without DKIM", plain), ("with DKIM", signed_run)):
        print(
            f"{label:13s} {run.rate:7.0f} msg/s, CPU {run.cpu / run.messages * 1000:.2f} s "
            f"per 1000 messages, peak RSS {run.peak_rss_mb:.0f} MB"
        )
    print(f"ratio:        {100 * signed_run.rate / plain.rate:.0f}% of the unsigned rate")


def fresh(n: int, port: int) -> tuple[Path, dict[str, str]]:
    root = Path(tempfile.mkdtemp(prefix="mailer-bench-"))
    return root, make_folder(root, n, port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="subscribers (default 20000)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rate", default="500/s", help="rate-limited run ('' to skip)")
    parser.add_argument("--rate-seconds", type=float, default=10.0)
    parser.add_argument("--memory", default="", help="e.g. 10000,100000: peak RSS per N")
    parser.add_argument("--dkim", action="store_true", help="signed vs unsigned rate")
    parser.add_argument("--workers", default="", help="e.g. 1,2,4: processes on PostgreSQL")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "MAILER_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="PostgreSQL for --workers (a fresh schema per configuration)",
    )
    args = parser.parse_args()
    for tool in (SMTP_SINK, SMTP_SOURCE):
        require_tool(tool, "postfix")

    port = free_port()
    sink = start_sink(port)
    roots: list[Path] = []
    try:
        if args.dkim:
            compare_dkim(port, args.n, args.connections, roots)
            return
        if args.workers:
            from send_workers import compare_workers

            counts = [int(x) for x in args.workers.split(",")]
            compare_workers(port, sink.pid, args.n, args.connections, counts, args.database_url)
            return
        if args.memory:
            sizes = [int(x) for x in args.memory.split(",")]
            peaks = []
            for n in sizes:
                root, env = fresh(n, port)
                roots.append(root)
                run = mailer_send(root, env, "--connections", str(args.connections))
                peaks.append(run.peak_rss_mb)
                print(
                    f"N={n:>7,}: {run.rate:6.0f} msg/s, peak RSS {run.peak_rss_mb:6.1f} MB, "
                    f"CPU {run.cpu / run.messages * 1000:.2f} s/1000 msgs"
                )
            share = 100 * peaks[-1] / peaks[0]
            print(f"peak RSS at N={sizes[-1]:,} is {share:.0f}% of that at N={sizes[0]:,}")
            return

        root, env = fresh(args.n, port)
        roots.append(root)
        size = message_size(root)
        print(
            f"sample issue {SAMPLE_ISSUE.name}: {size / 1000:.0f} KB per message, {args.n:,} "
            f"subscribers, {args.connections} connections, SQLite ledger, smtp-sink on :{port}"
        )
        run = mailer_send(root, env, "--connections", str(args.connections))
        print(
            f"mailer send:  {run.rate:7.0f} msg/s (send phase {run.send_seconds:.1f} s; whole "
            f"process {run.wall:.1f} s incl. compose + snapshot = "
            f"{run.messages / run.wall:.0f} msg/s)"
        )
        print(
            f"              CPU {run.cpu / run.messages * 1000:.2f} s per 1000 messages, "
            f"peak RSS {run.peak_rss_mb:.0f} MB"
        )
        source_rate, source_cpu = smtp_source(port, args.n, size, args.connections)
        print(
            f"smtp-source:  {source_rate:7.0f} msg/s (same size, -s {args.connections} -d), "
            f"CPU {source_cpu:.2f} s per 1000 messages"
        )
        print(f"ratio:        {100 * run.rate / source_rate:.0f}% of smtp-source")

        if args.rate:
            per_second = _per_second(args.rate)
            n = int(per_second * args.rate_seconds)
            root, env = fresh(n, port)
            roots.append(root)
            limited = mailer_send(
                root, env, "--connections", str(args.connections), "--rate", args.rate
            )
            # n messages at evenly spaced slots take (n - 1) / rate seconds plus the last send.
            achieved = (limited.messages - 1) / limited.send_seconds
            print(
                f"--rate {args.rate}: {limited.messages} messages in {limited.send_seconds:.2f} s"
                f" = {achieved:.1f} msg/s ({100 * (achieved / per_second - 1):+.1f}% of target)"
            )
    finally:
        sink.terminate()
        sink.wait()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)


def _per_second(rate: str) -> float:
    number, unit = rate.split("/")
    return float(number) / {"s": 1, "m": 60, "h": 3600}[unit[0]]


if __name__ == "__main__":
    main()
