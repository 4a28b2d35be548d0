"""``leukviewer batch ARCHIVE --out DIR --archive`` (this computer) or ``--cluster ADDRESS|local[:N]`` (Ray): an
archive of cases, one case per sub-folder of ARCHIVE.

Each case is analysed exactly as ``leukviewer batch ARCHIVE/CASE --out DIR/CASE`` (same options, same files, written
together or not at all), by a worker that keeps the model loaded. ``DIR/archive_summary.csv`` gets one row per case
(status, reason, counts, blast percentage), written atomically at the end (and when stopped). A rerun skips the cases
whose ``DIR/CASE/summary.json`` is complete and from the same model, so a crash or a killed worker costs only the
cases in flight. A case that fails is listed with its reason and never stops the others.

Ray is imported only by ``--cluster`` (``leukviewer/cli/cluster.py``); without it nothing here needs more than the
single-case batch command does."""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import sys
import time
from pathlib import Path

SUMMARY_FILE = "archive_summary.csv"
SUMMARY_COLUMNS = ["case", "status", "reason", "images_total", "images_processed", "images_failed", "white_cells",
                   "blasts", "uncertain", "normal", "blast_percentage", "seconds"]
# the options of the single-case command a case is analysed with (the rest is about the archive)
CASE_OPTIONS = ("csv", "pdf", "geojson", "model", "engine", "recursive", "um_per_px", "kind")


def add_arguments(p) -> None:
    p.add_argument("--archive", action="store_true",
                   help=f"FOLDER is an archive: each sub-folder is a case, analysed as `batch FOLDER/CASE --out "
                        f"OUT/CASE`; OUT/{SUMMARY_FILE} gets one row per case; a rerun skips the cases done")
    p.add_argument("--cluster", metavar="ADDRESS|local[:N]",
                   help="--archive on a Ray cluster (pip install 'leukviewer[cluster]'): `local` starts one here "
                        "(N workers, default one per core), an ADDRESS such as 10.0.0.5:6379 joins a running one; "
                        "one worker per CPU slot keeps the model loaded")


# ---------------------------------------------------------------- the cases and their state on disk

def find_cases(archive: Path) -> list[str]:
    """The case folders of an archive: its sub-folders (not hidden), in a stable order."""
    return sorted((p.name for p in archive.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda n: (n.lower(), n))


def read_done(case_out: Path) -> dict | None:
    """summary.json of a complete run of this case, or None (never run, stopped, or unreadable)."""
    try:
        doc = json.loads((case_out / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("partial") or not isinstance(doc.get("case"), dict):
        return None
    if any(not (case_out / name).is_file() for name in doc.get("outputs", [])):
        return None
    return doc


def row_of(name: str, doc: dict) -> dict:
    """The archive_summary.csv row of a case analysed (from its summary.json)."""
    case = doc["case"]
    if case.get("images_processed", 0) > 0:
        status, reason = "done", ""
    else:
        failures = case.get("failures") or []
        status = "failed"
        reason = (f"no image could be analysed ({case.get('images_total', 0)} images"
                  + (f"; {failures[0]['image']}: {failures[0]['reason']}" if failures else "") + ")")
    pct = case.get("blast_percentage")
    return {"case": name, "status": status, "reason": reason,
            **{k: case.get(k, "") for k in ("images_total", "images_processed", "images_failed", "white_cells",
                                             "blasts", "uncertain", "normal")},
            "blast_percentage": "" if pct is None else f"{pct:.2f}", "seconds": doc.get("seconds", "")}


def failed_row(name: str, reason: str) -> dict:
    return {"case": name, "status": "failed", "reason": reason}


def write_summary(out: Path, cases: list[str], rows: dict[str, dict]) -> Path:
    """archive_summary.csv, one row per case in the archive's order (cases not reached: "not analysed")."""
    from training.modelfolder import atomic_write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, SUMMARY_COLUMNS, lineterminator="\r\n", restval="")
    writer.writeheader()
    for name in cases:
        writer.writerow(rows.get(name) or {"case": name, "status": "not analysed",
                                           "reason": "the run stopped before this case"})
    path = out / SUMMARY_FILE
    atomic_write_text(path, buf.getvalue())
    return path


# ---------------------------------------------------------------- one case (run by a worker that holds the model)

def case_args(options: dict, case_dir: Path, case_out: Path) -> argparse.Namespace:
    return argparse.Namespace(folder=str(case_dir), out=str(case_out), overwrite=True, resume=False, quiet=True,
                              archive=False, cluster=None, **options)


def analyse_case(archive: str, name: str, out: str, options: dict, classifier) -> dict:
    """Analyse one case into OUT/CASE with the single-case command and a loaded model; never raises.

    Returns ``{"case", "row", "pid"}``: the case's archive_summary.csv row."""
    from .batch import _run

    case_out = Path(out) / name
    try:
        case_out.mkdir(parents=True, exist_ok=True)
        for stale in case_out.glob(".*.part"):   # left by a worker killed in this case: it starts over
            stale.unlink(missing_ok=True)
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = _run(case_args(options, Path(archive) / name, case_out), classifier=classifier)
        doc = read_done(case_out)
        if doc is not None and code in (0, 1):
            row = row_of(name, doc)
        else:
            lines = [ln.strip() for ln in err.getvalue().splitlines() if ln.strip()]
            errors = [ln for ln in lines if ln.startswith("error:")]
            reason = (errors or lines or [f"exit status {code}"])[-1].removeprefix("error:").strip()
            row = failed_row(name, reason)
    except Exception as e:   # a case never stops the others
        row = failed_row(name, f"{type(e).__name__}: {e}")
    return {"case": name, "row": row, "pid": os.getpid()}


def load_classifier(options: dict):
    from ..core.model.classifier import CellClassifier

    engine = options.get("engine") or "auto"
    return CellClassifier(options.get("model"), backend={"litert": "tflite"}.get(engine, engine))


# ---------------------------------------------------------------- the archive run

class Progress:
    """Cases done / total with an ETA (a tqdm bar on stderr, or nothing with --quiet)."""

    def __init__(self, total: int, quiet: bool):
        self.failed = 0
        self.bar = None
        if not quiet and total:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="case", file=sys.stderr, desc="cases")

    def update(self, row: dict) -> None:
        self.failed += row["status"] == "failed"
        if self.bar is not None:
            self.bar.set_postfix(failed=self.failed, last=row["case"], refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _model_folder(options: dict) -> Path:
    """The model folder (``core.model.active.resolve_model``), written into ``options`` unless it is the bundled
    one, so every worker (here or on the cluster) loads the folder chosen here."""
    from ..core.model.active import resolve_model

    resolved = resolve_model(options.get("model"))
    if resolved.note:
        print(f"warning: {resolved.note}", file=sys.stderr)
    if not resolved.bundled:
        options["model"] = str(resolved.folder)
    return resolved.folder


def run_archive(args) -> int:
    from .. import RUO_NOTICE
    from .batch import check_writable

    archive, out = Path(args.folder), Path(args.out)
    if not archive.is_dir():
        print(f"error: {archive} is not a folder", file=sys.stderr)
        return 2
    if getattr(args, "resume", False):
        print("error: --resume is for one case; an archive run resumes by itself (rerun the same command)",
              file=sys.stderr)
        return 2
    problem = check_writable(out)
    if problem:
        print(f"error: {problem}; nothing was analysed", file=sys.stderr)
        return 2
    cases = find_cases(archive)
    if not cases:
        print(f"error: {archive} has no sub-folders: an archive holds one folder per case", file=sys.stderr)
        return 2
    options = {k: getattr(args, k, None) for k in CASE_OPTIONS}
    model_dir = _model_folder(options)
    if not (model_dir / "model.json").is_file():
        print(f"error: model folder not found: {model_dir}", file=sys.stderr)
        return 2
    from training.modelfolder import manifest_sha256

    manifest = manifest_sha256(model_dir)
    rows, todo, other_model = {}, [], []
    for name in cases:
        doc = read_done(out / name)
        if doc is not None and doc.get("model", {}).get("manifest_sha256") == manifest and not args.overwrite:
            rows[name] = row_of(name, doc)
        else:
            if doc is not None and not args.overwrite:
                other_model.append(name)
            todo.append(name)
    if other_model:
        print(f"error: {out} holds cases analysed with another model ({', '.join(other_model[:5])}"
              f"{', ...' if len(other_model) > 5 else ''}); use --overwrite or another --out", file=sys.stderr)
        return 2
    where = f"on the Ray cluster {args.cluster}" if args.cluster else "here"
    if not args.quiet:
        print(f"archive {archive}: {len(cases)} cases, {len(rows)} already done, {len(todo)} to analyse {where}",
              file=sys.stderr, flush=True)
    started = time.perf_counter()
    progress = Progress(len(todo), args.quiet)

    def on_result(outcome: dict) -> None:
        rows[outcome["case"]] = outcome["row"]
        progress.update(outcome["row"])

    stopped = False
    try:
        if todo and args.cluster:
            from .cluster import run_on_ray

            run_on_ray(args.cluster, str(archive), todo, str(out), options, on_result)
        elif todo:
            try:
                classifier = load_classifier(options)
            except Exception as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            for name in todo:
                on_result(analyse_case(str(archive), name, str(out), options, classifier))
    except KeyboardInterrupt:
        stopped = True
    except Exception as e:   # the cluster could not be reached or started
        progress.close()
        write_summary(out, cases, rows)
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    path = write_summary(out, cases, rows)
    failed = [r for r in rows.values() if r["status"] == "failed"]
    done = sum(r["status"] == "done" for r in rows.values())
    if stopped:
        print(f"stopped: {done} of {len(cases)} cases done; rerun the same command to continue. {path}",
              file=sys.stderr)
        return 130
    print(f"{done} of {len(cases)} cases analysed, {len(failed)} failed, in {time.perf_counter() - started:.1f} s "
          f"({where}): {path}")
    for row in failed:
        print(f"  {row['case']}: {row['reason']}")
    print(RUO_NOTICE)
    return 0 if done else 1
