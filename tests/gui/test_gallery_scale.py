"""The gallery and the review keys at scale: a label changes one tile and never waits for the disk, every label
reaches the disk in order (the last one wins, closing flushes), and thumbnails are held in a bounded cache."""
import json
import os
import time

from PySide6.QtCore import Qt


def run_to_end(qtbot, window, folder, timeout=120_000):
    with qtbot.waitSignal(window.analysisFinished, timeout=timeout):
        window.open_folder(folder)


def saved_labels(case):
    return {k: v["label"] for k, v in json.loads((case / ".leukviewer" / "review.json").read_text())["reviews"].items()}


def test_review_keys_never_wait_for_a_slow_disk_and_every_label_is_saved_in_order(qtbot, make_window, case_folder,
                                                                                 reviewer_name, monkeypatch):
    case = case_folder("slow-disk", n=3)
    window = make_window()
    run_to_end(qtbot, window, case)
    window.settings.auto_advance = False
    window.settings.reviewer = "Dr. Test"      # (the name is asked and saved once, before the first label)
    first, second = window.gallery.order()[:2]
    resets = []
    for group in window.gallery.groups.values():
        group.model().modelReset.connect(lambda: resets.append(1))

    real_fsync = os.fsync

    def slow_fsync(fd):   # a slow disk (network share, busy USB stick): every sync takes 0.25 s
        time.sleep(0.25)
        return real_fsync(fd)
    monkeypatch.setattr(os, "fsync", slow_fsync)
    took = []
    for cell_id, key in ((first, Qt.Key.Key_A), (second, Qt.Key.Key_U), (first, Qt.Key.Key_N)):
        window.select_cell(cell_id)
        t0 = time.perf_counter()
        qtbot.keyClick(window.view, key)
        took.append(time.perf_counter() - t0)
    # each key returns to the event loop at once (the save alone takes >= 0.5 s: two syncs)
    assert max(took) < 0.2, took
    assert window.wait_for_saves(30_000)
    monkeypatch.undo()
    assert saved_labels(case) == {first: "HEM", second: "UNCERTAIN"}   # in order: the last label of a cell wins
    assert [e["new"] for e in window.session.audit_entries()] == ["ALL", "UNCERTAIN", "HEM"]
    assert window.gallery.group_of(first) == "HEM" and window.gallery.group_of(second) == "UNCERTAIN"
    assert resets == []      # tile by tile: the gallery was never rebuilt

    # a label given just before the window closes is on disk when it has closed
    third = window.gallery.order()[-1]
    window.select_cell(third)
    monkeypatch.setattr(os, "fsync", slow_fsync)
    qtbot.keyClick(window.view, Qt.Key.Key_A)
    window.close()
    monkeypatch.undo()
    assert saved_labels(case)[third] == "ALL"


def test_thumbnails_are_held_in_a_bounded_cache_and_cut_again_when_shown(qtbot, make_window, case_folder):
    window = make_window()
    window.gallery.thumbnails.capacity = 3
    run_to_end(qtbot, window, case_folder("bounded", n=6))
    assert len(window.cells) > 3
    assert len(window.gallery.thumbnails) <= 3            # never more than the cache holds
    # a cell whose thumbnail was dropped: selecting it shows it again (cut again in a worker)
    dropped = next(c for c in window.gallery.order() if c not in window.gallery.thumbnails)
    window.select_cell(dropped)
    qtbot.waitUntil(lambda: window.cell_panel.thumbnail.pixmap() is not None
                    and not window.cell_panel.thumbnail.pixmap().isNull(), timeout=30_000)
    assert len(window.gallery.thumbnails) <= 3
