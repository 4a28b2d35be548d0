"""``leukviewer [FOLDER] [--model DIR]``: the review window."""
from __future__ import annotations

import os
import sys


def run_app(folder: str | None = None, model_dir: str | None = None) -> int:
    """Start the review window (optionally opening ``folder``); returns the exit code."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from PySide6.QtWidgets import QApplication

    from .. import RUO_NOTICE, __version__
    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("leukviewer")
    app.setApplicationVersion(__version__)
    app.setApplicationDisplayName("leukviewer")
    print(f"leukviewer {__version__} — {RUO_NOTICE}", file=sys.stderr)
    window = MainWindow(model_dir=model_dir)
    if window.size() != window.sizeHint():  # fitted to a small screen: let the window manager fit it exactly
        window.showMaximized()
    else:
        window.show()
    if folder:
        window.open_folder(folder)
    return app.exec()
