"""The review window started as the app starts it (a fresh process, TensorFlow not yet imported) analyses a case
to the end: TensorFlow imported first by a worker thread crashed it (segfault) in most runs."""
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication
    from leukviewer.gui.main_window import MainWindow
    assert "tensorflow" not in sys.modules
    app = QApplication([])
    window = MainWindow(model_dir=sys.argv[2])
    window.show()
    loop = QEventLoop()
    if window.loaded_model is None:
        window.modelLoaded.connect(loop.quit)
        window.modelFailed.connect(loop.quit)
        loop.exec()
    done = QEventLoop()
    window.analysisFinished.connect(done.quit)
    QTimer.singleShot(180_000, done.quit)
    window.open_folder(sys.argv[1])
    done.exec()
    print("analysed", window.status_area.analysed, "cells", len(window.cells))
    window.close()
""")


def test_a_fresh_window_analyses_a_case_without_crashing(shared_data, tiny_model_dir, tmp_path, child_env):
    import shutil

    case = tmp_path / "case"
    case.mkdir()
    for image in sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:12]:
        shutil.copy2(image, case / image.name)
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(case), str(tiny_model_dir)], env=child_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert "analysed 12 cells" in run.stdout, run.stdout
