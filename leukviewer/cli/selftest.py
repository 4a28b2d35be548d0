"""``leukviewer --self-test`` and ``leukviewer --smoke-test``: is this installation complete and working?

Both run the same code from a checkout (``python -m leukviewer --self-test``) and from the frozen bundle, need no
display (Qt runs on its ``offscreen`` platform unless QT_QPA_PLATFORM says otherwise) and never use the network:
while they run, an audit hook refuses every socket connection and name lookup made from Python.

* ``--self-test``: verify the bundled model folder (or ``--model``) against its recorded SHA-256, start Qt, load
  the network, classify the bundled sample cell through the analysis pipeline, print the result; exit 0.
* ``--smoke-test``: open the review window on a copy of the bundled sample, wait until the model is loaded and
  the case analysed, open the About dialog; exit 0. It proves the Qt plugins, the workers and the window work.

Any failure prints ``self-test FAILED: <reason>`` on stderr and exits 1.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .. import RUO_NOTICE, __version__

SAMPLE_CELL = "samples/UID_16_12_3_all.png"   # C-NMC 2019 training fold_1, subject 16 (ALL); CC BY 3.0
SAMPLE_REFERENCE_LABEL = "ALL"                 # the data set's label (from the file name)
SMOKE_TIMEOUT_S = 300

_NETWORK_EVENTS = ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
                   "socket.sendto", "socket.sendmsg", "urllib.Request")
_network_blocked = False
_network_attempts: list[str] = []
_hook_installed = False


class SelfTestError(Exception):
    """A check failed; the message says which and why, in words a user can act on."""


def _refuse_network(event: str, args) -> None:
    if _network_blocked and event in _NETWORK_EVENTS:
        _network_attempts.append(f"{event}{tuple(args)!r}"[:200])
        raise OSError(f"leukviewer self-test: network access refused ({event})")


class _NoNetwork:
    """While active, Python-level connections and name lookups raise (audit hooks cannot be removed, so the
    hook is installed once and switched by a flag)."""

    def __enter__(self):
        global _network_blocked, _hook_installed
        if not _hook_installed:
            sys.addaudithook(_refuse_network)
            _hook_installed = True
        _network_attempts.clear()
        _network_blocked = True
        return self

    def __exit__(self, *exc):
        global _network_blocked
        _network_blocked = False


def sample_cell_path() -> Path:
    from ..core.model.classifier import assets_dir

    return assets_dir() / SAMPLE_CELL


def _line(out, key: str, text: str) -> None:
    print(f"  {key:<13} {text}", file=out, flush=True)


def _prepare_environment() -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _verify_model(folder: Path, bundled: bool, out) -> dict:
    """model.json readable and the weight file matching its SHA-256, before anything heavy is imported."""
    from training.modelfolder import ModelFolderError, legacy_warning, verify_folder

    if not folder.is_dir():
        if bundled:
            raise SelfTestError(f"the bundled model is missing: {folder} does not exist. This installation is "
                                "incomplete (the installer was built without assets/models/leukviewer-b3/); "
                                "reinstall, or check another model folder with --model DIR")
        raise SelfTestError(f"model folder not found: {folder}")
    try:
        meta, manifest = verify_folder(folder)
    except ModelFolderError as e:
        raise SelfTestError(str(e)) from None
    _line(out, "model folder", str(folder))
    _line(out, "model", f"{meta.get('name', folder.name)} {meta.get('version', '')}".strip())
    _line(out, "weights", f"{meta['weights']['file']} SHA-256 {meta['weights']['sha256']} verified")
    _line(out, "manifest", f"manifest.sha256 SHA-256 {manifest} verified (model.json and weights)" if manifest
          else f"none: {legacy_warning(folder)}")
    return meta


def _start_qt(out):
    try:
        from PySide6 import __version__ as pyside_version
        from PySide6.QtCore import qVersion
        from PySide6.QtWidgets import QApplication
    except ImportError as e:
        raise SelfTestError(f"Qt (PySide6) cannot be imported: {e}") from None
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "leukviewer"])
    _line(out, "Qt", f"PySide6 {pyside_version}, Qt {qVersion()}, platform {app.platformName()!r}")
    return app


def _classify_sample(folder: Path, sample: Path, out) -> None:
    from training.modelfolder import ModelFolderError

    from ..core.model.classifier import CellClassifier
    from ..core.analysis.pipeline import analyze_images

    if not sample.is_file():
        raise SelfTestError(f"the bundled sample cell is missing: {sample}")
    t0 = time.perf_counter()
    try:
        classifier = CellClassifier(folder)
    except ModelFolderError as e:
        raise SelfTestError(str(e)) from None
    import keras
    import tensorflow as tf

    _line(out, "classifier", f"loaded in {time.perf_counter() - t0:.1f} s; TensorFlow {tf.__version__}, "
                          f"Keras {keras.__version__}, {classifier.device}")
    results = list(analyze_images([sample], sample.parent, classifier))
    if len(results) != 1 or not results[0].ok:
        raise SelfTestError(f"the sample {sample.name} could not be analysed: "
                            f"{results[0].status if results else 'no result'}")
    result = results[0]
    if len(result.cells) != 1:
        raise SelfTestError(f"expected one cell in the sample {sample.name}, found {len(result.cells)}")
    cell = result.cells[0]
    p = cell.blast_probability
    if not 0.0 <= p <= 1.0:
        raise SelfTestError(f"the model returned an invalid probability for the sample: {p}")
    probability = {"ALL": f"P(ALL) = {p:.4f}", "HEM": f"P(HEM) = {1.0 - p:.4f}"}.get(cell.label,
                                                                                   f"P(ALL) = {p:.4f}")
    agreement = "agrees with" if cell.label == SAMPLE_REFERENCE_LABEL else "differs from"
    _line(out, "sample", f"{sample.name} ({result.kind.replace('_', ' ')}, {result.width}x{result.height} px; "
                         f"C-NMC 2019, CC BY 3.0; reference label {SAMPLE_REFERENCE_LABEL})")
    _line(out, "result", f"{cell.label}, {probability} (threshold on P(ALL): {classifier.info.threshold:.3f}) "
                         f"by {cell.model_name} {cell.model_version}; {agreement} the reference label")


def _checked_model_folder(model_dir: str | Path | None, out) -> Path:
    """The model folder to test, its SHA-256 verified (the bundled one unless a folder or LEUKVIEWER_MODEL says)."""
    from ..core.model.active import resolve_model

    resolved = resolve_model(model_dir, registry=False)   # the installation, not the user's choice
    _verify_model(resolved.folder, bundled=resolved.bundled, out=out)
    return resolved.folder


def _refuse_if_network_was_tried() -> None:
    if _network_attempts:
        raise SelfTestError(f"network access was attempted: {'; '.join(_network_attempts[:3])}")


def _failed(e: Exception, out) -> int:
    print(f"self-test FAILED: {e}", file=sys.stderr, flush=True)
    print(RUO_NOTICE, file=out, flush=True)
    return 1


def run_self_test(model_dir: str | Path | None = None, out=None) -> int:
    """The headless installation check; returns the exit code (0: passed)."""
    _prepare_environment()
    out = out or sys.stdout
    t0 = time.perf_counter()
    print(f"leukviewer {__version__} self-test{' (frozen)' if getattr(sys, 'frozen', False) else ''}",
          file=out, flush=True)
    try:
        with _NoNetwork():
            folder = _checked_model_folder(model_dir, out)
            _start_qt(out)
            _classify_sample(folder, sample_cell_path(), out)
            _refuse_if_network_was_tried()
    except SelfTestError as e:
        return _failed(e, out)
    _line(out, "networking", "none used (connections and name lookups refused while testing)")
    print(f"self-test passed in {time.perf_counter() - t0:.1f} s", file=out)
    print(RUO_NOTICE, file=out, flush=True)
    return 0


def _isolated_user_folders(root: Path) -> None:
    """The smoke test never touches the user's settings, recent folders or caches."""
    for kind in ("CONFIG", "DATA", "CACHE"):
        os.environ.setdefault(f"LEUKVIEWER_{kind}_DIR", str(root / kind.lower()))
    os.environ.setdefault("LEUKVIEWER_RUNS", str(root / "runs"))


def run_smoke_test(model_dir: str | Path | None = None, screenshot: str | Path | None = None,
                   timeout_s: float = SMOKE_TIMEOUT_S, out=None, window_size: tuple[int, int] | None = None) -> int:
    """The review window, offscreen, on a copy of the bundled sample; returns the exit code (0: passed).

    ``window_size`` (width, height): resize the window first, e.g. to a laptop's 1366x768. On a real display
    (not offscreen) the screenshot is the screen itself, so it shows what a user would see, cut-offs included."""
    _prepare_environment()
    out = out or sys.stdout
    t0 = time.perf_counter()
    print(f"leukviewer {__version__} smoke test of the review window", file=out, flush=True)
    work = Path(tempfile.mkdtemp(prefix="leukviewer-smoke-"))
    try:
        _isolated_user_folders(work)
        with _NoNetwork():
            folder = _checked_model_folder(model_dir, out)
            sample = sample_cell_path()
            if not sample.is_file():
                raise SelfTestError(f"the bundled sample cell is missing: {sample}")
            case = work / "case"
            case.mkdir()
            shutil.copy2(sample, case / sample.name)
            app = _start_qt(out)
            failure = _run_window(app, folder, case, screenshot, timeout_s, out, window_size)
            if failure:
                raise SelfTestError(failure)
            _refuse_if_network_was_tried()
    except SelfTestError as e:
        return _failed(e, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"smoke test passed in {time.perf_counter() - t0:.1f} s", file=out)
    print(RUO_NOTICE, file=out, flush=True)
    return 0


def _run_window(app, folder: Path, case: Path, screenshot, timeout_s: float, out,
                window_size: tuple[int, int] | None = None) -> str | None:
    """Open the window, analyse the case, check what a user would see; the reason it failed, or None."""
    from PySide6.QtCore import QTimer

    from ..gui.main_window import MainWindow

    window = MainWindow(model_dir=folder)
    if window_size:
        window.resize(*window_size)
    window.show()
    outcome: dict = {}
    analysed: list[bool] = []
    shown: list[str] = []

    def finish(failure: str | None) -> None:
        if "failure" not in outcome:
            outcome["failure"] = failure
            app.quit()

    def on_model_loaded():
        _line(out, "window", f"{window.model_label.text()}; {window.device_label.text()}")
        window.open_folder(case)

    def on_analysed():
        results = list(window.results.values())
        if len(results) != 1 or not results[0].ok or len(results[0].cells) != 1:
            status = results[0].status if results else "no result"
            return finish(f"the review window did not analyse the sample: {status}; messages: {window.messages}")
        cell = results[0].cells[0]
        groups = {label: window.gallery.groups[label].count() for label in window.gallery.groups}
        _line(out, "window", f"sample analysed: {cell.label}, P(ALL) = {cell.blast_probability:.4f}; gallery "
                             f"{groups}")
        analysed.append(True)
        check_views()

    def on_shown(image: str):
        shown.append(image)
        check_views()

    def check_views():
        """Once the case is analysed and the image's pixels are on screen: the About dialog, the picture."""
        if not analysed or not shown or "failure" in outcome:
            return
        _line(out, "window", f"image shown: {shown[-1]}")
        about = window.show_about()
        licences = about.licence_table.topLevelItemCount()
        _line(out, "about", f"{licences} licence entries")
        if licences == 0:
            return finish("the About dialog lists no licences")
        if screenshot:
            return grab_when_drawn(about)
        about.close()
        finish(None)

    def grab_when_drawn(about, waited_ms: int = 0):
        """Grab the window once its views have settled (no deferred refresh of the counts and histogram)."""
        if "failure" in outcome:
            return
        drawn = window.views_settled()
        if not drawn and waited_ms < 10_000:
            QTimer.singleShot(50, lambda: grab_when_drawn(about, waited_ms + 50))
            return
        if not drawn:
            _line(out, "screenshot", "the views did not settle within 10 s; grabbing as they are")
        about.close()
        if app.platformName() == "offscreen":
            picture = window.grab()
        else:  # the screen as the user sees it: a window larger than the screen shows cut off here
            app.processEvents()
            picture = window.screen().grabWindow(0)
        picture.save(str(screenshot))
        _line(out, "screenshot", f"{screenshot} ({picture.width()}x{picture.height()}; window "
                                 f"{window.width()}x{window.height()})")
        finish(None)

    window.modelLoaded.connect(on_model_loaded)
    window.modelFailed.connect(lambda error: finish(f"the review window could not load the model: {error}"))
    window.analysisFinished.connect(on_analysed)
    window.displayImageShown.connect(on_shown)
    QTimer.singleShot(int(timeout_s * 1000), lambda: finish(f"timed out after {timeout_s:.0f} s"))
    if window.loaded_model is not None:  # loaded before the connection was made
        on_model_loaded()
    app.exec()
    window.close()
    return outcome.get("failure", "the event loop ended before the test finished")
