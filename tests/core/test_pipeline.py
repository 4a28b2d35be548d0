"""The analysis pipeline on real images, with a real (tiny) model folder."""
import dataclasses
import os
import shutil
import subprocess
import sys
import tracemalloc
import json
import csv

import numpy as np
import pytest
from PIL import Image

from leukviewer.core.model.classifier import CellClassifier
from leukviewer.core.analysis.pipeline import analyze_folder, analyze_images
from leukviewer.core.analysis.results import CaseSummary


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return CellClassifier(tiny_model_dir)


def cnmc_files(cnmc_root):
    return sorted((cnmc_root / "training_data" / "fold_1").glob("*/*.png"))


def test_each_cnmc_crop_gives_exactly_one_classified_cell(cnmc_root, classifier, tmp_path):
    for p in cnmc_files(cnmc_root)[::4]:
        shutil.copy(p, tmp_path)
    summary = CaseSummary(str(tmp_path))
    results = list(analyze_folder(tmp_path, classifier, summary=summary))
    assert len(results) == len(list(tmp_path.iterdir()))
    for r in results:
        assert r.status == "ok" and r.kind == "single_cell" and len(r.cells) == 1
        cell = r.cells[0]
        assert 0.0 <= cell.blast_probability <= 1.0
        assert cell.label in ("ALL", "HEM", "UNCERTAIN")
        assert cell.model_sha256 == classifier.info.sha256 and cell.cell_id == f"{r.image}#1"
    assert summary.white_cells == len(results) and summary.images_processed == len(results)
    assert summary.blasts + summary.uncertain <= summary.white_cells


def test_results_are_deterministic(shared_data, classifier):
    folder = shared_data / "bccd" / "JPEGImages"
    cells = [c for r in analyze_folder(folder, classifier) for c in r.cells]
    a = [c.to_dict() for c in cells]
    b = [c.to_dict() for r in analyze_folder(folder, classifier) for c in r.cells]
    assert a == b and len(a) >= 30
    # what the resume log and the review store write: exactly dataclasses.asdict, a copy that can be changed
    assert a == [dataclasses.asdict(c) for c in cells]
    a[0]["outline"][0][0] += 1
    a[0]["type_probabilities"].clear()
    assert cells[0].to_dict() == dataclasses.asdict(cells[0]) != a[0]


def test_smear_fields_give_located_white_cells(shared_data, classifier):
    results = list(analyze_folder(shared_data / "bccd" / "JPEGImages", classifier))
    assert len(results) == 30 and all(r.kind == "smear_field" for r in results)
    for r in results:
        for c in r.cells:
            x, y, w, h = c.bbox
            assert 0 <= x and 0 <= y and x + w <= r.width and y + h <= r.height
            assert len(c.outline) >= 3 and c.area > 0


def test_bad_files_are_listed_and_good_ones_processed(cnmc_root, shared_data, classifier, tmp_path):
    good = cnmc_files(cnmc_root)[:3] + sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:2]
    for p in good:
        shutil.copy(p, tmp_path)
    jpeg = (shared_data / "bccd" / "JPEGImages" / "BloodImage_00010.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is a text file, not a picture")
    Image.new("RGB", (1, 1), (200, 100, 100)).save(tmp_path / "tiny.png")
    Image.new("RGB", (20000, 15000)).save(tmp_path / "huge.png")   # 300 MP, above the pixel limit
    (tmp_path / "readme.txt").write_text("not an image")
    summary = CaseSummary(str(tmp_path))
    results = {r.image: r for r in analyze_folder(tmp_path, classifier, summary=summary)}
    for p in good:
        assert results[p.name].ok and results[p.name].cells, p.name
    for bad in ("truncated.jpg", "empty.png", "notes.jpg", "tiny.png", "huge.png"):
        assert results[bad].status.startswith("unreadable: "), (bad, results[bad].status)
        assert len(results[bad].status) > len("unreadable: ") + 5
    assert summary.images_failed == 5 and summary.images_processed == len(good)
    assert summary.skipped_files == ["readme.txt"]


def test_cancel_after_the_first_image_stops_reading(cnmc_root, classifier, tmp_path):
    for p in cnmc_files(cnmc_root)[:40]:
        shutil.copy(p, tmp_path)
    stop = {"now": False}
    seen = []
    for r in analyze_folder(tmp_path, classifier, should_stop=lambda: stop["now"], max_pending_images=1):
        seen.append(r)
        stop["now"] = True
    assert len(seen) == 1
    summary = CaseSummary(str(tmp_path))
    stop["now"] = False
    n = 0
    for r in analyze_folder(tmp_path, classifier, should_stop=lambda: stop["now"], summary=summary):
        n += 1
        stop["now"] = True
    assert n <= 8 and summary.cancelled   # only images already read finish; no new one is opened


def test_memory_stays_flat_over_500_images(cnmc_root, classifier, tmp_path):
    files = cnmc_files(cnmc_root)
    big = tmp_path / "big"
    big.mkdir()
    for i in range(500):
        os.symlink(files[i % len(files)], big / f"cell_{i:04d}.png")

    def peak(limit):
        tracemalloc.start()
        n = 0
        for r in analyze_folder(big, classifier, should_stop=lambda: n >= limit):
            n += 1
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return n, top

    n_small, peak_small = peak(50)
    n_big, peak_big = peak(500)
    assert n_small >= 50 and n_big == 500
    assert peak_big < 1.5 * peak_small + 5_000_000, (peak_small, peak_big)


def test_batch_cli_writes_csv_and_summary(shared_data, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "leukviewer", "batch", str(shared_data / "bccd" / "JPEGImages"), "--out", str(out),
           "--model", str(tiny_model_dir), "--quiet"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader((out / "cells.csv").open(encoding="utf-8")))
    summary = json.loads((out / "summary.json").read_text())
    # Every cell is listed, cells cut by the field's border flagged; those are left out of the counts (as
    # CellaVision does) and their number is reported in the summary and in images.csv.
    whole = [r for r in rows if r["partial"] == "false"]
    cut = [r for r in rows if r["partial"] == "true"]
    assert len(whole) + len(cut) == len(rows) and whole and cut
    assert summary["case"]["white_cells"] == len(whole)
    assert summary["case"]["border_cells_excluded"] == len(cut)
    images = list(csv.DictReader((out / "images.csv").open(encoding="utf-8")))
    assert sum(int(r["border_cells_excluded"]) for r in images) == len(cut)
    assert sum(int(r["white_cells"]) for r in images) == len(whole)
    assert summary["case"]["images_processed"] == 30
    assert summary["notice"] == "For Research Use Only. Not for use in diagnostic procedures."
    for key in ("image", "cell_id", "x", "y", "width", "height", "area", "p_blast", "label", "partial",
                "model_version"):
        assert key in rows[0]
    assert sum(r["label"] == "ALL" for r in whole) == summary["case"]["blasts"]
    # blasts per 100 white cells is the range the undecided (UNCERTAIN) white cells allow, for the case and per
    # image, in summary.json and images.csv alike (tiny-model cells are mostly UNCERTAIN: a single 0 % would lie)
    white = [r for r in whole if r["cell_type"] != "non_wbc"]   # cells cut by the border are not counted
    blasts, undecided = sum(r["label"] == "ALL" for r in white), sum(r["label"] == "UNCERTAIN" for r in white)
    assert undecided > 0
    case = summary["case"]
    assert case["blast_percentage_min"] == round(100 * blasts / len(white), 2)
    assert case["blast_percentage_max"] == round(100 * (blasts + undecided) / len(white), 2) > case["blast_percentage_min"]
    from leukviewer.core.analysis.results import blast_percentage_text

    assert f"blasts per 100 white cells {blast_percentage_text(case)}" in run.stdout
    assert f"{undecided} of {len(white)} white cells undecided" in run.stdout
    images = {r["image"]: r for r in csv.DictReader((out / "images.csv").open(encoding="utf-8"))}
    for d in summary["images"]:
        mine = [r for r in white if r["image"] == d["image"]]
        if not mine:
            assert d["blast_percentage_min"] is None and images[d["image"]]["blast_percentage_max"] == ""
            continue
        b, u = sum(r["label"] == "ALL" for r in mine), sum(r["label"] == "UNCERTAIN" for r in mine)
        assert (d["blast_percentage_min"], d["blast_percentage_max"]) == (round(100 * b / len(mine), 2),
                                                                        round(100 * (b + u) / len(mine), 2))
        row = images[d["image"]]
        assert (float(row["blast_percentage_min"]), float(row["blast_percentage_max"])) == (
            d["blast_percentage_min"], d["blast_percentage_max"])
        assert (row["reviewed_white_cells"], row["not_reviewed_white_cells"]) == ("0", str(len(mine)))
    # a second run refuses to overwrite silently
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_batch_cli_fails_only_when_nothing_was_processed(tiny_model_dir, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    run = subprocess.run([sys.executable, "-m", "leukviewer", "batch", str(tmp_path / "in"), "--out",
                          str(tmp_path / "out"), "--model", str(tiny_model_dir), "--quiet"],
                         capture_output=True, text=True)
    assert run.returncode == 1 and "broken.jpg" in run.stdout and "Traceback" not in run.stderr


def test_missing_model_is_a_clear_error(tmp_path, shared_data):
    run = subprocess.run([sys.executable, "-m", "leukviewer", "batch", str(shared_data / "bccd" / "JPEGImages"),
                          "--out", str(tmp_path / "o"), "--model", str(tmp_path / "nomodel")],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "model folder not found" in run.stderr


def a_bug_in_the_first_image(monkeypatch):
    """A bug in leukviewer that meets the first image analysed (images are read in name order), logged quietly."""
    from leukviewer.core.analysis import pipeline

    real, calls = pipeline.classify_image_kind, []

    def kind_with_a_bug(rgb):
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("unsupported operand type(s) for +: 'NoneType' and 'int'")
        return real(rgb)

    monkeypatch.setattr(pipeline, "classify_image_kind", kind_with_a_bug)
    monkeypatch.setattr(pipeline, "log", type("Quiet", (), {"exception": staticmethod(lambda *a, **k: None)}))


def test_a_fault_in_the_analysis_is_not_passed_off_as_an_unreadable_image(shared_data, classifier, tmp_path,
                                                                        monkeypatch):
    """Only a file that cannot be decoded is "unreadable"; a bug while analysing a good image says so (and the
    other images are still analysed)."""

    for p in sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:2]:
        shutil.copy(p, tmp_path)
    broken = sorted(p.name for p in tmp_path.iterdir())[0]
    a_bug_in_the_first_image(monkeypatch)
    summary = CaseSummary(str(tmp_path))
    results = {r.image: r for r in analyze_folder(tmp_path, classifier, summary=summary)}
    status = results[broken].status
    assert status.startswith("analysis failed: TypeError") and "not in the image" in status, status
    assert "unreadable" not in status and not results[broken].ok
    assert summary.images_failed == 1 and summary.failures[0]["reason"] == status


def test_the_batch_command_counts_an_analysis_fault_apart_from_unreadable_files(shared_data, tiny_model_dir, tmp_path,
                                                                                 monkeypatch, capsys):
    """A readable image the analysis failed on is a fault to report, not an unreadable file: the batch command's
    summary line and summary.json count the two apart."""
    from leukviewer.__main__ import main

    case = tmp_path / "case"
    case.mkdir()
    for p in sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:2]:
        shutil.copy(p, case)
    (case / "zz-truncated.jpg").write_bytes((shared_data / "bccd" / "JPEGImages" / "BloodImage_00010.jpg")
                                            .read_bytes()[:2000])
    a_bug_in_the_first_image(monkeypatch)
    assert main(["batch", str(case), "--out", str(tmp_path / "out"), "--model", str(tiny_model_dir), "--quiet"]) == 0
    said = capsys.readouterr().out
    assert "1 of 3 images analysed (1 unreadable, 1 failed in the analysis (a fault in leukviewer)," in said, said
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    case_summary = summary.get("case", summary)
    assert (case_summary["images_unreadable"], case_summary["images_analysis_failed"]) == (1, 1), case_summary


def test_cells_of_consecutive_images_fill_whole_batches_with_the_same_results(shared_data, tiny_model_dir, monkeypatch):
    """The network runs fixed batch shapes: cells of the next images fill a batch instead of padding (37 cells of a
    large field as 32 + 5 paid for 32 + 8). Each image's cells are exactly those it gets classified alone (the
    window's setting), and every image still comes out, in file order."""
    classifier = CellClassifier(tiny_model_dir, batch_size=5)   # BCCD fields hold 1-3 white cells
    folder = shared_data / "bccd" / "JPEGImages"
    images = sorted(folder.glob("*.jpg"))
    alone = [r for r in analyze_images(images, folder, classifier, max_pending_images=1)]
    sizes = []
    real = classifier.class_probabilities
    monkeypatch.setattr(classifier, "class_probabilities", lambda x: sizes.append(len(x)) or real(x))
    together = list(analyze_images(images, folder, classifier, max_pending_images=len(images)))
    assert [r.image for r in together] == [r.image for r in alone] == [p.name for p in images]
    for a, b in zip(alone, together):
        assert [c.cell_id for c in a.cells] == [c.cell_id for c in b.cells]
        assert np.allclose([c.blast_probability for c in a.cells], [c.blast_probability for c in b.cells], atol=1e-5)
    batch = classifier.batch_size
    assert sum(sizes) == sum(len(r.cells) for r in alone) > batch
    assert all(n == batch for n in sizes[:-1]) and 0 < sizes[-1] <= batch
