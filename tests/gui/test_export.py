"""File → Export report… writes the reviewed case's report through the worker."""
import csv

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
        lambda cls, parent=None, default_dir=None: ExportChoice(out, {"pdf", "csv", "geojson"}, False)))
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
