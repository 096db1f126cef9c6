"""Benchmark of the sign-up form's POST against a bare endpoint, as benchmarks/web.py does.

    PYTHONPATH=. python benchmarks/signup.py [--seconds 5] [--rounds 3] [--connections 50]

Starts `mailer serve --no-outbox` (uvicorn, one worker; the emails are left in the outbox, so
the figure is the web app's own work) on a fresh SQLite list and, under the same uvicorn
settings, a bare Starlette endpoint (benchmarks/hello_app.py) as the ceiling. Debian's `wrk`
drives each on loopback: sign-up POSTs as a person's browser sends them (a signed stamp
from 10 s before, the honeypot empty, a new address each), the same with the honeypot filled
(a bot: answered, nothing written), and POSTs of the same body to the bare endpoint. Every
connection comes from 127.0.0.1, so the per-client and hourly limits are raised for the run.
Prints requests/s, p50/p99 latency, errors and the ratio to the ceiling, then checks that
every answered person's POST left one pending sign-up and one outbox row.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _system import require_tool
from sqlalchemy import func, select
from web import UVICORN_FLAGS, cpu_seconds, free_port, median_round, report, start, stop

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mailer.config import load_config  # noqa: E402
from mailer.store import schema  # noqa: E402
from mailer.store.consent import consent_hash  # noqa: E402
from mailer.store.db import open_store  # noqa: E402
from mailer.store.models import Signup, SignupMail  # noqa: E402
from mailer.tokens import FormStamp, make_form_stamp  # noqa: E402

LUA = Path(__file__).resolve().parent / "signup_load.lua"
LIMITS = {"MAILER_SIGNUP_IP_RATE": "100000000/h", "MAILER_SIGNUP_EMAILS_PER_HOUR": "1000000"}


def build_newsletter(folder: Path) -> tuple[str, str]:
    """A config folder with an empty list; returns (database URL, a person's form stamp)."""
    shutil.copy(REPO / "mailer.toml", folder / "mailer.toml")
    (folder / ".mailer-secret").write_text(secrets.token_urlsafe(32) + "\n")
    os.chdir(folder)
    config = load_config()
    store = open_store(config.database_url, check_schema=False)
    schema.upgrade(store.engine)
    store.close()
    stamp = FormStamp(
        int(time.time()) - 10, "form", consent_hash(config.consent_text), "/subscribe"
    )
    return config.database_url, make_form_stamp(config.secret_keys(), stamp)


def wrk(url: str, seconds: int, connections: int, *args: str, pid: int) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    command += ["-s", str(LUA), url, "--", *args]
    cpu = cpu_seconds(pid)
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    cpu = cpu_seconds(pid) - cpu
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["cpu_us"] = cpu / max(result["requests"], 1) * 1e6
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    require_tool("wrk", "wrk")
    os.environ.update(LIMITS)
    with tempfile.TemporaryDirectory(prefix="mailer-bench-") as tmp:
        folder = Path(tmp)
        database_url, stamp = build_newsletter(folder)
        bare_port, app_port = free_port(), free_port()
        python = sys.executable
        hello = ["--app-dir", str(REPO / "benchmarks"), "hello_app:app"]
        bare = start(
            [python, "-m", "uvicorn", *hello, "--port", str(bare_port), *UVICORN_FLAGS],
            folder,
            bare_port,
        )
        server = start(
            [python, "-m", "mailer", "serve", "--no-outbox", "--port", str(app_port)],
            folder,
            app_port,
        )
        bare_url = f"http://127.0.0.1:{bare_port}/"
        form_url = f"http://127.0.0.1:{app_port}/subscribe"
        runs: dict[str, list[dict[str, float]]] = {"bare": [], "person": [], "bot": []}
        plan = [  # name, URL, wrk script mode, server pid
            ("bare", bare_url, "person", bare.pid),
            ("person", form_url, "person", server.pid),
            ("bot", form_url, "bot", server.pid),
        ]
        try:
            wrk(bare_url, 2, args.connections, "person", stamp, "w", pid=bare.pid)  # warm-up
            wrk(form_url, 2, args.connections, "bot", stamp, "w", pid=server.pid)
            for n in range(args.rounds):  # interleaved, so a busy moment hits each alike
                for name, url, mode, pid in plan:
                    result = wrk(url, args.seconds, args.connections, mode, stamp, f"{name}{n}",
                                 pid=pid)  # fmt: skip
                    runs[name].append(result)
        finally:
            stop(server)
            stop(bare)
        store = open_store(database_url)
        with store.session() as session:
            signups = session.scalar(select(func.count()).select_from(Signup)) or 0
            mails = session.scalar(select(func.count()).select_from(SignupMail)) or 0
        store.close()

    print(
        f"\n{args.connections} connections, {args.rounds} interleaved rounds of {args.seconds} s, "
        "wrk on loopback, uvicorn 1 worker, SQLite; median round:"
    )
    ceiling, person, bot = (median_round(runs[k]) for k in ("bare", "person", "bot"))
    report("bare Starlette POST", ceiling, None)
    report("POST /subscribe", person, ceiling)
    report("POST /subscribe (bot)", bot, ceiling)
    print(
        "sign-up rounds:",
        ", ".join(f"{r['rps']:.0f} req/s p99 {r['p99_us'] / 1000:.1f} ms" for r in runs["person"]),
    )
    print("bare rounds:", ", ".join(f"{r['rps']:.0f} req/s" for r in runs["bare"]))
    issued = sum(int(r["issued"]) for r in runs["person"])
    answered = sum(int(r["ok"]) for r in runs["person"])
    print(
        f"\npending sign-ups {signups:,}, outbox rows {mails:,}; person POSTs sent {issued:,}, "
        f"answered 200 {answered:,} (bots: none written)"
    )
    all_runs = [r for rs in runs.values() for r in rs]
    checks = {
        "zero errors": all(r["socket_errors"] + r["timeouts"] + r["not_ok"] == 0 for r in all_runs),
        # wrk stops mid-flight: the last POSTs of a round may be sent yet unanswered.
        "every answered sign-up recorded with its email": answered <= signups <= issued
        and mails == signups,
    }
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")


if __name__ == "__main__":
    main()
