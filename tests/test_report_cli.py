"""``leukviewer report`` (a folder as reviewed in the app) and ``leukviewer batch --pdf --csv --geojson``."""
import csv
import json
import shutil

import pytest

from leukviewer import RUO_NOTICE
from leukviewer.__main__ import main
from leukviewer.core.model import classifier as classifier_module
from leukviewer.core.model.classifier import CellClassifier
from leukviewer.core.analysis.pipeline import analyze_folder
from leukviewer.core.review.session import ReviewSession
from leukviewer.core.analysis.store import ResultsStore


@pytest.fixture
def fields(shared_data, tmp_path):
    folder = tmp_path / "case"
    folder.mkdir()
    for p in sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[6:9]:
        shutil.copy(p, folder)
    return folder


def test_report_uses_the_apps_saved_review_and_results(fields, tiny_model_dir, tmp_path, monkeypatch, capsys):
    clf = CellClassifier(tiny_model_dir)
    info = clf.info
    session = ReviewSession.open(fields, {"name": info.name, "version": info.version, "sha256": info.sha256})
    store = ResultsStore(session.directory, info.sha256)
    results = list(analyze_folder(fields, clf))
    for result in results:       # what the review window does after analysing
        store.put(result)
    cell = results[0].cells[0]
    session.set_label(cell.cell_id, "ALL" if cell.label != "ALL" else "HEM", cell.label, "Dr. Ada")

    def no_analysis(*args, **kwargs):
        raise AssertionError("stored results should have been used")

    monkeypatch.setattr(classifier_module, "CellClassifier", no_analysis)
    out = tmp_path / "out"
    assert main(["report", str(fields), "--out", str(out), "--model", str(tiny_model_dir), "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cells.csv", "cells.geojson", "images.csv", "report.pdf"]
    with open(out / "cells.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(r.cells) for r in results)
    reviewed = [r for r in rows if r["reviewer"]]
    assert [(r["cell_id"], r["reviewer"]) for r in reviewed] == [(cell.cell_id, "Dr. Ada")]
    assert RUO_NOTICE in capsys.readouterr().out

    # again: never overwritten silently; --pdf alone writes only the PDF, under a new name
    assert main(["report", str(fields), "--out", str(out), "--model", str(tiny_model_dir), "--quiet", "--pdf"]) == 0
    assert (out / "report-2.pdf").is_file() and not (out / "cells-2.csv").exists()


def test_report_analyses_a_folder_without_stored_results_and_stores_them(fields, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    assert main(["report", str(fields), "--out", str(out), "--model", str(tiny_model_dir), "--quiet", "--csv"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cells.csv", "images.csv"]
    sha = json.loads((tiny_model_dir / "model.json").read_text())["weights"]["sha256"]
    session = ReviewSession.open(fields)
    assert len(ResultsStore(session.directory, sha).all()) == 3


def test_report_errors_are_clear(fields, tiny_model_dir, tmp_path, capsys):
    empty = tmp_path / "no-images"
    empty.mkdir()
    assert main(["report", str(empty), "--out", str(tmp_path / "o"), "--model", str(tiny_model_dir)]) == 1
    assert "holds no images" in capsys.readouterr().err
    assert list(empty.iterdir()) == []         # reading a folder for a report leaves no .leukviewer/ in it
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["report", str(fields), "--out", str(tmp_path / "o"), "--model", str(tmp_path)]) == 2
    assert "model.json is missing" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["report", str(fields), "--out", str(blocker / "o"), "--model", str(tiny_model_dir),
                 "--quiet"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_batch_writes_the_chosen_formats_together_and_refuses_to_overwrite(fields, tiny_model_dir, tmp_path,
                                                                            capsys):
    out = tmp_path / "batch"
    args = ["batch", str(fields), "--out", str(out), "--model", str(tiny_model_dir), "--quiet"]
    assert main(args + ["--pdf", "--csv", "--geojson"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cells.csv", "cells.geojson", "images.csv", "report.pdf",
                                                     "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    doc = json.loads((out / "cells.geojson").read_text())
    # Every cell is exported, cells cut by the border too (flagged); only whole cells are counted.
    listed = summary["case"]["white_cells"] + summary["case"]["border_cells_excluded"]
    assert len(doc["features"]) == listed > 0
    with open(out / "cells.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == listed and sum(r["partial"] == "false" for r in rows) == summary["case"]["white_cells"]
    from pypdf import PdfReader

    pages = PdfReader(str(out / "report.pdf")).pages
    assert all(RUO_NOTICE in " ".join(p.extract_text().split()) for p in pages)
    before = (out / "cells.csv").read_bytes()
    assert main(args + ["--csv"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "cells.csv").read_bytes() == before

    only_geojson = tmp_path / "geo"
    assert main(args[:3] + [str(only_geojson)] + args[4:] + ["--geojson"]) == 0
    assert sorted(p.name for p in only_geojson.iterdir()) == ["cells.geojson", "summary.json"]
