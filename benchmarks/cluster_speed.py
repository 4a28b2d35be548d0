"""Speed-up of an archive on a local Ray cluster: 2 workers vs 1, on real BCCD smear fields, printed as a ratio.

Run by hand (minutes; keep the machine otherwise idle, the figure is meaningless on a busy one):
    LEUKVIEWER_DATA=~/leukviewer-data .venv/bin/python benchmarks/cluster_speed.py [--fields 240] [--model DIR]

It stages an archive of --fields BCCD fields (symbolic links) in cases of --per-case fields, then runs
``leukviewer batch ARCHIVE --out OUT --cluster local:1`` and ``local:2`` (fresh --out each time, the bundled model
unless --model), timing each end to end (Ray start, workers loading the model, every case, archive_summary.csv) and
checking that both give the same cells.csv per case, and how many cores each run kept busy on average (the
whole machine's, from /proc/stat: one worker already overlaps reading with classifying, so it uses more than one
core, and 2 workers can gain at most the cores it left idle). The bar: 2 workers >= 1.6x faster than 1 on 2 cores for
>= 200 fields. Each worker owns one CPU slot (LiteRT and the image readers use that many threads:
``LEUKVIEWER_THREADS``). Ray's start and the model loads (~20 s) are in the figure: more fields dilute them. The load average before and after is printed: other work on the machine skews the ratio.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("LEUKVIEWER_DATA", REPO.parent / "shared" / "data")).expanduser()


def stage(archive: Path, n_fields: int, per_case: int) -> int:
    fields = sorted((data_root() / "bccd" / "JPEGImages").glob("*.jpg"))
    if len(fields) < n_fields:
        print(f"note: {len(fields)} BCCD fields in {data_root()}, cycled to make {n_fields} (each case still has "
              f"distinct files)", file=sys.stderr)
    for i in range(n_fields):
        field = fields[i % len(fields)]
        case = archive / f"case-{i // per_case:04d}"
        case.mkdir(parents=True, exist_ok=True)
        (case / f"{i:05d}-{field.name}").symlink_to(field.resolve())
    return n_fields


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (Linux /proc/stat; 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run(archive: Path, out: Path, cluster: str, model: str | None) -> tuple[float, float]:
    """Seconds end to end, and the cores busy on average meanwhile."""
    cmd = [sys.executable, "-m", "leukviewer", "batch", str(archive), "--out", str(out), "--cluster", cluster,
           "--quiet"] + (["--model", model] if model else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    t0, busy0 = time.perf_counter(), busy_seconds()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    busy = (busy_seconds() - busy0) / seconds
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, busy


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fields", type=int, default=240)
    p.add_argument("--per-case", type=int, default=10)
    p.add_argument("--model", help="model folder (default: the bundled model)")
    p.add_argument("--marginal", action="store_true", help="also run half the fields with each worker count and "
                   "give the marginal rate, (n - n/2) / (t_n - t_n/2): Ray's start and the model loads cancel out")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="leukviewer-cluster-speed-") as tmp:
        tmp = Path(tmp)
        n = stage(tmp / "archive", args.fields, args.per_case)
        half = n // 2 // args.per_case * args.per_case
        if args.marginal:
            stage(tmp / "half", half, args.per_case)
        cases = len(list((tmp / "archive").iterdir()))
        print(f"{n} BCCD fields in {cases} cases; {os.cpu_count()} cores; load average before "
              f"{os.getloadavg()[0]:.1f}")
        times, halves = {}, {}
        for workers in (1, 2):
            times[workers], busy = run(tmp / "archive", tmp / f"out{workers}", f"local:{workers}", args.model)
            print(f"  local:{workers}: {times[workers]:.1f} s end to end, {n / times[workers]:.2f} fields/s, "
                  f"{busy:.2f} of {os.cpu_count()} cores busy on average")
            if args.marginal:
                halves[workers], _ = run(tmp / "half", tmp / f"half{workers}", f"local:{workers}", args.model)
                print(f"  local:{workers}: {half} fields {halves[workers]:.1f} s; marginal "
                      f"{(n - half) / (times[workers] - halves[workers]):.2f} fields/s")
        same = all((tmp / "out1" / c.name / "cells.csv").read_bytes() == (tmp / "out2" / c.name / "cells.csv")
                   .read_bytes() for c in (tmp / "archive").iterdir())
        print(f"speed-up 2 workers vs 1: {times[1] / times[2]:.2f}x end to end (bar: >= 1.6x on 2 cores); "
              f"cells.csv identical per case: {same}; load average after {os.getloadavg()[0]:.1f}")
        if args.marginal:
            marginal = {w: (times[w] - halves[w]) for w in (1, 2)}
            print(f"marginal speed-up (start-up and model loads excluded): {marginal[1] / marginal[2]:.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
