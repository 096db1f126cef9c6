"""Benchmark `mailer bounces` over a Maildir of 10,000 reports, against the stdlib parser.

    PYTHONPATH=. python benchmarks/bounces.py              # 10,000 subscribers and reports
    PYTHONPATH=. python benchmarks/bounces.py --n 2000

Sends a small issue to N generated subscribers (the real send, into a Maildir, so every copy
has its real VERP Return-Path, Message-ID and List-Unsubscribe token), then builds one report
per copy, as providers send them: 55 % hard-bounce DSNs, 15 % soft, 5 % policy refusals,
10 % ARF complaints with the recipient redacted, 5 % delay notices, 5 % out-of-office
replies, 5 % qmail text bounces. `mailer bounces DIR` runs as a subprocess (start-up
included) over a fresh copy of that Maildir on SQLite; the reference in the same run is the
floor of any reader: the standard library's email parser reading each file, nothing else.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from email import message_from_bytes
from pathlib import Path

from mailer.config import load_config
from mailer.store import schema
from mailer.store.db import create_db_engine, open_store
from tests.bounces.helpers import (
    Box,
    arf,
    auto_reply,
    bounce_config,
    dsn,
    qmail_bounce,
    send_issue,
    subscribe_unchecked,
)

REPO = Path(__file__).resolve().parent.parent
MIX = [  # (share, builder)
    (55, lambda c: dsn(c)),
    (15, lambda c: dsn(c, status="5.2.2", diagnostic="smtp; 552 5.2.2 Mailbox full")),
    (5, lambda c: dsn(c, status="5.7.1", diagnostic="smtp; 550 5.7.1 likely unsolicited mail")),
    (10, lambda c: arf(c)),
    (5, lambda c: dsn(c, action="delayed", status="4.4.1", diagnostic="smtp; 451 later")),
    (5, lambda c: auto_reply(c)),
    (5, lambda c: qmail_bounce(c)),
]


def prepare(work: Path, n: int) -> tuple[dict[str, str], Path]:
    (work / "mailer.toml").write_text((REPO / "mailer.toml").read_text(encoding="utf-8"))
    secret = "bench-" + "k" * 40
    env = {**os.environ, "MAILER_CONFIG": str(work / "mailer.toml"), "MAILER_SECRET_KEY": secret}
    env["MAILER_DATABASE_URL"] = f"sqlite:///{work / 'subscribers.db'}"
    env["MAILER_BOUNCE_ADDRESS"] = "bounces@news.example.org"
    os.environ.update(env)
    config = dataclasses.replace(load_config(), database_url=env["MAILER_DATABASE_URL"])
    engine = create_db_engine(config.database_url)
    schema.upgrade(engine)
    engine.dispose()
    store = open_store(config.database_url)
    subscribe_unchecked(store, *(f"reader{i}@example.org" for i in range(n)))
    cfg = bounce_config(config, work / "outbox")
    started = time.perf_counter()
    copies = send_issue(store, cfg, 1)
    print(f"sent {len(copies)} copies into a Maildir in {time.perf_counter() - started:.1f} s")
    store.close()
    box = Box(work / "reports")
    rng = random.Random(25)
    builders = [b for share, b in MIX for _ in range(share)]
    for copy in copies.values():
        box.put(rng.choice(builders)(copy))
    return env, box.path


def stdlib_floor(maildir: Path) -> float:
    started = time.perf_counter()
    for sub in ("new", "cur"):
        for path in (maildir / sub).iterdir():
            message_from_bytes(path.read_bytes())
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="subscribers and reports")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailer-bench-bounces-") as tmp:
        work = Path(tmp)
        env, reports = prepare(work, args.n)
        floor = stdlib_floor(reports)
        run = work / "run"
        shutil.copytree(reports, run)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "mailer", "bounces", str(run)],
            env=env, cwd=work, capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"mailer bounces failed: {done.stderr.strip()}")
        print(done.stdout.strip().splitlines()[0])
        print(
            f"mailer bounces: {args.n} reports in {seconds:.1f} s = {args.n / seconds:,.0f}/s; "
            f"stdlib email parser alone: {floor:.1f} s = {args.n / floor:,.0f}/s; "
            f"ratio {seconds / floor:.1f}x the floor"
        )


if __name__ == "__main__":
    main()
