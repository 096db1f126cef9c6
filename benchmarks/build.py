"""Time the compose of the sample issue #25 and print the stage split and the sizes.

    PYTHONPATH=. python benchmarks/build.py [--runs 7] [--issue issues/025-may-2022]

Prints the median of N runs per stage (load, Markdown, Jinja, MJML, premailer, text; the
HTML stages run twice: the email and its web version), the total, the HTML and text sizes
against Gmail's 102 KB clipping limit, and, measured in the same run as the reference, the
same issue through a naive one-mj-section-per-article layout (benchmarks/naive_layout/).
Also the per-recipient fill rate (what the send step pays per message).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

from mailer.compose import GMAIL_CLIP_BYTES, compose_issue
from mailer.compose.build import sample_values
from mailer.compose.model import Newsletter
from mailer.compose.pipeline import STAGES
from mailer.config import load_config

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--issue", type=Path, default=REPO / "issues" / "025-may-2022")
    args = parser.parse_args()
    for key in [k for k in os.environ if k.startswith("MAILER_")]:
        del os.environ[key]
    config = Newsletter.from_config(load_config(REPO / "mailer.toml"))

    compose_issue(args.issue, config)  # warm-up: imports, first-use caches
    runs: list[dict[str, float]] = []
    totals: list[float] = []
    for _ in range(args.runs):
        timings: dict[str, float] = {}
        start = time.perf_counter()
        composed = compose_issue(args.issue, config, timings=timings)
        totals.append(time.perf_counter() - start)
        runs.append(timings)
    total = statistics.median(totals)
    print(f"compose {args.issue.name}: median of {args.runs} runs = {total * 1000:.0f} ms")
    for stage in STAGES:
        median = statistics.median(r.get(stage, 0.0) for r in runs)
        print(f"  {stage:<10} {median * 1000:7.1f} ms  {100 * median / total:5.1f}%")

    values = sample_values(config, composed.meta)
    html, text = composed.personalise(values)
    html_bytes = len(html.encode())
    share = 100 * html_bytes / GMAIL_CLIP_BYTES
    print(f"HTML  {html_bytes:>9,} bytes ({share:.0f}% of Gmail's 102 KB clipping limit)")
    print(f"text  {len(text.encode()):>9,} bytes")
    print(f"web   {len(composed.web_html.encode()):>9,} bytes")

    naive_config = dataclasses.replace(config, layouts_dir=REPO / "benchmarks" / "naive_layout")
    start = time.perf_counter()
    naive = compose_issue(args.issue, naive_config)
    naive_time = time.perf_counter() - start
    naive_bytes = len(naive.personalise(values)[0].encode())
    print(
        f"reference, naive one-section-per-article layout: {naive_bytes:,} bytes "
        f"({naive_bytes / html_bytes:.1f}x ours), {naive_time * 1000:.0f} ms "
        f"({naive_time / total:.1f}x ours)"
    )

    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        composed.personalise(values)
    fill = (time.perf_counter() - start) / n
    print(
        f"personalise one copy: {fill * 1e6:.0f} us ({1 / fill:,.0f} copies/s, "
        f"{total / fill:,.0f}x cheaper than composing)"
    )


if __name__ == "__main__":
    main()
