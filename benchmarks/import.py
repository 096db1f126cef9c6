"""Benchmark `mailer subscribers import` / `export` end to end, against the sqlite3 floor.

    python benchmarks/import.py                  # 100,000 rows, SQLite and PostgreSQL
    python benchmarks/import.py --rows 1000000
    python benchmarks/import.py --memory-check   # peak memory at 100,000 and 1,000,000 rows

Generates a CSV (email, name, two attribute columns; ~2% duplicates in other letter cases,
~1% invalid addresses) in a temporary folder and times each command as a subprocess, so
interpreter start-up and imports are included. Peak memory is the child's max RSS (wait4).
The floor is the sqlite3 shell's `.import` of the same file into a plain table (no
validation, no indexes), timed in the same run. Targets (issue 3): >= 30,000 rows/s on
SQLite including validation, peak memory < 150 MB, and 1M rows within 20% of 100k.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import random
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from _system import require_tool

REPO = Path(__file__).resolve().parent.parent
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class Run:
    seconds: float
    max_rss_mb: float
    output: str
    lock_held: float | None = None  # longest time another SQLite writer was shut out


class LockProbe:
    """Measures, from outside, the longest stretch a SQLite database refuses a writer: a
    thread tries ``BEGIN IMMEDIATE`` (no busy wait) every few milliseconds."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> LockProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        conn = sqlite3.connect(self.db, timeout=0, isolation_level=None)
        since: float | None = None
        while not self._stop.is_set():
            now = time.perf_counter()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                since = now if since is None else since
            else:
                if since is not None:
                    self.longest = max(self.longest, now - since)
                    since = None
            time.sleep(0.005)
        if since is not None:
            self.longest = max(self.longest, time.perf_counter() - since)
        conn.close()


def generate(path: Path, rows: int, seed: int = 25) -> None:
    rng = random.Random(seed)
    orgs = ["ISEI", "Yuksalish", "Regional Dialogue", "Independent"]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["email", "name", "organisation", "language"])
        for i in range(rows):
            r = rng.random()
            if r < 0.01:
                email = f"broken{i}@@example"  # invalid
            elif r < 0.03 and i:
                email = f"User{i - 1}@Example{(i - 1) % 97}.ORG"  # duplicate, other case
            else:
                email = f"user{i}@example{i % 97}.org"
            writer.writerow([email, f"Subscriber {i}", rng.choice(orgs), rng.choice("en ru uz")])


def run(args: list[str], cwd: Path, env: dict[str, str], probe: Path | None = None) -> Run:
    """Run a command; its wall time and its own peak RSS (not any earlier child's); with
    ``probe`` (a SQLite file), how long at most it kept other writers out."""
    with contextlib.ExitStack() as stack:
        lock = stack.enter_context(LockProbe(probe)) if probe else None
        start = time.perf_counter()
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert proc.stdout is not None
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{output}")
    last = output.strip().splitlines()[-1] if output else ""
    return Run(seconds, usage.ru_maxrss / 1024, last, lock.longest if lock else None)


def mailer(*args: str) -> list[str]:
    return [sys.executable, "-m", "mailer", *args]


def pg_schema(url: str) -> str | None:
    """A fresh schema on the PostgreSQL server, or None if it is not reachable."""
    import sqlalchemy as sa

    name = "bench_" + secrets.token_hex(4)
    try:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
        engine.dispose()
    except Exception as exc:
        print(f"PostgreSQL at {url} not reachable ({type(exc).__name__}): skipped")
        return None
    return name


def drop_pg_schema(url: str, name: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
    engine.dispose()


def bench_backend(label: str, url: str | None, data: Path, rows: int, work: Path) -> dict[str, Run]:
    """Init, import, import again (all merged), export; url None: SQLite default file."""
    folder = work / label
    folder.mkdir()
    shutil.copy(REPO / "mailer.toml", folder / "mailer.toml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env["PYTHONPATH"] = str(REPO)
    if url:
        env["MAILER_DATABASE_URL"] = url
    run(mailer("init"), folder, env)
    probe = None if url else folder / "subscribers.db"
    results = {
        "import": run(mailer("subscribers", "import", str(data)), folder, env, probe),
        "re-import (merge)": run(mailer("subscribers", "import", str(data)), folder, env, probe),
        "export": run(mailer("subscribers", "export", str(folder / "export.csv")), folder, env),
    }
    for name, r in results.items():
        print(
            f"{label:<11} {name:<18} {r.seconds:7.2f} s {rows / r.seconds:10,.0f} rows/s "
            f"{r.max_rss_mb:7.1f} MB   {r.output}"
        )
        if r.lock_held is not None:
            print(f"{'':<11} {'':<18} write lock held (longest) {r.lock_held:6.2f} s")
    return results


def sqlite_floor(data: Path, work: Path) -> float:
    sqlite3 = require_tool("sqlite3", "sqlite3")
    db = work / "floor.db"
    start = time.perf_counter()
    subprocess.run(
        [sqlite3, str(db), ".mode csv", f".import {data} plain"], check=True, capture_output=True
    )
    return time.perf_counter() - start


def bench(rows: int, pg_url: str | None, work: Path) -> dict[str, Run]:
    data = work / f"subscribers-{rows}.csv"
    generate(data, rows)
    size = data.stat().st_size / 1e6
    print(f"\n== {rows:,} rows ({size:.1f} MB CSV, ~2% duplicates, ~1% invalid)")
    floor = sqlite_floor(data, work)
    print(f"{'sqlite3':<11} {'.import (floor)':<18} {floor:7.2f} s {rows / floor:10,.0f} rows/s")
    sqlite = bench_backend("SQLite", None, data, rows, work)
    print(f"ratio: mailer import on SQLite takes {sqlite['import'].seconds / floor:.1f}x the floor")
    if pg_url:
        schema = pg_schema(pg_url)
        if schema:
            sep = "&" if "?" in pg_url else "?"
            url = f"{pg_url}{sep}options=-csearch_path%3D{schema}"
            try:
                bench_backend("PostgreSQL", url, data, rows, work)
            finally:
                drop_pg_schema(pg_url, schema)
    data.unlink()
    return sqlite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pg-url", default=os.environ.get("MAILER_TEST_PG_URL", PG_URL))
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    parser.add_argument(
        "--memory-check", action="store_true", help="compare peak memory at 100k and 1M rows"
    )
    args = parser.parse_args()
    pg_url = None if args.no_pg else args.pg_url
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        work = Path(tmp)
        if not args.memory_check:
            bench(args.rows, pg_url, work)
            return
        (work / "small").mkdir()
        (work / "big").mkdir()
        small = bench(100_000, None, work / "small")
        big = bench(1_000_000, None, work / "big")
        print("\n== memory flatness (SQLite import, peak RSS)")
        a, b = small["import"].max_rss_mb, big["import"].max_rss_mb
        print(f"100,000 rows: {a:.1f} MB   1,000,000 rows: {b:.1f} MB   growth {b / a - 1:+.1%}")
        a, b = small["export"].max_rss_mb, big["export"].max_rss_mb
        print(f"export:       {a:.1f} MB                 {b:.1f} MB   growth {b / a - 1:+.1%}")


if __name__ == "__main__":
    main()
