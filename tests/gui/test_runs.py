"""Analysis runs that do not go as planned: cancelled, replaced, damaged images, no model."""
import shutil

from PySide6.QtCore import Qt

from leukviewer import RUO_NOTICE


def test_cancel_mid_run_stops_the_worker_and_keeps_what_is_done(qtbot, make_window, case_folder):
    case = case_folder("big")
    window = make_window()
    with qtbot.waitSignal(window.imageAnalysed, timeout=60_000):
        window.open_folder(case)
    assert window.is_analysing() and window.cancel_action.isEnabled()
    with qtbot.waitSignal(window.analysisFinished, timeout=10_000):
        qtbot.keyClick(window.view, Qt.Key.Key_Escape)
    assert not window.is_analysing() and not window.cancel_action.isEnabled()
    done = len(window.results)
    assert 1 <= done < len(window.image_names)
    assert window.summary.cancelled
    assert sum(window.row_status(row) == "not analysed (cancelled)" for row in window.rows.values()) == len(
        window.image_names) - done
    assert "cancelled" in window.progress_label.text()
    qtbot.waitUntil(lambda: not window._workers, timeout=30_000)  # the worker really stopped
    assert len(window.results) == done  # and nothing arrived after the cancel


def test_opening_a_second_folder_during_a_run_replaces_it(qtbot, make_window, case_folder):
    first = case_folder("first")
    second = case_folder("second", n=3)
    window = make_window()
    with qtbot.waitSignal(window.imageAnalysed, timeout=60_000):
        window.open_folder(first)
    with qtbot.waitSignal(window.analysisFinished, timeout=60_000):
        window.open_folder(second)
    qtbot.waitUntil(lambda: not window._workers, timeout=30_000)
    assert window.folder == second.resolve()
    assert sorted(window.results) == sorted(p.name for p in second.glob("*.jpg"))
    assert window.image_list.topLevelItemCount() == 3
    assert window.summary.images_total == 3 and not window.summary.cancelled
    assert all(c.image in window.rows for c in window.cells.values())


def test_corrupt_and_truncated_images_are_listed_and_reported(qtbot, make_window, case_folder):
    case = case_folder("corrupt", n=2)
    (case / "broken.jpg").write_bytes(b"this is not a JPEG at all" * 10)
    good = sorted(case.glob("Blood*.jpg"))[0].read_bytes()
    (case / "cut.jpg").write_bytes(good[: len(good) // 3])
    (case / "notes.txt").write_text("not an image")
    window = make_window()
    with qtbot.waitSignal(window.analysisFinished, timeout=60_000):
        window.open_folder(case)
    assert window.summary.images_failed >= 1 and window.summary.skipped_files == ["notes.txt"]
    assert window.row_status(window.rows["broken.jpg"]).startswith("unreadable")
    assert window.banner.isVisible() and "broken.jpg" in window.banner.text.text()
    assert window.banner.level == "warning"
    ok = [n for n, r in window.results.items() if r.ok]
    assert len(ok) >= 2
    window.show_image("broken.jpg")  # showing it must not raise either
    assert window.view.overlay_items() == []


def test_missing_model_is_a_message_not_a_crash(qtbot, make_window, case_folder, tmp_path):
    window = make_window(model_dir=tmp_path / "no-such-model", wait_model=False)
    if not window.messages:
        with qtbot.waitSignal(window.modelFailed, timeout=60_000):
            pass
    assert window.banner.isVisible() and "model" in window.banner.text.text().lower()
    assert window.model_label.text() == "Model: none"
    with qtbot.waitSignal(window.analysisFinished, timeout=60_000):
        window.open_folder(case_folder("nomodel", n=2))
    assert all(window.row_status(row) == "not analysed (no model)" for row in window.rows.values())
    assert "Choose a model folder" in window.banner.text.text()
    about = window.show_about()
    assert "No usable model" in about.card_markdown
    about.close()


def test_choosing_a_model_folder_after_a_failure_analyses_the_case(qtbot, make_window, case_folder, tmp_path,
                                                                   tiny_model_dir):
    window = make_window(model_dir=tmp_path / "missing", wait_model=False)
    case = case_folder("later", n=2)
    with qtbot.waitSignal(window.analysisFinished, timeout=60_000):
        window.open_folder(case)
    with qtbot.waitSignal(window.analysisFinished, timeout=120_000):
        window.set_model_folder(tiny_model_dir)
    assert len(window.results) == 2 and all(r.ok for r in window.results.values())
    assert window.settings.last_model_folder == str(tiny_model_dir)


def test_gradcam_toggle_shows_a_heat_map_for_the_selected_cell(qtbot, make_window, case_folder):
    window = make_window()
    with qtbot.waitSignal(window.analysisFinished, timeout=60_000):
        window.open_folder(case_folder("cam", n=2))
    cell_id = window.gallery.order()[0]
    window.select_cell(cell_id)
    with qtbot.waitSignal(window.gradcamShown, timeout=60_000) as blocker:
        qtbot.keyClick(window.view, Qt.Key.Key_G)
    assert blocker.args == [cell_id] and window.view.has_heatmap()
    heat = window.gradcam.heatmaps[cell_id]
    assert not heat.qimage.isNull() and heat.qimage.hasAlphaChannel()
    qtbot.keyClick(window.view, Qt.Key.Key_G)
    assert not window.view.has_heatmap()
    try:
        qtbot.waitUntil(lambda: not window._workers, timeout=30_000)
    except Exception:
        raise AssertionError(f"workers still running: {window._workers}") from None


def test_view_keys_help_overlay_and_about(qtbot, make_window, case_folder):
    window = make_window()
    with qtbot.waitSignal(window.analysisFinished, timeout=60_000):
        window.open_folder(case_folder("keys", n=1))
    zoom = window.view.zoom_factor()
    qtbot.keyClick(window.view, Qt.Key.Key_Plus)
    assert window.view.zoom_factor() > zoom
    qtbot.keyClick(window.view, Qt.Key.Key_Minus)
    qtbot.keyClick(window.view, Qt.Key.Key_Minus)
    assert window.view.zoom_factor() < zoom
    qtbot.keyClick(window.view, Qt.Key.Key_F)
    assert abs(window.view.zoom_factor() - zoom) < 1e-6
    qtbot.keyClick(window.view, Qt.Key.Key_O)
    assert not any(i.isVisible() for i in window.view.overlay_items())
    qtbot.keyClick(window.view, Qt.Key.Key_O)
    assert all(i.isVisible() for i in window.view.overlay_items())
    qtbot.keyClick(window.view, Qt.Key.Key_Question)
    assert window.help_overlay.isVisible() and "Grad-CAM" in window.help_overlay.label.text()
    qtbot.keyClick(window.help_overlay, Qt.Key.Key_Question)
    assert not window.help_overlay.isVisible()
    about = window.show_about()
    assert RUO_NOTICE in about.findChild(type(window.ruo_label), "ruo").text()
    assert "tiny-test-model" in about.card_markdown
    about.close()
    assert window.ruo_label.isVisible()


def test_closing_the_window_during_a_run_stops_the_workers(qtbot, make_window, case_folder):
    window = make_window()
    with qtbot.waitSignal(window.imageAnalysed, timeout=60_000):
        window.open_folder(case_folder("closing"))
    window.close()
    from leukviewer.gui import worker

    assert worker.active_workers() == []
    assert len(window.results) < len(window.image_names)
    shutil.rmtree(window.folder / ".leukviewer", ignore_errors=True)


def test_run_app_opens_the_window_on_a_folder_and_exits_cleanly(qtbot, monkeypatch, case_folder, tiny_model_dir):
    from PySide6.QtWidgets import QApplication

    from leukviewer.gui.app import run_app
    from leukviewer.gui.main_window import MainWindow

    case = case_folder("app", n=1)
    seen = []

    def event_loop(*args):
        """Stands in for app.exec(): a nested exec() and quit() would leave the test session's loop quitting."""
        window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible())
        qtbot.addWidget(window)
        if window.is_analysing():
            qtbot.waitSignal(window.analysisFinished, timeout=60_000).wait()
        seen.append((window.folder, len(window.results)))
        window.close()
        return 0

    monkeypatch.setattr(QApplication, "exec", event_loop)
    assert run_app(folder=str(case), model_dir=str(tiny_model_dir)) == 0
    assert seen == [(case.resolve(), 1)]
