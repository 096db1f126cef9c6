"""Time `mailer check` on the sample issue against `mailer build` measured in the same run.

    python benchmarks/check.py [--runs 5] [--issue issues/025-may-2022]

Each command runs as a user runs it (a fresh `python -m mailer` process, imports included),
alternating, N times each; prints the medians and the ratios to `mailer build`. The check
runs twice: without SpamAssassin (what `mailer send` runs as its gate, plus the
bulk-sender rules) and with it when it is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--issue", default="issues/025-may-2022")
    args = parser.parse_args()
    mailer = [sys.executable, "-m", "mailer", "--config", str(REPO / "mailer.toml")]
    with tempfile.TemporaryDirectory() as out:
        commands = {
            "build": [*mailer, "build", args.issue, "--out", out],
            "check --no-spamassassin": [*mailer, "check", args.issue, "--no-spamassassin"],
        }
        if shutil.which("spamassassin"):
            commands["check (with SpamAssassin)"] = [*mailer, "check", args.issue]
        os.environ.pop("MAILER_CONFIG", None)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for command in commands.values():
            timed(command)  # warm-up: the file cache, .pyc files
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(timed(command))
    build = statistics.median(times["build"])
    print(f"{args.issue}: median of {args.runs} runs, each a fresh process")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  mailer {name:<28} {median:6.2f} s  {median / build:5.2f}x build")


if __name__ == "__main__":
    main()
