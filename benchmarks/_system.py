"""Debian tools the benchmarks measure against (smtp-sink, wrk, sqlite3): install if missing."""

from __future__ import annotations

import os
import shutil
import subprocess


def require_tool(command: str, package: str) -> str:
    """The path of ``command``; as root, apt-get installs ``package`` first if it is missing."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit(f"{command} is missing: apt-get install {package}")
    print(f"installing Debian package {package} (for {command}) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    found = shutil.which(command)
    if not found:
        raise SystemExit(f"{command} is still missing after installing {package}")
    return found
