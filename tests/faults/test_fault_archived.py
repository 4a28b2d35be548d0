"""A case reviewed in the app, then archived read-only: it opens with its review, `leukviewer report` reports
the review, and the next label is saved in the user's data folder (the archive stays as it was)."""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

from leukviewer.core.model.classifier import CellClassifier
from leukviewer.core.analysis.pipeline import analyze_folder
from leukviewer.core.review.session import ReviewSession
from leukviewer.core.analysis.store import ResultsStore

# Root ignores file modes: drop the capabilities that let it write into a read-only folder.
NO_OVERRIDE = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner"]


def as_user(cmd):
    if os.geteuid() != 0:
        return cmd
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: a read-only folder cannot be simulated")
    return NO_OVERRIDE + cmd


@pytest.fixture
def archived_case(shared_data, tiny_model_dir, tmp_path):
    """3 BCCD fields analysed and one cell relabelled by Dr. Ada, then made read-only; writable again after."""
    folder = tmp_path / "case"
    folder.mkdir()
    for p in sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[6:9]:
        shutil.copy(p, folder)
    clf = CellClassifier(tiny_model_dir)
    session = ReviewSession.open(folder, {"name": clf.info.name, "version": clf.info.version,
                                          "sha256": clf.info.sha256})
    store = ResultsStore(session.directory, clf.info.sha256)
    results = list(analyze_folder(folder, clf))
    for result in results:
        store.put(result)
    cells = [c for r in results for c in r.cells]
    first = cells[0]
    session.set_label(first.cell_id, "ALL" if first.label != "ALL" else "HEM", first.label, "Dr. Ada")
    paths = [folder, *folder.rglob("*")]
    for p in paths:
        p.chmod(p.stat().st_mode & ~0o222)
    yield folder, cells
    for p in paths:
        p.chmod(p.stat().st_mode | 0o200)


def test_report_of_an_archived_read_only_case_shows_its_review(archived_case, tiny_model_dir, tmp_path, child_env):
    folder, cells = archived_case
    before = (folder / ".leukviewer" / "review.json").read_bytes()
    out = tmp_path / "out"
    proc = subprocess.run(as_user([sys.executable, "-m", "leukviewer", "report", str(folder), "--out", str(out),
                                   "--model", str(tiny_model_dir), "--quiet", "--csv"]),
                          env=child_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "no saved review" not in proc.stdout and "analysed now" not in proc.stdout
    with open(out / "cells.csv", encoding="utf-8", newline="") as f:
        reviewed = [(r["cell_id"], r["reviewer"]) for r in csv.DictReader(f) if r["reviewer"]]
    assert reviewed == [(cells[0].cell_id, "Dr. Ada")]
    assert (folder / ".leukviewer" / "review.json").read_bytes() == before


CHILD = """
import json, sys
from leukviewer.core.review.session import ReviewSession
s = ReviewSession.open(sys.argv[1])
opened = {k: v.label for k, v in s.reviews.items()}
note = s.location_note()
s.set_label(sys.argv[2], "UNCERTAIN", "HEM", "Dr. Bo")
again = ReviewSession.open(sys.argv[1])
from leukviewer.core.reports.export import load_case
from leukviewer.core.retrain.data import export_reviewed_cells
case = load_case(sys.argv[1], sys.argv[3])      # reopened: the results stored beside the archive are reused
cells = export_reviewed_cells([sys.argv[1]], sys.argv[4])   # and the reviewed cells can train a model
print(json.dumps({"opened": opened, "note": note, "directory": str(again.directory),
                  "labels": {k: v.label for k, v in again.reviews.items()},
                  "audit": [e["reviewer"] for e in again.audit_entries()],
                  "reused": case.reused, "analysed": case.analysed, "exported": cells.images}))
"""


def test_an_archived_case_opens_reviewed_and_new_labels_go_to_the_user_data_folder(archived_case, tiny_model_dir,
                                                                                   tmp_path, child_env):
    folder, cells = archived_case
    before = (folder / ".leukviewer" / "review.json").read_bytes()
    proc = subprocess.run(as_user([sys.executable, "-c", CHILD, str(folder), cells[1].cell_id, str(tiny_model_dir),
                                   str(tmp_path / "reviewed-cells")]), env=child_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(got["opened"]) == [cells[0].cell_id]                      # opened with its review
    assert "read-only" in got["note"]
    assert got["directory"].startswith(os.environ["LEUKVIEWER_DATA_DIR"])
    assert got["labels"] == {**got["opened"], cells[1].cell_id: "UNCERTAIN"}   # old label kept, new one added
    assert got["audit"] == ["Dr. Ada", "Dr. Bo"]                          # the history came along
    assert (got["reused"], got["analysed"]) == (3, 0)                     # no re-analysis of the archive
    assert got["exported"] == 1                                           # Dr. Ada's cell (UNCERTAIN is not used)
    assert (folder / ".leukviewer" / "review.json").read_bytes() == before
