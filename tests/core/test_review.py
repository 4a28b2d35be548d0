import json
import os
import stat

import pytest

from leukviewer.core.analysis.results import Cell, ImageResult
from leukviewer.core.review.session import ReviewError, ReviewSession, reviewed_counts
from leukviewer.core.analysis.store import ResultsStore

MODEL = {"name": "m", "version": "1", "sha256": "a" * 64}


def cell(n, label, p):
    return Cell(f"f.jpg#{n}", "f.jpg", (1, 2, 3, 4), [[0, 0], [3, 0], [3, 4]], (1.5, 2.0), 12, p, label, False,
                "m", "1", "a" * 64)


def test_changes_autosave_with_audit_and_restore_on_reopen(tmp_path):
    s = ReviewSession.open(tmp_path, MODEL)
    s.set_label("f.jpg#1", "HEM", suggested="ALL", reviewer="Dr. Ada")
    s.confirm("f.jpg#2", "UNCERTAIN", reviewer="Dr. Ada")
    s.set_position("f.jpg", "f.jpg#2")
    assert (tmp_path / ".leukviewer" / "review.json").is_file()
    audit = s.audit_entries()
    assert [(e["cell_id"], e["old"], e["new"], e["reviewer"]) for e in audit] == [
        ("f.jpg#1", None, "HEM", "Dr. Ada"), ("f.jpg#2", None, "UNCERTAIN", "Dr. Ada")]
    again = ReviewSession.open(tmp_path, MODEL)
    assert again.reviewed_label("f.jpg#1") == "HEM" and again.reviewed_label("f.jpg#2") == "UNCERTAIN"
    assert again.position == {"image": "f.jpg", "cell_id": "f.jpg#2"}
    assert not again.model_changed()


def test_undo_redo_are_saved_and_audited(tmp_path):
    s = ReviewSession.open(tmp_path, MODEL)
    s.set_label("f.jpg#1", "HEM", "ALL", "r")
    s.set_label("f.jpg#1", "UNCERTAIN", "ALL", "r")
    assert s.undo("r") == "f.jpg#1" and s.reviewed_label("f.jpg#1") == "HEM"
    assert s.undo("r") == "f.jpg#1" and s.reviewed_label("f.jpg#1") is None
    assert ReviewSession.open(tmp_path).reviewed_label("f.jpg#1") is None
    assert s.redo("r") == "f.jpg#1" and s.reviewed_label("f.jpg#1") == "HEM"
    assert [e["action"] for e in s.audit_entries()] == ["change", "change", "undo", "undo", "redo"]


def test_the_audit_log_says_a_change_back_to_the_models_label_is_a_revert(tmp_path):
    s = ReviewSession.open(tmp_path, MODEL)
    s.confirm("f.jpg#1", "ALL", "r")                      # the model's label, first time
    s.set_label("f.jpg#1", "HEM", "ALL", "r")             # the reviewer disagrees
    s.set_label("f.jpg#1", "ALL", "ALL", "r")             # and goes back to the model's label
    s.confirm("f.jpg#1", "ALL", "r")                      # confirmed again
    s.set_label("f.jpg#2", "UNCERTAIN", "HEM", "r")
    s.set_label("f.jpg#2", "ALL", "HEM", "r")             # another label, still not the model's
    assert [(e["cell_id"], e["old"], e["new"], e["action"]) for e in s.audit_entries()] == [
        ("f.jpg#1", None, "ALL", "confirm"), ("f.jpg#1", "ALL", "HEM", "change"),
        ("f.jpg#1", "HEM", "ALL", "revert to model"), ("f.jpg#1", "ALL", "ALL", "confirm"),
        ("f.jpg#2", None, "UNCERTAIN", "change"), ("f.jpg#2", "UNCERTAIN", "ALL", "change")]


def test_counts_after_review(tmp_path):
    cells = [cell(1, "ALL", 0.9), cell(2, "HEM", 0.1), cell(3, "UNCERTAIN", 0.5)]
    s = ReviewSession.open(tmp_path, MODEL)
    before = reviewed_counts(cells, s)
    assert (before["blasts"], before["uncertain"], before["reviewed"]) == (1, 1, 0)
    s.set_label("f.jpg#1", "HEM", "ALL", "r")
    s.set_label("f.jpg#3", "ALL", "UNCERTAIN", "r")
    after = reviewed_counts(cells, s)
    assert (after["blasts"], after["normal"], after["uncertain"], after["reviewed"], after["changed"]) == (1, 2, 0, 2, 2)




def test_read_only_folder_saves_in_user_data_dir_when_folder_not_writable(tmp_path, monkeypatch):
    case = tmp_path / "case"
    case.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(case)) and mode == os.W_OK
                        else real_access(p, mode))
    s = ReviewSession.open(case, MODEL)
    s.set_label("x#1", "ALL", "ALL", "r")
    assert not (case / ".leukviewer").exists()
    assert str(s.directory).startswith(os.environ["LEUKVIEWER_DATA_DIR"])
    assert ReviewSession.open(case).reviewed_label("x#1") == "ALL"


def test_opening_a_folder_only_to_read_it_leaves_no_trace_in_it(tmp_path):
    from leukviewer.core.retrain.data import read_saved_review

    s = ReviewSession.open(tmp_path, MODEL)
    assert s.reviews == {} and s.audit_entries() == [] and read_saved_review(tmp_path) is None
    assert list(tmp_path.iterdir()) == []
    s.set_label("f.jpg#1", "HEM", "ALL", "r")      # the first change makes the review's folder
    assert (tmp_path / ".leukviewer" / "review.json").is_file()


def test_bad_labels_and_corrupt_state_are_clear_errors(tmp_path):
    s = ReviewSession.open(tmp_path, MODEL)
    with pytest.raises(ReviewError, match="unknown label"):
        s.set_label("x", "BLAST", "ALL", "r")
    with pytest.raises(ReviewError, match="reviewer"):
        s.set_label("x", "ALL", "ALL", "")
    (tmp_path / ".leukviewer").mkdir(exist_ok=True)
    (tmp_path / ".leukviewer" / "review.json").write_text("{broken")
    with pytest.raises(ReviewError, match="left untouched"):
        ReviewSession.open(tmp_path)
    assert (tmp_path / ".leukviewer" / "review.json").read_text() == "{broken"


def test_results_store_round_trip_and_invalidation(tmp_path):
    img = tmp_path / "f.jpg"
    img.write_bytes(b"x" * 10)
    r = ImageResult(str(img), "f.jpg", "ok", "smear_field", 640, 480, [cell(1, "ALL", 0.9)])
    store = ResultsStore(tmp_path / ".leukviewer", "a" * 64)
    store.put(r)
    back = store.get(img, "f.jpg")
    assert back is not None and back.cells[0] == r.cells[0] and back.width == 640
    assert ResultsStore(tmp_path / ".leukviewer", "b" * 64).get(img, "f.jpg") is None  # other model
    img.write_bytes(b"y" * 11)
    assert store.get(img, "f.jpg") is None  # the image changed
