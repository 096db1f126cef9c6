"""`benchmarks/send.py --workers 1,2,4`: cooperating `mailer send` processes on PostgreSQL.

Each configuration sends the sample issue to N fresh subscribers (a fresh schema) with P
processes of C/P connections each (the same total C every time) into one smtp-sink: one
`mailer send` and P - 1 `mailer worker`s (which join without composing the issue). It is
timed from the database: a sampler counts the ``sent`` rows every 0.1 s and the rate is
taken between 10% and 90% of N (start-up, compose and the tail are left out). The CPU of the
mailer processes, of smtp-sink and of PostgreSQL's backends in that time says what limits
it; smtp-source at C connections is measured in the same run as the ceiling.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from send import SAMPLE_ISSUE, make_folder, message_size, smtp_source

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    processes: int
    rate: float  # msg/s between 10% and 90% of the list
    mailer_cpu: float  # CPU seconds per 1000 messages, all mailer processes
    sink_cpu: float  # share of one core smtp-sink used while timed
    postgres_cpu: float  # share of one core PostgreSQL's processes used while timed


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


class _Sampler(threading.Thread):
    """(monotonic time, sent rows, sink CPU, postgres CPU) every 0.1 s."""

    def __init__(self, url: str, sink_pid: int) -> None:
        super().__init__(daemon=True)
        self.engine = sa.create_engine(url)
        self.sink_pid = sink_pid
        self.samples: list[tuple[float, int, float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        query = sa.text("SELECT count(*) FROM deliveries WHERE status = 'sent'")
        with self.engine.connect() as conn:
            while not self.stop.wait(0.1):
                try:
                    sent = int(conn.scalar(query) or 0)
                except sa.exc.ProgrammingError:  # not created yet
                    conn.rollback()
                    sent = 0
                conn.rollback()
                sink = _cpu_seconds([self.sink_pid])
                postgres = _cpu_seconds(_postgres_pids())
                self.samples.append((time.monotonic(), sent, sink, postgres))
        self.engine.dispose()

    def between(self, low: int, high: int) -> tuple[float, float, float]:
        """(seconds, sink CPU s, postgres CPU s) from the first sample >= low to >= high."""
        first = next(s for s in self.samples if s[1] >= low)
        last = next(s for s in self.samples if s[1] >= high)
        return last[0] - first[0], last[2] - first[2], last[3] - first[3]


def _schema_url(base: str) -> tuple[str, str]:
    schema = "bench_" + secrets.token_hex(4)
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return schema, f"{base}{sep}options=-csearch_path%3D{schema}"


def _drop(base: str, schema: str) -> None:
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def measure(port: int, sink_pid: int, n: int, processes: int, total: int, base: str) -> Measured:
    schema, url = _schema_url(base)
    root = Path(tempfile.mkdtemp(prefix="mailer-bench-workers-"))
    try:
        env = make_folder(root, n, port, url)
        sampler = _Sampler(url, sink_pid)
        sampler.start()
        per = max(1, total // processes)
        # One `mailer send` (it composes and records the issue) and processes - 1 workers,
        # started first: they join as soon as the issue is recorded, without composing.
        quiet = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "mailer", "worker"],
                cwd=root,
                env={**env, "MAILER_CONNECTIONS": str(per)},
                stderr=subprocess.DEVNULL,
                **quiet,  # type: ignore[arg-type]
            )
            for _ in range(processes - 1)
        ]
        args = [sys.executable, "-m", "mailer", "send", str(SAMPLE_ISSUE), "--yes"]
        sender = subprocess.Popen(
            [*args, "--connections", str(per)],
            cwd=root,
            env=env,
            stderr=subprocess.DEVNULL,
            **quiet,  # type: ignore[arg-type]
        )
        _, status, usage = os.wait4(sender.pid, 0)
        if status != 0:
            raise SystemExit(f"mailer send failed ({status})")
        cpu = usage.ru_utime + usage.ru_stime
        deadline = time.monotonic() + 120
        while (not sampler.samples or sampler.samples[-1][1] < n) and time.monotonic() < deadline:
            time.sleep(0.1)
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            _, status, usage = os.wait4(worker.pid, 0)
            if status != 0:
                raise SystemExit(f"a mailer worker failed ({status})")
            cpu += usage.ru_utime + usage.ru_stime
        time.sleep(0.3)
        sampler.stop.set()
        sampler.join()
        seconds, sink, postgres = sampler.between(n // 10, n * 9 // 10)
        return Measured(
            processes=processes,
            rate=(n * 8 // 10) / seconds,
            mailer_cpu=cpu / n * 1000,
            sink_cpu=sink / seconds,
            postgres_cpu=postgres / seconds,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
        _drop(base, schema)


def compare_workers(
    port: int, sink_pid: int, n: int, total: int, counts: list[int], base: str
) -> None:
    root = Path(tempfile.mkdtemp(prefix="mailer-bench-size-"))
    try:
        make_folder(root, 0, port)  # a config and a secret to render one message with
        size = message_size(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"sample issue {SAMPLE_ISSUE.name}: {size / 1000:.0f} KB per message, {n:,} subscribers,"
        f" {total} connections in all, PostgreSQL ledger, smtp-sink on :{port}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before"
    )
    results = [measure(port, sink_pid, n, p, total, base) for p in counts]
    source_rate, source_cpu = smtp_source(port, n, size, total)
    one = results[0].rate
    print("processes  msg/s   vs 1   vs smtp-source  mailer CPU s/1000  sink CPU  postgres CPU")
    for r in results:
        print(
            f"{r.processes:9d}  {r.rate:6.0f}  {r.rate / one:4.2f}x  {r.rate / source_rate:13.0%}"
            f"  {r.mailer_cpu:17.2f}  {r.sink_cpu:7.0%}  {r.postgres_cpu:11.0%}"
        )
    print(
        f"smtp-source {source_rate:6.0f} msg/s at {total} connections (-d), "
        f"CPU {source_cpu:.2f} s per 1000 messages"
    )
    print(f"load average {os.getloadavg()[0]:.1f} after (other jobs on the machine count)")
    best = max(results, key=lambda r: r.rate)
    print(
        f"best: {best.processes} processes, {best.rate / source_rate:.0%} of smtp-source; "
        f"2 processes vs 1: {next((r.rate for r in results if r.processes == 2), 0) / one:.2f}x"
    )
