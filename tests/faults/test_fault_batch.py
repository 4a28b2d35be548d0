"""The batch command facing a read-only --out and Ctrl+C: refused before any analysis; stopped cleanly with what
was done written and marked partial; --resume finishes the job without analysing an image twice."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from leukviewer.cli.batch import RESUME_FILE

# Root ignores file modes: drop the capabilities that let it write into a read-only folder.
NO_OVERRIDE = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def as_user(cmd):
    return NO_OVERRIDE + cmd if os.geteuid() == 0 and shutil.which("setpriv") else cmd


@pytest.fixture
def fields(shared_data, tmp_path):
    """A case of 12 real BCCD fields."""
    dest = tmp_path / "fields"
    dest.mkdir()
    for image in sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:12]:
        shutil.copy2(image, dest / image.name)
    return dest


@pytest.fixture
def long_case(fields):
    """36 fields (the 12 real ones three times): long enough that Ctrl+C lands mid-run on a fast, idle machine
    (results are written a classification batch of up to 8 images at a time)."""
    for image in sorted(fields.glob("*.jpg")):
        for copy in (2, 3):
            shutil.copy2(image, fields / f"{image.stem}_copy{copy}.jpg")
    return fields


def batch_cmd(folder, out, model, *extra):
    return [sys.executable, "-m", "leukviewer", "batch", str(folder), "--out", str(out), "--model", str(model),
            "--quiet", *extra]


def test_a_read_only_out_is_refused_before_the_model_loads(fields, tmp_path, child_env):
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    # a missing model folder too: the --out problem must be found first, before anything is loaded or analysed
    run = subprocess.run(as_user(batch_cmd(fields, out, tmp_path / "no-such-model")), env=child_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert f"cannot write the report into {out}: permission denied" in run.stderr
    assert "nothing was analysed" in run.stderr and "model" not in run.stderr.split("permission denied")[1]
    assert list(out.iterdir()) == []


def _wait_for_images(out, n, proc, timeout=120):
    """Until the run has finished ``n`` images (its hidden resume log has n lines)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        logs = list(out.glob(f".{RESUME_FILE}.*.part"))
        if logs and logs[0].read_text(encoding="utf-8").count("\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError("the batch run did not get going")


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_ctrl_c_writes_what_was_done_marked_partial_and_resume_finishes(long_case, tmp_path, tiny_model_dir,
                                                                          child_env):
    fields, out = long_case, tmp_path / "out"
    proc = subprocess.Popen(batch_cmd(fields, out, tiny_model_dir, "--geojson", "--csv"), env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_images(out, 3, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    lines = stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stopped after ") and f"of 36 images; partial results in {out}" \
        in lines[0] and "--resume" in lines[0]
    done = int(lines[0].split()[2])
    assert 3 <= done < 36
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] is True and summary["images_done"] == done and len(summary["images"]) == done
    assert summary["model"]["manifest_sha256"]                    # the report names the whole model folder
    first = {r["image"] for r in _rows(out / "images.csv")}
    first_seconds = {i["image"]: i["seconds"] for i in summary["images"]}
    assert len(first) == done and (out / RESUME_FILE).is_file() and (out / "cells.geojson").is_file()
    cells_before = _rows(out / "cells.csv")

    resumed = subprocess.run(batch_cmd(fields, out, tiny_model_dir, "--geojson", "--csv", "--resume"),
                             env=child_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] is False and summary["case"]["images_total"] == 36
    images = [r["image"] for r in _rows(out / "images.csv")]
    assert sorted(images) == sorted(set(images)) and len(images) == 36     # every image once
    cells_after = _rows(out / "cells.csv")
    assert cells_before == cells_after[:len(cells_before)]                # what was saved is kept as it was
    # the images done before were not analysed again: their timing is the one recorded by the first run
    seconds = {i["image"]: i["seconds"] for i in summary["images"]}
    assert {image: seconds[image] for image in first} == first_seconds
    features = json.loads((out / "cells.geojson").read_text())["features"]
    assert len(features) == len(cells_after)
    assert not (out / RESUME_FILE).exists() and not list(out.glob(".*.part"))


def test_resume_refuses_a_run_of_another_folder(fields, tmp_path, tiny_model_dir, child_env):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"partial": True, "case": {"folder": "/elsewhere"}}))
    run = subprocess.run(batch_cmd(fields, out, tiny_model_dir, "--resume"), env=child_env(), capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 2 and "holds a stopped run of another folder (/elsewhere)" in run.stderr
