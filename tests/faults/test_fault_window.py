"""What the review window shows when a save fails, the audit log is damaged, or another window labels the same
case."""
import errno
import json
import os



def open_case(qtbot, window, folder):
    with qtbot.waitSignal(window.analysisFinished, timeout=120_000):
        window.open_folder(folder)


def test_two_windows_on_one_case_keep_both_reviewers_labels(qtbot, fault_window, bccd_case):
    case = bccd_case("shared", n=3)
    a, b = fault_window(), fault_window()
    open_case(qtbot, a, case)
    open_case(qtbot, b, case)
    first, second = [c for c in a.gallery.order() if not a.cells[c].partial][:2]   # counted cells
    a.select_cell(first)
    a.label_current("ALL", advance=False)
    assert a.wait_for_saves()
    b.select_cell(second)
    b.label_current("HEM", advance=False)
    assert b.wait_for_saves()
    saved = json.loads((case / ".leukviewer" / "review.json").read_text())["reviews"]
    assert saved[first]["label"] == "ALL" and saved[second]["label"] == "HEM"
    # window B saved after A: it now counts A's label too (case counts and gallery)
    assert b.summary_panel.case_counts["reviewed"]["reviewed"] == 2
    assert b.gallery.group_of(first) == "ALL"


def test_disk_full_while_labelling_says_so_and_keeps_the_saved_review(qtbot, fault_window, bccd_case, monkeypatch):
    case = bccd_case("full", n=2)
    window = fault_window()
    open_case(qtbot, window, case)
    first, second = window.gallery.order()[:2]
    window.select_cell(first)
    window.label_current("HEM", advance=False)
    assert window.wait_for_saves()
    state = (case / ".leukviewer" / "review.json").read_bytes()

    def enospc(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", enospc)
    window.select_cell(second)
    window.label_current("ALL", advance=False)
    assert window.wait_for_saves()      # the save runs in the save worker
    monkeypatch.undo()
    level, text = window.messages[-1]
    assert level == "error" and text.startswith("The review could not be saved: the disk is full")
    assert "the review saved before it is intact" in text
    assert (case / ".leukviewer" / "review.json").read_bytes() == state
    assert window.session.reviewed_label(second) is None and window.session.reviewed_label(first) == "HEM"
    assert window.current_cell == second          # still on the cell, so the reviewer can try again


def test_a_torn_audit_line_is_reported_when_the_case_opens(qtbot, fault_window, bccd_case):
    case = bccd_case("torn", n=1)
    window = fault_window()
    open_case(qtbot, window, case)
    window.select_cell(window.gallery.order()[0])
    window.label_current("ALL", advance=False)
    assert window.wait_for_saves()
    with open(case / ".leukviewer" / "audit.jsonl", "ab") as f:
        f.write(b'{"time": "2026-')
    again = fault_window()
    open_case(qtbot, again, case)
    warnings = [text for level, text in again.messages if level == "warning"]
    assert any("audit log" in t and "damaged (its last line" in t for t in warnings), again.messages
    assert again.session.reviewed_label(window.gallery.order()[0]) == "ALL"


def test_a_window_on_an_edited_model_json_refuses_it_naming_the_file(qtbot, tiny_model_dir, tmp_path, monkeypatch):
    import shutil

    from leukviewer.gui.main_window import MainWindow

    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    meta = json.loads((folder / "model.json").read_text())
    meta.setdefault("decision", {})["threshold"] = 0.01
    (folder / "model.json").write_text(json.dumps(meta))
    window = MainWindow(model_dir=folder)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: any(level == "error" for level, _ in window.messages), timeout=60_000)
    text = next(t for level, t in window.messages if level == "error")
    assert text.startswith("The model could not be loaded: model.json in ") and "was changed after" in text
    assert window.loaded_model is None and window.model_label.text() == "Model: none"
    window.close()


def test_a_model_folder_without_manifest_loads_with_a_visible_warning(make_window, tiny_model_dir, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "legacy")
    (folder / "manifest.sha256").unlink()
    window = make_window(folder)
    warnings = [t for level, t in window.messages if level == "warning"]
    assert any("has no manifest.sha256" in t and "model.json" in t for t in warnings), window.messages
    window.close()
