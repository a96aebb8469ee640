"""How long the update-motd script adds to a login, next to the cheapest possible commands.

Runs hyperfine (no intermediate shell) on: `sh -c :` (starting sh at all),
`cat FRAGMENT` (printing the file), the real interfaces/update-motd/91-livepatch
on a fresh and on a stale fragment rendered by livepatch.motd, and
`python3 -c pass` to show what starting Python would cost instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.results import record
from livepatch.motd import render, write_fragment

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "interfaces" / "update-motd" / "91-livepatch"
RUNS = 500
TARGET_MS = 10.0

DOC = {
    "Enrolled": True,
    "Last-Check": None,
    "Status": [
        {
            "Kernel": "6.1.0-56-amd64",
            "Running": True,
            "Supported": "supported",
            "Livepatch": {
                "CheckState": "checked",
                "State": "applied",
                "Fixes": [{"Name": f"cve-2024-{n}", "Patched": True} for n in range(3)],
            },
        }
    ],
}


def hyperfine(commands: dict[str, str], env: dict[str, str], out: Path) -> list[dict[str, float]]:
    subprocess.run(
        [
            "hyperfine",
            "--shell=none",
            "--warmup=20",
            f"--runs={RUNS}",
            "--style=none",
            f"--export-json={out}",
            *[arg for name, command in commands.items() for arg in ("-n", name, command)],
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results: list[dict[str, float]] = json.loads(out.read_text())["results"]
    return results


def main() -> None:
    if shutil.which("hyperfine") is None:
        raise SystemExit("bench_motd needs hyperfine; run `make setup` first.")
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        fresh, stale = Path(tmp, "fresh"), Path(tmp, "stale")
        DOC["Last-Check"] = (now - timedelta(minutes=5)).isoformat()
        write_fragment(fresh, render(DOC, now))
        write_fragment(stale, render(DOC, now - timedelta(hours=5)))
        commands = {
            "sh -c : (ceiling: start sh)": "sh -c :",
            "cat FRAGMENT (ceiling: print a file)": f"cat {fresh}",
            "91-livepatch, fresh fragment": f"sh {SCRIPT}",
            "python3 -I -S -c pass (what we avoid)": f"{sys.executable} -I -S -c pass",
        }
        env = dict(os.environ, LIVEPATCH_MOTD_FRAGMENT=str(fresh), LC_ALL="C.UTF-8")
        results = hyperfine(commands, env, Path(tmp, "out.json"))
        env["LIVEPATCH_MOTD_FRAGMENT"] = str(stale)
        stale_run = {"91-livepatch, stale fragment": f"sh {SCRIPT}"}
        results[3:3] = hyperfine(stale_run, env, Path(tmp, "stale.json"))
    rows = [
        "| command | mean ms | ± ms | median ms | min ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ms = {k: r[k] * 1000 for k in ("mean", "stddev", "median", "min", "max")}
        rows.append(
            f"| {r['command']} | {ms['mean']:.2f} | {ms['stddev']:.2f} | {ms['median']:.2f} "
            f"| {ms['min']:.2f} | {ms['max']:.2f} |"
        )
    script = [r for r in results if "91-livepatch" in str(r["command"])]
    script_ms = max(r["mean"] * 1000 for r in script)
    median_ms = max(r["median"] * 1000 for r in script)
    verdict = "meets" if script_ms < TARGET_MS else "MISSES"
    body = "\n".join(
        [
            f"hyperfine --shell=none, {RUNS} runs after 20 warm-ups each; sh is "
            f"{os.path.realpath(shutil.which('sh') or 'sh')}.",
            "",
            *rows,
            "",
            f"The script's slower mean, {script_ms:.2f} ms (median {median_ms:.2f} ms), "
            f"{verdict} the {TARGET_MS:.0f} ms aim. It forks once (`date +%s`); the rest is "
            "sh builtins. The machine is shared (2 cores), so compare rows of the same run.",
        ]
    )
    record("motd script", "python -m bench motd", body)
    print(body)


if __name__ == "__main__":
    main()
