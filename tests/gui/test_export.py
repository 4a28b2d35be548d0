"""File → Export report… writes the reviewed case's report through the worker."""
import csv
from pathlib import Path

from pypdf import PdfReader

from leukviewer import RUO_NOTICE
from leukviewer.gui.export_dialog import ExportChoice, ExportDialog


def test_export_report_from_the_window_after_review(qtbot, make_window, case_folder, reviewer_name, tmp_path,
                                                    monkeypatch):
    case = case_folder("export", n=4)
    window = make_window()
    with qtbot.waitSignal(window.analysisFinished, timeout=120_000):
        window.open_folder(case)
    cell_id = next(c for c in window.gallery.order() if window.cells[c].label in ("ALL", "UNCERTAIN"))
    window.select_cell(cell_id)
    window.label_current("HEM")
    out = tmp_path / "report"
    out.mkdir()
    monkeypatch.setattr(ExportDialog, "ask", classmethod(
        lambda cls, parent=None, **kwargs: ExportChoice(out, {"pdf", "csv", "geojson"}, False)))
    with qtbot.waitSignal(window.reportExported, timeout=60_000) as blocker:
        window.export_report()
    written = sorted(p.rsplit("/", 1)[-1] for p in blocker.args[0])
    assert written == ["cells.csv", "cells.geojson", "images.csv", "report.pdf"]
    rows = {r["cell_id"]: r for r in csv.DictReader((out / "cells.csv").open(encoding="utf-8"))}
    assert rows[cell_id]["reviewed_label"] == "HEM" and rows[cell_id]["reviewer"] == "Dr. Test"
    text = "\n".join(page.extract_text() for page in PdfReader(out / "report.pdf").pages)
    assert RUO_NOTICE in text
    # a second export never overwrites silently
    with qtbot.waitSignal(window.reportExported, timeout=60_000) as again:
        window.export_report()
    assert all(p not in blocker.args[0] for p in again.args[0])


def test_export_before_any_analysis_says_what_to_do(qtbot, make_window):
    window = make_window()
    window.export_report()
    assert "Open and analyse a folder" in window.banner.text.text()


def test_export_dialog_warns_about_unreviewed_flags_and_suggests_a_folder_outside_the_images(
        qtbot, make_window, case_folder, tmp_path, monkeypatch):
    case = case_folder("unreviewed", n=3)
    window = make_window()
    with qtbot.waitSignal(window.analysisFinished, timeout=120_000):
        window.open_folder(case)
    asked = {}
    monkeypatch.setattr(ExportDialog, "ask", classmethod(lambda cls, parent=None, **kwargs: asked.update(kwargs)))
    window.export_report()
    flagged = sum(1 for c in window.cells.values() if c.label in ("ALL", "UNCERTAIN"))
    assert flagged > 0
    assert asked["review"] == {"flagged": flagged, "flagged_unreviewed": flagged, "reviewed": 0}
    assert Path(asked["image_folder"]) == Path(case)

    dialog = ExportDialog(window, image_folder=case, review=asked["review"])
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.review_warning.isVisible()
    assert f"None of the {flagged} flagged cells" in dialog.review_warning.text()
    assert "Analysis report (not reviewed)" in dialog.review_warning.text()
    suggested = Path(dialog.folder_edit.text())
    assert suggested == Path(case).resolve().parent / f"{Path(case).name}-report"   # beside, not inside
    assert not dialog.use_suggested.isVisible() and "image folder" not in dialog.note.text()
    dialog.folder_edit.setText(str(Path(case) / "out"))
    assert "inside the image folder" in dialog.note.text() and dialog.use_suggested.isVisible()
    dialog.use_suggested.click()
    assert Path(dialog.folder_edit.text()) == suggested and not dialog.use_suggested.isVisible()

    partly = ExportDialog(window, image_folder=case, review={"flagged": 5, "flagged_unreviewed": 2, "reviewed": 3})
    qtbot.addWidget(partly)
    assert "2 of the 5 flagged cells" in partly.review_warning.text()
    done = ExportDialog(window, image_folder=case, review={"flagged": 5, "flagged_unreviewed": 0, "reviewed": 5})
    qtbot.addWidget(done)
    assert done.review_warning.text() == ""


def test_a_report_of_a_read_only_folder_is_suggested_under_home(tmp_path, monkeypatch):
    from leukviewer.core.reports.export import is_inside, suggested_report_dir

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    images = tmp_path / "share" / "case 3"
    images.mkdir(parents=True)
    assert suggested_report_dir(images) == (tmp_path / "share" / "case 3-report").resolve()
    monkeypatch.setattr("os.access", lambda path, mode: False)
    assert suggested_report_dir(images) == tmp_path / "home" / "leukviewer-reports" / "case 3-report"
    assert is_inside(images / "x", images) and is_inside(images, images)
    assert not is_inside(tmp_path / "share" / "case 3-report", images)
