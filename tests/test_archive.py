"""An archive of cases (``leukviewer batch ARCHIVE --out DIR --archive`` here, ``--cluster local:2`` on Ray): each
case gets the files of ``batch CASE --out DIR/CASE``, archive_summary.csv one row per case, a broken case is listed
with its reason without stopping the others, a rerun skips the cases done, plain batch never imports Ray, and a Ray
worker killed in the middle of a case costs nothing but time."""
import csv
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CASES = ["case-a", "case-b", "case-c", "case-d"]
PER_CELL = ["cells.csv", "images.csv"]   # summary.json differs only by its date and timings


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def archive(shared_data, tmp_path_factory):
    """24 real BCCD fields in 4 cases of 6, and a case whose only image is broken."""
    root = tmp_path_factory.mktemp("archive") / "archive"
    fields = sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:24]
    for i, image in enumerate(fields):
        case = root / CASES[i % 4]
        case.mkdir(parents=True, exist_ok=True)
        shutil.copy2(image, case / image.name)
    (root / "case-broken").mkdir()
    (root / "case-broken" / "field.jpg").write_bytes(b"not a JPEG at all")
    return root


@pytest.fixture(scope="module")
def local_run(archive, tiny_model_dir, tmp_path_factory):
    """One process: `batch case-a` on its own, `batch ARCHIVE --archive`, then a rerun after one case's results
    were deleted; it reports whether Ray was imported."""
    tmp = tmp_path_factory.mktemp("local")
    script = textwrap.dedent(f"""
        import contextlib, io, shutil, sys
        from leukviewer.__main__ import main
        model, archive, tmp = {str(tiny_model_dir)!r}, {str(archive)!r}, {str(tmp)!r}
        assert main(["batch", archive + "/case-a", "--out", tmp + "/single", "--model", model, "--quiet"]) == 0
        assert main(["batch", archive, "--out", tmp + "/out", "--archive", "--model", model, "--quiet"]) == 0
        shutil.rmtree(tmp + "/out/case-c")
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["batch", archive, "--out", tmp + "/out", "--archive", "--model", model]) == 0
        print("RERUN", err.getvalue().replace(chr(13), chr(10)))
        print("RAY IMPORTED", "ray" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp, done.stdout


def test_an_archive_gives_each_case_the_files_of_a_single_case_run_and_lists_the_broken_one(archive, local_run):
    tmp, _ = local_run
    out = tmp / "out"
    for name in PER_CELL:   # case-a analysed alone and as part of the archive: byte for byte the same cells
        assert (out / "case-a" / name).read_bytes() == (tmp / "single" / name).read_bytes()
    rows = _rows(out / "archive_summary.csv")
    assert [r["case"] for r in rows] == sorted(CASES + ["case-broken"])
    good = [r for r in rows if r["case"] != "case-broken"]
    assert all(r["status"] == "done" and r["images_processed"] == "6" for r in good)
    cells = {r["case"]: len(_rows(out / r["case"] / "cells.csv")) for r in good}
    assert all(int(r["white_cells"]) <= cells[r["case"]] for r in good) and sum(cells.values()) >= 20
    broken = next(r for r in rows if r["case"] == "case-broken")
    assert broken["status"] == "failed" and "field.jpg" in broken["reason"]
    assert not list(out.rglob("*.part"))


def test_a_rerun_analyses_only_the_cases_not_done_with_progress_and_plain_batch_never_imports_ray(local_run):
    tmp, stdout = local_run
    assert "5 cases, 4 already done, 1 to analyse here" in stdout   # only case-c, deleted, is analysed again
    assert "cases: 100%" in stdout and "1/1 [" in stdout   # progress: cases done / total, elapsed<ETA
    assert (tmp / "out" / "case-c" / "cells.csv").is_file()
    assert "RAY IMPORTED False" in stdout


def _ray_workers() -> list[Path]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::CaseWorker"):
                found.append(proc)
        except OSError:
            continue
    return found


def _worker_in_a_case(out: Path, workers: list[Path]) -> int | None:
    """The pid of a worker in the middle of a case (holding its results, staged but not yet in place, open)."""
    busy = {os.path.realpath(p) for p in out.glob("*/.*.part")}
    for proc in workers if busy else []:
        try:
            if any(os.readlink(fd) in busy for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker through /proc")
def test_a_two_worker_ray_cluster_survives_a_killed_worker_with_the_same_cells_as_a_local_run(
        archive, local_run, tiny_model_dir, tmp_path):
    pytest.importorskip("ray", reason="the cluster extra: pip install -e '.[cluster]'")
    tmp, _ = local_run
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "leukviewer", "batch", str(archive), "--out", str(out),
                             "--cluster", "local:2", "--model", str(tiny_model_dir)],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        killed, workers, deadline = None, [], time.monotonic() + 300
        while killed is None and proc.poll() is None and time.monotonic() < deadline:
            workers = workers if len(workers) == 2 else _ray_workers()
            killed = _worker_in_a_case(out, workers)
            time.sleep(0.01)
        assert killed is not None, "no worker was seen in the middle of a case"
        os.kill(killed, signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    rows = _rows(out / "archive_summary.csv")
    assert [r["case"] for r in rows] == sorted(CASES + ["case-broken"])   # every case once
    assert {r["case"]: r["status"] for r in rows} == {**dict.fromkeys(CASES, "done"), "case-broken": "failed"}
    for case in CASES:   # the case the killed worker held was analysed again, from the start
        for name in PER_CELL:
            assert (out / case / name).read_bytes() == (tmp / "out" / case / name).read_bytes(), (case, name)
    assert not list(out.rglob("*.part")) and not list(out.rglob("partial-results.jsonl"))
    assert "4 of 5 cases analysed, 1 failed" in stdout


def test_a_cluster_with_gpus_gets_one_actor_per_gpu_and_one_per_cpu_slot_left():
    """On a GPU server each GPU gets an actor (TensorFlow classifies there, its CPU slot localises) and every CPU slot
    left a LiteRT actor; never more actors than cases; a CPU-only cluster is as before, one actor per slot."""
    from leukviewer.cli.cluster import worker_plan

    assert worker_plan(cpu_slots=16, gpus=2, cases=100) == [1, 1] + [0] * 14
    assert worker_plan(cpu_slots=2, gpus=0, cases=100) == [0, 0]
    assert worker_plan(cpu_slots=16, gpus=2, cases=3) == [1, 1, 0]
    assert worker_plan(cpu_slots=1, gpus=4, cases=10) == [1]   # each actor needs a CPU slot: never one left waiting
    assert worker_plan(cpu_slots=8, gpus=0, cases=0) == [0]


def test_a_cluster_worker_keeps_to_its_cpu_slot_without_importing_tensorflow():
    """A worker's set-up limits LiteRT, the image readers and TensorFlow's pools to its slot's threads, and does not
    import TensorFlow for it (5-7 s of every worker's start; a LiteRT worker never needs it)."""
    script = textwrap.dedent("""
        import os, sys
        from leukviewer.cli.cluster import limit_to_slot
        from leukviewer.core.model.engine import cpu_threads
        limit_to_slot(3)
        print(cpu_threads(), os.environ["TF_NUM_INTRAOP_THREADS"], os.environ["TF_NUM_INTEROP_THREADS"],
              "tensorflow" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["3", "3", "3", "False"]
