"""Benchmark of the command line's response time: ``crucible --help``, ``status`` and ``report`` beside
``python -c pass`` (the interpreter's own start-up), in one run.

Each command runs ``--repeats`` times as a fresh process, as a user types it; the table gives the median and the
slowest wall time and the ratio to ``python -c pass``. ``status`` and ``report`` read a recorded campaign: the one
in ``--runs-dir`` (e.g. ``runs/demo`` after ``make demo``), or, if that holds none, a 4-experiment simulated
campaign that this bench runs first (its time is not counted).

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/cli.py [--repeats 5] [--runs-dir DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).parent / "crucible"  # the console script a user types
CRUCIBLE = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "flows.cli"]


def _timed(command: Sequence[str], cwd: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-400:]}")
    return elapsed


def _campaign_in(runs_dir: Path) -> str | None:
    """The name of a campaign recorded in ``runs_dir``'s database, if any."""
    database = runs_dir / "crucible.db"
    if not database.exists():
        return None
    import sqlite3

    with sqlite3.connect(database) as connection:
        row = connection.execute("SELECT name FROM campaign ORDER BY created_at LIMIT 1").fetchone()
    return None if row is None else str(row[0])


def _record_short_campaign(runs_dir: Path) -> str:
    """Run a 4-experiment simulated TiO2 campaign into ``runs_dir`` (the demo's file, a smaller budget)."""
    data = yaml.safe_load((ROOT / "examples" / "tio2_anneal.yaml").read_text())
    data["name"] = "cli-bench"
    data["budget"]["experiments"] = 4
    data["planner"]["initial_experiments"] = 2
    path = runs_dir / "cli-bench.yaml"
    runs_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    print(f"# recording a 4-experiment simulated campaign in {runs_dir} (not timed) ...", flush=True)
    _timed([*CRUCIBLE, "run", str(path), "--sim", "--runs-dir", str(runs_dir), "--fresh"], ROOT)
    return "cli-bench"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--runs-dir", default="", help="a runs directory holding a campaign (default: record one)")
    ap.add_argument("--json", default="", help="also write the figures as JSON to this path")
    args = ap.parse_args(argv)
    scratch = tempfile.TemporaryDirectory(prefix="crucible-cli-bench-")
    runs_dir = Path(args.runs_dir).resolve() if args.runs_dir else Path(scratch.name) / "runs"
    name = _campaign_in(runs_dir) or _record_short_campaign(runs_dir)
    where = ["--runs-dir", str(runs_dir)]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "crucible --help": [*CRUCIBLE, "--help"],
        "crucible --version": [*CRUCIBLE, "--version"],
        "crucible run --help": [*CRUCIBLE, "run", "--help"],
        "crucible status": [*CRUCIBLE, "status", *where],
        f"crucible status {name}": [*CRUCIBLE, "status", name, *where],
        f"crucible report {name}": [*CRUCIBLE, "report", name, *where],
    }
    print(
        f"# bench/cli.py  {time.strftime('%Y-%m-%d %H:%M')}  python {sys.version.split()[0]}  "
        f"load average {os.getloadavg()[0]:.2f}  repeats {args.repeats}"
    )
    figures: dict[str, dict[str, float]] = {}
    for label, command in commands.items():
        _timed(command, ROOT)  # warm the file cache, as a user's second command finds it
        times = [_timed(command, ROOT) for _ in range(args.repeats)]
        figures[label] = {"median_s": statistics.median(times), "max_s": max(times)}
    base = figures["python -c pass"]["median_s"]
    print(f"{'command':36s} {'median s':>9s} {'max s':>7s} {'x python':>9s}")
    for label, figure in figures.items():
        print(f"{label:36s} {figure['median_s']:9.3f} {figure['max_s']:7.3f} {figure['median_s'] / base:9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    scratch.cleanup()


if __name__ == "__main__":
    main()
