"""The retraining wizard: the lab turns its reviewed cells (and/or a labelled folder) into a new model.

Five pages — Data, Settings, Train, Evaluate, Accept. The wizard only builds a ``training.TrainConfig`` and calls
``training.train`` (the function behind ``python -m training fit``); every long step (data check, warm-up
measurement, training, evaluation) runs in the app's worker (``worker.py``). A wizard session keeps its files in
``<runs dir>/wizard/<id>/`` (data, checkpoints, the candidate model folder); ``pending.json`` beside the sessions
names the one not yet accepted, so the wizard offers to resume it after the app restarts. The new model becomes
active only when accepted on the last page.

For Research Use Only. Not for use in diagnostic procedures.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QFileDialog, QFormLayout, QFrame, QGridLayout,
                               QGroupBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QMenu, QPlainTextEdit, QProgressBar, QPushButton, QRadioButton, QSizePolicy, QSpinBox,
                               QTableWidget, QTableWidgetItem, QTextBrowser, QTreeWidget, QTreeWidgetItem,
                               QVBoxLayout, QWidget, QWizard, QWizardPage)

import training
from training.datasets import DatasetError

from .. import RUO_NOTICE
from ..core.classifier import LABEL_BLAST, LABEL_NORMAL
from ..core.models import ModelRegistry, RegisteredModel, RegistryError, app_model_folder
from ..core.retrain_data import (CLASS_FOLDERS, DataCheck, ReviewedCellsExport, check_data, combine_sources,
                                 export_reviewed_cells, reviewed_cases)
from ..core.paths import remove_tree_inside
from ..core.settings import Settings
from .worker import Worker
from .signals import emit

log = logging.getLogger(__name__)

PAGE_DATA, PAGE_SETTINGS, PAGE_TRAIN, PAGE_EVALUATE, PAGE_ACCEPT = range(5)
WARMUP_BATCHES = 4          # batches timed for the estimate (the first one includes compiling the graph)
SESSION_FILE = "session.json"
PENDING_FILE = "pending.json"
BACKBONE_CHOICES = ("EfficientNetB3", "EfficientNetB2", "EfficientNetB1", "EfficientNetB0")
FREEZE_CHOICES = (("frozen_then_unfrozen", "Frozen first (head only), then unfrozen"),
                  ("unfrozen", "Unfrozen: train the whole network"),
                  ("frozen", "Frozen: train the classification head only"))
METRIC_ROWS = (("n", "cells"), ("weighted_f1", "weighted F1"), ("sensitivity", "sensitivity (ALL)"),
               ("specificity", "specificity (HEM)"), ("roc_auc", "ROC-AUC"), ("balanced_accuracy", "balanced accuracy"),
               ("accuracy", "accuracy"), ("ece", "calibration error (ECE)"))


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ruo_label() -> QLabel:
    label = QLabel(RUO_NOTICE)
    label.setStyleSheet("color:#7a5b00; font-size:10px")
    return label


def _message_label(colour: str) -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setStyleSheet(f"color:{colour}")
    label.hide()
    return label


def _show(label: QLabel, text: str) -> None:
    label.setText(text)
    label.setVisible(bool(text))


# ================================================================ the wizard session on disk (no Qt)


def wizard_runs_dir() -> Path:
    from training.loop import default_runs_dir

    return default_runs_dir() / "wizard"


@dataclass
class RetrainSession:
    """The files of one retraining: ``data/`` (assembled data), ``run/`` (checkpoints), ``model/`` (candidate)."""
    root: Path
    info: dict = field(default_factory=dict)

    @classmethod
    def create(cls) -> "RetrainSession":
        base = wizard_runs_dir()
        base.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        root = Path(tempfile.mkdtemp(prefix=f"{stamp}-", dir=base))
        session = cls(root, {"created": datetime.now().astimezone().isoformat(timespec="seconds")})
        session.save()
        return session

    @classmethod
    def load(cls, root: Path) -> "RetrainSession | None":
        try:
            info = json.loads((Path(root) / SESSION_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return cls(Path(root), info if isinstance(info, dict) else {})

    @classmethod
    def pending(cls) -> "RetrainSession | None":
        """The session that was trained but not accepted or discarded (resumable), if any."""
        marker = wizard_runs_dir() / PENDING_FILE
        try:
            root = Path(json.loads(marker.read_text(encoding="utf-8"))["session"])
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            return None
        if not root.resolve().is_relative_to(wizard_runs_dir().resolve()):
            marker.unlink(missing_ok=True)  # a damaged or crafted marker: never a session to resume or delete
            return None
        session = cls.load(root)
        if session is None or not session.info.get("config"):
            marker.unlink(missing_ok=True)  # a stale marker (the session was removed by hand)
            return None
        return session

    run_dir = property(lambda self: self.root / "run")
    candidate = property(lambda self: self.root / "model")
    data_dir = property(lambda self: self.root / "data")
    reviewed_dir = property(lambda self: self.root / "reviewed")
    heldout_dir = property(lambda self: self.root / "heldout")
    eval_dir = property(lambda self: self.root / "evaluation")

    def save(self) -> None:
        from training.modelfolder import atomic_write_text

        atomic_write_text(self.root / SESSION_FILE, json.dumps(self.info, indent=1, ensure_ascii=False))

    def mark_pending(self) -> None:
        from training.modelfolder import atomic_write_text

        atomic_write_text(wizard_runs_dir() / PENDING_FILE, json.dumps({"session": str(self.root)}))

    def is_pending(self) -> bool:
        pending = RetrainSession.pending()
        return pending is not None and pending.root == self.root

    def clear_pending(self) -> None:
        if self.is_pending():
            (wizard_runs_dir() / PENDING_FILE).unlink(missing_ok=True)

    def discard(self) -> None:
        remove_tree_inside(self.root, wizard_runs_dir())   # refused (nothing deleted) outside the runs folder
        self.clear_pending()

    def run_state(self) -> dict | None:
        try:
            return json.loads((self.run_dir / "state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            return None

    def candidate_ready(self) -> bool:
        from training.modelfolder import ModelFolderError, read_meta

        try:
            read_meta(self.candidate)
            return True
        except ModelFolderError:
            return False

    def config(self) -> dict:
        """The training configuration of this session: the run's own once it has checkpointed."""
        state = self.run_state()
        return dict(state["config"]) if state else dict(self.info.get("config") or {})

    def describe(self) -> str:
        state = self.run_state() or {}
        cfg = self.config()
        total = int(cfg.get("head_epochs", 0)) + int(cfg.get("epochs", 0))
        when = self.info.get("created", "")[:16].replace("T", " ")
        if state.get("finished") and self.candidate_ready():
            return f"A model trained on {when} was not accepted yet ({cfg.get('name')} {cfg.get('version')})."
        return (f"An unfinished training of {when} can be resumed ({cfg.get('name')} {cfg.get('version')}: "
                f"epoch {state.get('epochs_done', 0)} of {total} done).")


# ================================================================ work done in workers (no widgets)


def on_own_thread(fn, *args, **kwargs):
    """Run ``fn`` on a new Python thread and wait for it (result or exception), from inside a worker.

    TensorFlow keeps per-thread graph state that outlives the Python thread state PySide creates for each pool
    task; a second training traced on a reused pool thread crashes the process (segmentation fault in graph
    construction). A fresh thread per training or evaluation avoids that.
    """
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=target, name=f"leukviewer-{getattr(fn, '__name__', 'tf')}")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@dataclass
class PreparedData:
    """The data training will read (``root``), where it came from, and what the check found."""
    root: Path | None
    check: DataCheck | None
    export: ReviewedCellsExport | None = None
    sources: dict = field(default_factory=dict)
    error: str = ""


def prepare_data(folder: str | None, cases: list[str], session_root: Path, worker=None) -> PreparedData:
    """Export the reviewed cells, combine them with the folder if both are chosen, and check the result."""
    progress = (lambda m, f: worker.report_progress((m, f))) if worker else (lambda m, f: None)
    stop = worker.is_cancelled if worker else (lambda: False)
    session = Path(session_root)
    sources: dict = {"folder": folder, "cases": list(cases)}
    export = None
    roots = []
    if folder:
        roots.append(Path(folder))
    if cases:
        export = export_reviewed_cells(cases, session / "reviewed", on_progress=progress, should_stop=stop)
        if export.cancelled:
            return PreparedData(None, None, export, sources, "cancelled")
        sources["reviewed"] = export.to_dict()
        if export.images:
            roots.append(export.root)
        elif not folder:
            return PreparedData(None, None, export, sources,
                                "The chosen cases have no cells reviewed as ALL or HEM "
                                f"({export.uncertain_excluded} reviewed as UNCERTAIN, which are not used).")
    if not roots:
        return PreparedData(None, None, export, sources, "Choose a folder of labelled cells and/or reviewed cases.")
    if len(roots) == 1:
        root = roots[0]
    else:
        progress("combining the folder with the reviewed cells", None)
        try:
            root = combine_sources(session / "data", roots)
        except DatasetError as e:
            return PreparedData(None, None, export, sources, str(e))
    check = check_data(root, decode=True, on_progress=progress, should_stop=stop)
    return PreparedData(root, check, export, sources)


@dataclass
class SpeedEstimate:
    """Measured on this machine: seconds per training batch, batches per epoch, fixed overhead."""
    per_batch_s: float
    batches_per_epoch: int
    overhead_s: float         # reading/preprocessing the images, building and compiling the model
    images: int
    batch_size: int

    def total_seconds(self, epochs: int) -> float:
        # Validation each epoch and the final calibration/evaluation predict on ~30 % of the images; a
        # prediction batch costs about a third of a training batch.
        predict_batches = 0.3 * self.images / max(1, self.batch_size)
        per_epoch = self.batches_per_epoch * self.per_batch_s + 0.5 * predict_batches * self.per_batch_s / 3
        return self.overhead_s + epochs * per_epoch + predict_batches * self.per_batch_s / 3


def measure_training_speed(config: "training.TrainConfig", images: int, worker=None) -> SpeedEstimate | None:
    """Time a few training batches of ``config`` with ``training.train`` into a throwaway run folder.

    The backbone is unfrozen for the measurement (the slower phase), so the estimate errs on the long side.
    """
    base = wizard_runs_dir()
    base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".warmup-", dir=base))
    warm = replace(config, run_dir=str(scratch / "run"), output=None, head_epochs=0, epochs=1, patience=0,
                   max_steps_per_epoch=None)
    times: list[float] = []
    seen = {"batches": 0}
    t0 = time.perf_counter()

    def on_progress(event):
        if event.stage == "train" and event.batch and not event.message:
            times.append(time.perf_counter())
            seen["batches"] = event.batches
        if worker:
            worker.report_progress(event)

    def should_stop():
        return len(times) >= min(WARMUP_BATCHES, seen["batches"] or WARMUP_BATCHES) or bool(
            worker and worker.is_cancelled())

    try:
        on_own_thread(training.train, warm, on_progress=on_progress, should_stop=should_stop)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not times or (worker and worker.is_cancelled()):
        return None
    gaps = np.diff(times).tolist()
    per_batch = statistics.median(gaps) if gaps else (times[0] - t0) / 4
    overhead = max(0.0, times[0] - t0 - per_batch)
    return SpeedEstimate(per_batch, seen["batches"], overhead, images, config.batch_size)


def run_training(config: "training.TrainConfig", resume: bool, stop: threading.Event, worker=None):
    """``training.train`` with progress to the worker and a cooperative stop (the Stop button or app exit)."""
    return on_own_thread(training.train, config, on_progress=worker.report_progress if worker else None,
                         should_stop=lambda: stop.is_set() or bool(worker and worker.is_cancelled()),
                         resume=resume)


def heldout_folder(run_dir: Path, class_names: list[str], dest: Path) -> tuple[Path, list[str]] | None:
    """The new model's held-out test images (from its run) linked into one folder; None without a test part."""
    predictions = Path(run_dir) / "test_predictions.npz"
    if not predictions.is_file():
        return None
    with np.load(predictions) as saved:
        paths, labels, subjects = saved["paths"].tolist(), saved["labels"].tolist(), saved["subjects"].tolist()
    if not paths:
        return None
    if dest.exists():
        shutil.rmtree(dest)
    taken = set()
    for path, label in zip(paths, labels):
        name = class_names[int(label)]
        folder = CLASS_FOLDERS.get(name, name)
        target = dest / folder / Path(path).name
        if str(target) in taken:
            target = target.with_name(f"{len(taken)}__{target.name}")
        taken.add(str(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(Path(path).resolve(), target)
        except OSError:
            shutil.copy2(path, target)
    return dest, sorted(set(str(s) for s in subjects))


def compare_models(candidate: Path, active: RegisteredModel | None, run_dir: Path, heldout: Path,
                   eval_dir: Path, worker=None) -> dict:
    """Both models on exactly the new model's held-out test images (``training.evaluate.evaluate_folder``)."""
    from ..core.evaluation import evaluate_folder
    from training.modelfolder import read_meta

    progress = worker.report_progress if worker else None
    meta = read_meta(candidate)
    found = heldout_folder(run_dir, meta["class_names"], heldout)
    if found is None:
        return {"error": "The split left no held-out test subjects (too few subjects), so the models cannot be "
                         "compared on unseen patients."}
    folder, subjects = found
    out = {"subjects": subjects,
           "new": on_own_thread(evaluate_folder, candidate, folder, eval_dir / "new", on_progress=progress)}
    # These are the new model's own test subjects: the library's check against its whole data summary (which
    # lists every subject of the data set, test subjects included) does not apply.
    out["new"].pop("warning", None)
    if active is None or not active.usable:
        out["active_error"] = "no usable active model" + (f" ({active.error})" if active and active.error else "")
    else:
        try:
            out["active"] = on_own_thread(evaluate_folder, active.folder, folder, eval_dir / "active",
                                          on_progress=progress)
            _refine_overlap_warning(out["active"], active.meta, subjects)
        except (DatasetError, ValueError) as e:
            out["active_error"] = str(e)
    return out


def _refine_overlap_warning(metrics: dict, meta: dict, subjects: list[str]) -> None:
    """Warn only about held-out subjects the active model learned from (its training or validation part)."""
    split = meta.get("training", {}).get("split") or {}
    if not split.get("train"):
        return  # no split recorded: keep the library's warning based on the whole data summary
    seen = set()
    for part in ("train", "val"):
        seen.update((split.get(part) or {}).get("subjects") or [])
    overlap = sorted(seen & set(subjects))
    metrics.pop("warning", None)
    if overlap:
        metrics["warning"] = (f"{len(overlap)} of these subjects ({', '.join(overlap[:10])}"
                              f"{'…' if len(overlap) > 10 else ''}) were in its training or validation part, so its "
                              "figures here flatter it")


# ================================================================ pages


class DataPage(QWizardPage):
    def __init__(self, wizard: "RetrainWizard"):
        super().__init__()
        self.w = wizard
        self.setTitle("1 · Data")
        self.setSubTitle("Which labelled cells should the model learn from? A folder (C-NMC layout or one folder "
                         "per class) and/or the cells reviewed in this app.")
        self.prepared: PreparedData | None = None
        self._scan: Worker | None = None
        self._generation = 0
        self._timer = QTimer(self, singleShot=True, interval=250, timeout=self.check_now)

        layout = QVBoxLayout(self)
        self.resume_box = QFrame()
        self.resume_box.setStyleSheet("QFrame{background:#eef6ff; border:1px solid #9cc3eb; border-radius:4px}"
                                      "QLabel{border:none}")
        row = QHBoxLayout(self.resume_box)
        self.resume_label = QLabel()
        self.resume_label.setWordWrap(True)
        self.resume_button = QPushButton("Resume")
        self.discard_button = QPushButton("Discard it")
        row.addWidget(self.resume_label, 1)
        row.addWidget(self.resume_button)
        row.addWidget(self.discard_button)
        self.resume_button.clicked.connect(self.w.resume_pending)
        self.discard_button.clicked.connect(self.w.discard_pending)
        self.resume_box.hide()
        layout.addWidget(self.resume_box)

        self.folder_box = QGroupBox("A folder of labelled cells")
        self.folder_box.setCheckable(True)
        self.folder_box.setChecked(False)
        grid = QGridLayout(self.folder_box)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("e.g. …/cnmc  (all/ and hem/ with UID_<patient>_… names, or one folder "
                                            "per class)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        grid.addWidget(self.folder_edit, 0, 0)
        grid.addWidget(browse, 0, 1)
        layout.addWidget(self.folder_box)

        self.cases_box = QGroupBox("Cells reviewed in this app")
        self.cases_box.setCheckable(True)
        cases_layout = QVBoxLayout(self.cases_box)
        self.case_list = QListWidget()
        self.case_list.setMaximumHeight(110)
        cases_layout.addWidget(self.case_list)
        self.cases_hint = QLabel()
        self.cases_hint.setWordWrap(True)
        self.cases_hint.setStyleSheet("color:#555")
        cases_layout.addWidget(self.cases_hint)
        add_case = QPushButton("Add a case folder…")
        add_case.clicked.connect(self._add_case)
        cases_layout.addWidget(add_case, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.cases_box)

        self.status = QLabel()
        self.progress = QProgressBar()
        self.progress.hide()
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        self.counts = QTreeWidget()
        self.counts.setHeaderLabels(["Subject (patient / case)", "ALL", "HEM", "images"])
        self.counts.setRootIsDecorated(False)
        self.counts.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.counts, 1)
        self.errors = _message_label("#b00020")
        self.warnings = _message_label("#8a5a00")
        layout.addWidget(self.errors)
        layout.addWidget(self.warnings)
        self.skip_unreadable = QCheckBox("Leave the unreadable images out and train on the rest")
        self.skip_unreadable.hide()
        self.skip_unreadable.toggled.connect(lambda: emit(self.completeChanged))
        layout.addWidget(self.skip_unreadable)
        layout.addWidget(_ruo_label())

        self.folder_box.toggled.connect(self.schedule_check)
        self.folder_edit.textChanged.connect(self.schedule_check)
        self.cases_box.toggled.connect(self.schedule_check)
        self.case_list.itemChanged.connect(self.schedule_check)

    # ---------------------------------------------------------------- inputs

    def set_cases(self, folders: list[str]) -> None:
        self.case_list.blockSignals(True)
        self.case_list.clear()
        for review in reviewed_cases(folders):
            self._add_case_item(review)
        self.case_list.blockSignals(False)
        self._update_case_hint()

    def _add_case_item(self, review) -> None:
        c = review.counts()
        item = QListWidgetItem(f"{review.folder.name}   —   {sum(c.values())} reviewed cells "
                               f"(ALL {c['ALL']}, HEM {c['HEM']}, UNCERTAIN {c['UNCERTAIN']})")
        item.setData(Qt.ItemDataRole.UserRole, str(review.folder))
        item.setToolTip(str(review.folder))
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked)
        self.case_list.addItem(item)

    def _update_case_hint(self) -> None:
        self.case_list.setVisible(self.case_list.count() > 0)
        if self.case_list.count():
            self.cases_hint.setText("Each case is one subject: its cells stay together on one side of the split. "
                                    "Cells reviewed as UNCERTAIN are left out.")
        else:
            self.cases_hint.setText("No case folder with a saved review yet: review cells in the main window, or "
                                    "add a case folder.")
        if not self.case_list.count() and self.cases_box.isChecked():
            self.cases_box.setChecked(False)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of labelled cells", self.folder_edit.text())
        if folder:
            self.folder_box.setChecked(True)
            self.folder_edit.setText(folder)

    def _add_case(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A case folder with a saved review")
        if folder:
            self.add_case_folder(folder)

    def add_case_folder(self, folder: str | Path) -> bool:
        found = reviewed_cases([folder])
        if not found:
            _show(self.errors, f"{folder} has no saved review with reviewed cells.")
            return False
        known = {self.case_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.case_list.count())}
        if str(found[0].folder) not in known:
            self._add_case_item(found[0])
        self.cases_box.setChecked(True)
        self._update_case_hint()
        self.schedule_check()
        return True

    def selected_folder(self) -> str | None:
        text = self.folder_edit.text().strip()
        return text if self.folder_box.isChecked() and text else None

    def selected_cases(self) -> list[str]:
        if not self.cases_box.isChecked():
            return []
        return [self.case_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.case_list.count())
                if self.case_list.item(i).checkState() == Qt.CheckState.Checked]

    # ---------------------------------------------------------------- checking

    def initializePage(self) -> None:
        self.w.refresh_pending_banner()
        if self.prepared is None and self._scan is None:
            self.schedule_check()

    def schedule_check(self, *args) -> None:
        self.prepared = None
        self._generation += 1
        emit(self.completeChanged)
        self._timer.start()

    def check_now(self) -> None:
        """Check the chosen data in a worker; a newer check replaces an older one still running."""
        self._timer.stop()
        if self._scan is not None:
            self._scan.cancel()
        self.w.resuming = False
        if self.w.session is not None and self.w.session.info.get("config"):
            self.w.session = None   # that session trained on the earlier data; it stays resumable from the banner
        generation = self._generation
        self.prepared = None
        self.counts.clear()
        _show(self.errors, "")
        _show(self.warnings, "")
        self.skip_unreadable.hide()
        self.skip_unreadable.setChecked(False)
        folder, cases = self.selected_folder(), self.selected_cases()
        if not folder and not cases:
            self.status.setText("Choose a folder of labelled cells and/or reviewed cases.")
            self.progress.hide()
            emit(self.completeChanged)
            return
        self.status.setText("Checking the data…")
        self.progress.setRange(0, 0)
        self.progress.show()
        session = self.w.ensure_session()
        worker = Worker(prepare_data, folder, cases, session.root, name="retrain-data")
        worker.signals.progress.connect(lambda p, g=generation: self._on_progress(g, p))
        worker.signals.returned.connect(lambda r, g=generation: self._on_prepared(g, r))
        worker.signals.errored.connect(lambda e, g=generation: self._on_error(g, e))
        worker.signals.finished.connect(lambda w=worker: self._on_finished(w))
        self._scan = self.w.track(worker).start()

    def _on_progress(self, generation: int, progress) -> None:
        if generation != self._generation:
            return
        message, fraction = progress
        self.status.setText(message[:1].upper() + message[1:] + "…")
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(fraction * 1000))

    def _on_error(self, generation: int, error: Exception) -> None:
        if generation != self._generation:
            return
        self.status.setText("The data could not be read.")
        _show(self.errors, f"{type(error).__name__}: {error}")

    def _on_finished(self, worker: Worker) -> None:
        if self._scan is worker:
            self._scan = None
            self.progress.hide()
        emit(self.w.dataChecked, self.prepared)

    def _on_prepared(self, generation: int, prepared: PreparedData) -> None:
        if generation != self._generation:
            return
        self.prepared = prepared
        self.progress.hide()
        notes = prepared.export.notes() if prepared.export else []
        if prepared.error:
            self.status.setText("The data cannot be used for training.")
            _show(self.errors, prepared.error)
            _show(self.warnings, "\n".join(notes))
            emit(self.completeChanged)
            return
        check = prepared.check
        summary = check.summary
        if summary:
            per_class = summary["per_class"]
            subjects = summary.get("subjects")
            self.status.setText(
                f"{summary['images']} images in {len(per_class)} classes (" +
                ", ".join(f"{c} {n}" for c, n in per_class.items()) + ")" +
                (f" from {subjects} subjects" if subjects else "") +
                (f"; {len(prepared.export.cases)} reviewed case(s)" if prepared.export else ""))
            self._fill_counts(summary)
        else:
            self.status.setText("The data cannot be used for training.")
        _show(self.errors, "\n".join(check.errors))
        _show(self.warnings, "\n".join("⚠ " + w for w in check.warnings + notes))
        self.skip_unreadable.setVisible(check.usable_without_unreadable)
        emit(self.completeChanged)

    def _fill_counts(self, summary: dict) -> None:
        self.counts.clear()
        classes = summary["classes"]
        self.counts.setHeaderLabels(["Subject (patient / case)", *classes, "images"])
        names = self._subject_names()
        for subject, counts in summary.get("per_subject", {}).items():
            label = f"{subject}  ({names[subject]})" if subject in names else subject
            item = QTreeWidgetItem([label, *[str(counts.get(c, 0)) for c in classes], str(sum(counts.values()))])
            self.counts.addTopLevelItem(item)
        total = QTreeWidgetItem(["all subjects", *[str(summary["per_class"].get(c, 0)) for c in classes],
                                 str(summary["images"])])
        font = total.font(0)
        font.setBold(True)
        for col in range(len(classes) + 2):
            total.setFont(col, font)
        self.counts.insertTopLevelItem(0, total)

    def _subject_names(self) -> dict[str, str]:
        export = self.prepared.export if self.prepared else None
        return {c.subject: Path(c.folder).name for c in export.cases} if export else {}

    def isComplete(self) -> bool:
        if self.w.resuming:
            return True
        p = self.prepared
        if p is None or p.error or p.check is None or p.check.cancelled:
            return False
        if p.check.ok:
            return True
        return p.check.usable_without_unreadable and self.skip_unreadable.isChecked()

    def nextId(self) -> int:
        return PAGE_TRAIN if self.w.resuming else PAGE_SETTINGS


class SettingsPage(QWizardPage):
    def __init__(self, wizard: "RetrainWizard"):
        super().__init__()
        self.w = wizard
        self.setTitle("2 · Settings")
        self.setSubTitle("How to train. The defaults suit fine-tuning the active model on a lab's reviewed cells.")
        self.estimate: SpeedEstimate | None = None
        self._estimate_key = None
        self._pending_key = None
        self._parent_backbone: str | None = None
        self._parent_size: int | None = None
        self._imagenet_file: str | None = None
        self._warmup: Worker | None = None
        self._measured_once = False
        layout = QVBoxLayout(self)

        start = QGroupBox("Start from")
        start_layout = QVBoxLayout(start)
        self.start_group = QButtonGroup(self)
        self.from_model = QRadioButton()
        self.from_imagenet = QRadioButton("ImageNet weights")
        self.from_scratch = QRadioButton("Scratch (random weights; needs much more data)")
        self.imagenet_reason = QLabel()
        self.imagenet_reason.setWordWrap(True)
        self.imagenet_reason.setStyleSheet("color:#666; margin-left:22px")
        self.model_reason = QLabel()
        self.model_reason.setWordWrap(True)
        self.model_reason.setStyleSheet("color:#666; margin-left:22px")
        for i, button in enumerate((self.from_model, self.from_imagenet, self.from_scratch)):
            self.start_group.addButton(button, i)
        start_layout.addWidget(self.from_model)
        start_layout.addWidget(self.model_reason)
        start_layout.addWidget(self.from_imagenet)
        start_layout.addWidget(self.imagenet_reason)
        start_layout.addWidget(self.from_scratch)
        layout.addWidget(start)

        form_box = QGroupBox("Training")
        form = QFormLayout(form_box)
        self.backbone = QComboBox()
        self.epochs = QSpinBox(minimum=1, maximum=500)
        self.input_size = QSpinBox(minimum=32, maximum=512, singleStep=16)
        self.input_size.setSuffix(" px")
        self.batch_size = QSpinBox(minimum=2, maximum=512)
        self.freeze = QComboBox()
        for key, text in FREEZE_CHOICES:
            self.freeze.addItem(text, key)
        self.augment = QCheckBox("flips, turns, small rotations, scaling, brightness/contrast, stain jitter")
        self.by_subject = QCheckBox("each patient / case only in training, validation or test (recommended)")
        self.leak_note = QLabel("Without it, cells of one patient are on both sides of the split and the figures "
                                "overstate how the model does on new patients.")
        self.leak_note.setWordWrap(True)
        self.leak_note.setStyleSheet("color:#b00020")
        self.name = QLineEdit()
        self.version = QLineEdit()
        form.addRow("Backbone", self.backbone)
        form.addRow("Epochs", self.epochs)
        form.addRow("Backbone weights", self.freeze)
        self.schedule_hint = QLabel()
        self.schedule_hint.setStyleSheet("color:#555")
        form.addRow("", self.schedule_hint)
        form.addRow("Input size", self.input_size)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Augmentation", self.augment)
        form.addRow("Validation by subject", self.by_subject)
        form.addRow("", self.leak_note)
        form.addRow("New model name", self.name)
        form.addRow("Version", self.version)
        layout.addWidget(form_box)

        estimate_box = QGroupBox("Training time on this computer")
        row = QHBoxLayout(estimate_box)
        self.estimate_label = QLabel("Not measured yet.")
        self.estimate_label.setWordWrap(True)
        self.measure_button = QPushButton("Measure")
        self.measure_button.clicked.connect(self.measure)
        row.addWidget(self.estimate_label, 1)
        row.addWidget(self.measure_button)
        layout.addWidget(estimate_box)
        layout.addStretch(1)
        layout.addWidget(_ruo_label())

        self.start_group.idToggled.connect(self._on_start_changed)
        self.by_subject.toggled.connect(lambda on: self.leak_note.setVisible(not on))
        for signal in (self.backbone.currentIndexChanged, self.input_size.valueChanged,
                       self.batch_size.valueChanged, self.freeze.currentIndexChanged, self.augment.toggled):
            signal.connect(self._settings_changed)
        self.epochs.valueChanged.connect(self._show_estimate)
        self.epochs.valueChanged.connect(self._update_schedule_hint)
        self.freeze.currentIndexChanged.connect(self._update_schedule_hint)
        self._fill_defaults()
        self._update_schedule_hint()
        self.backbone.currentIndexChanged.connect(self._update_imagenet)

    # ---------------------------------------------------------------- defaults

    def _fill_defaults(self) -> None:
        d = self.w.defaults
        active = self.w.active_model
        parent_backbone = None
        if active is not None and active.usable and active.is_blast_classifier:
            arch = active.meta.get("architecture", {})
            parent_backbone = arch.get("backbone")
            self.from_model.setText(f"The active model, fine-tuned: {active.display_name}")
            self.model_reason.hide()
        else:
            self.from_model.setText("The active model, fine-tuned")
            self.from_model.setEnabled(False)
            _show(self.model_reason, "Not available: " + (active.error if active and active.error else
                                                          "the active model is not an ALL/HEM classifier"))
        backbones = list(BACKBONE_CHOICES)
        for extra in (d.get("backbone"), parent_backbone):
            if extra and extra not in backbones:
                backbones.append(extra)
        self.backbone.addItems(backbones)
        self.backbone.setCurrentText(d.get("backbone") or parent_backbone or "EfficientNetB3")
        self._parent_backbone = parent_backbone
        self._parent_size = None
        if parent_backbone:
            self._parent_size = int(active.meta.get("preprocessing", {}).get("size", 128))
        self.input_size.setValue(int(d.get("input_size") or self._parent_size or 128))
        self.batch_size.setValue(int(d.get("batch_size", 32)))
        self.augment.setChecked(d.get("augment", True) is not False)
        self.by_subject.setChecked(d.get("split", "subject") == "subject")
        self.leak_note.setVisible(not self.by_subject.isChecked())
        self._update_imagenet()
        init = d.get("init")
        if init == "scratch":
            self.from_scratch.setChecked(True)
        elif init == "imagenet" and self.from_imagenet.isEnabled():
            self.from_imagenet.setChecked(True)
        elif self.from_model.isEnabled():
            self.from_model.setChecked(True)
        elif self.from_imagenet.isEnabled():
            self.from_imagenet.setChecked(True)
        else:
            self.from_scratch.setChecked(True)
        self.epochs.setValue(int(d.get("epochs") or (8 if self.from_model.isChecked() else 20)))
        if "freeze" in d:
            self.freeze.setCurrentIndex(self.freeze.findData(d["freeze"]))
        base = active.meta.get("name", "leukviewer") if parent_backbone else "leukviewer"
        self.name.setText(d.get("name") or f"{base}-retrained")
        self.version.setText(d.get("version") or datetime.now().strftime("%Y.%m.%d"))
        self._on_start_changed()

    def _update_imagenet(self) -> None:
        from training.model import WeightsError, find_imagenet_weights

        try:
            path = find_imagenet_weights(self.backbone.currentText(), self.w.defaults.get("imagenet_weights"))
            self.from_imagenet.setEnabled(True)
            self.from_imagenet.setText(f"ImageNet weights ({path.name})")
            self._imagenet_file = str(path)
            self.imagenet_reason.hide()
        except WeightsError as e:
            if self.from_imagenet.isChecked():
                (self.from_model if self.from_model.isEnabled() else self.from_scratch).setChecked(True)
            self.from_imagenet.setEnabled(False)
            self.from_imagenet.setText("ImageNet weights")
            self._imagenet_file = None
            _show(self.imagenet_reason, f"Not available: {e}")

    def _on_start_changed(self, *args) -> None:
        fine_tune = self.from_model.isChecked()
        if fine_tune and self._parent_backbone:
            self.backbone.setCurrentText(self._parent_backbone)
        self.backbone.setEnabled(not fine_tune)
        scratch = self.from_scratch.isChecked()
        # A random backbone cannot be kept frozen: from scratch the whole network learns.
        item_model = self.freeze.model()
        for i in range(self.freeze.count()):
            key = self.freeze.itemData(i)
            item_model.item(i).setEnabled(not (scratch and key != "unfrozen"))
        if scratch:
            self.freeze.setCurrentIndex(self.freeze.findData("unfrozen"))
        elif "freeze" not in self.w.defaults and self.freeze.currentData() == "unfrozen":
            self.freeze.setCurrentIndex(self.freeze.findData("frozen_then_unfrozen"))
        self._settings_changed()

    # ---------------------------------------------------------------- the configuration

    def schedule(self) -> tuple[int, int]:
        """(epochs with the backbone frozen, epochs with it unfrozen) for the chosen epochs and mode."""
        epochs = self.epochs.value()
        mode = self.freeze.currentData()
        if mode == "frozen":
            return epochs, 0
        if mode == "frozen_then_unfrozen":
            head = epochs // 4 if epochs >= 2 else 0
            return head, epochs - head
        return 0, epochs

    def _update_schedule_hint(self, *args) -> None:
        head, unfrozen = self.schedule()
        patience = int(self.w.defaults.get("patience", training.TrainConfig.__dataclass_fields__["patience"].default))
        self.schedule_hint.setText(f"{head} epoch(s) with the backbone frozen, then {unfrozen} with the whole network "
                                   "learning" + (f"; stops early after {patience} epochs without a better validation "
                                                 "loss" if patience else ""))

    def train_config(self) -> "training.TrainConfig":
        """The TrainConfig these settings describe (data, run folder and output from the wizard session)."""
        from training.augment import AugmentConfig

        session = self.w.ensure_session()
        head_epochs, unfrozen = self.schedule()
        init = "model" if self.from_model.isChecked() else "imagenet" if self.from_imagenet.isChecked() else "scratch"
        by_subject = self.by_subject.isChecked()
        extra = {k: v for k, v in self.w.defaults.items()
                 if k in training.TrainConfig.__dataclass_fields__ and k not in (
                     "data", "run_dir", "output", "epochs", "head_epochs", "init", "parent_model", "backbone",
                     "input_size", "batch_size", "augment", "split", "leaky_image_split", "name", "version",
                     "imagenet_weights", "skip_unreadable")}
        return training.TrainConfig(
            data=str(self.w.data_root()), run_dir=str(session.run_dir), output=str(session.candidate),
            name=self.name.text().strip() or "leukviewer-retrained", version=self.version.text().strip() or "0.1.0",
            backbone=self.backbone.currentText(), input_size=self.input_size.value(), init=init,
            imagenet_weights=self._imagenet_file if init == "imagenet" else None,
            parent_model=str(self.w.active_model.folder) if init == "model" else None,
            split="subject" if by_subject else "image", leaky_image_split=not by_subject,
            augment=(AugmentConfig() if self.augment.isChecked() else AugmentConfig.off()).to_dict(),
            batch_size=self.batch_size.value(), head_epochs=head_epochs, epochs=unfrozen,
            unfreeze="all", skip_unreadable=self.w.skip_unreadable(), **extra)

    # ---------------------------------------------------------------- the estimate

    def initializePage(self) -> None:
        if not self._measured_once and self.w.auto_estimate:
            self._measured_once = True
            self.measure()

    def cleanupPage(self) -> None:  # Back to the data page: a warm-up still running is not needed
        self.stop_measuring()

    def stop_measuring(self) -> None:
        if self._warmup is not None:
            self._warmup.cancel()

    def _key(self):
        return (self.backbone.currentText(), self.input_size.value(), self.batch_size.value(),
                self.start_group.checkedId(), self.freeze.currentData(), self.augment.isChecked(),
                str(self.w.data_root()))

    def _settings_changed(self, *args) -> None:
        if self.estimate is not None and self._estimate_key != self._key():
            self.estimate_label.setText(self.estimate_label.text().split("\n")[0] +
                                        "\nThe settings changed since the measurement: measure again.")

    def measure(self) -> None:
        """Time a few batches of these settings in a worker (``training.train`` on a throwaway run folder)."""
        if self._warmup is not None:
            return
        summary = self.w.data_summary() or {}
        config = self.train_config()
        self._pending_key = self._key()
        self.estimate_label.setText("Measuring: reading the images and timing a few training batches…")
        self.measure_button.setEnabled(False)
        worker = Worker(measure_training_speed, config, int(summary.get("images", 0)), name="retrain-warmup")
        worker.signals.progress.connect(self._on_warmup_progress)
        worker.signals.returned.connect(self._on_estimate)
        worker.signals.errored.connect(self._on_estimate_error)
        worker.signals.finished.connect(self._on_warmup_finished)
        self._warmup = self.w.track(worker).start()

    def _on_warmup_progress(self, event) -> None:
        if event.stage == "prepare" and event.message:
            self.estimate_label.setText(f"Measuring: {event.message}…")
        elif event.stage == "train":
            self.estimate_label.setText(f"Measuring: training batch {event.batch}…")

    def _on_estimate(self, estimate: SpeedEstimate | None) -> None:
        self.estimate = estimate
        self._estimate_key = self._pending_key
        self._show_estimate()
        emit(self.w.estimateReady, estimate)

    def _on_estimate_error(self, error: Exception) -> None:
        self.estimate = None
        self.estimate_label.setText(f"Could not measure: {error}")
        emit(self.w.estimateReady, None)

    def _on_warmup_finished(self) -> None:
        self._warmup = None
        self.measure_button.setEnabled(True)
        self.measure_button.setText("Measure again")

    def _show_estimate(self, *args) -> None:
        e = self.estimate
        if e is None:
            return
        total = e.total_seconds(self.epochs.value())
        self.estimate_label.setText(
            f"About {_fmt_duration(total)} for {self.epochs.value()} epoch(s) "
            f"(measured {e.per_batch_s:.2f} s per batch of {e.batch_size}, {e.batches_per_epoch} batches per "
            f"epoch, {_fmt_duration(e.overhead_s)} to read the images and build the model).")


class LearningCurves(FigureCanvasQTAgg):
    """Loss and accuracy while training: training per batch (running epoch mean), validation per epoch."""

    def __init__(self, parent=None):
        self.figure = Figure(figsize=(7.0, 2.6), dpi=90, layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(200)
        self.loss_axes = self.figure.add_subplot(1, 2, 1)
        self.acc_axes = self.figure.add_subplot(1, 2, 2)
        self.lines = {}
        for axes, key, title in ((self.loss_axes, "loss", "loss"), (self.acc_axes, "accuracy", "accuracy")):
            self.lines[key] = axes.plot([], [], color="#1f6fb2", linewidth=1.2, label="training")[0]
            self.lines["val_" + key] = axes.plot([], [], "o-", color="#d7263d", linewidth=1.4, markersize=4,
                                                 label="validation")[0]
            axes.set_title(title, fontsize=9)
            axes.set_xlabel("epoch", fontsize=8)
            axes.tick_params(labelsize=7)
            axes.spines[["top", "right"]].set_visible(False)
            axes.legend(fontsize=7, loc="best")
        self.acc_axes.set_ylim(0, 1.02)
        self.clear()

    def clear(self) -> None:
        self.points = {k: ([], []) for k in self.lines}
        self._refresh()

    def add(self, key: str, x: float, y: float) -> None:
        if key in self.points and y is not None and np.isfinite(y):
            xs, ys = self.points[key]
            xs.append(x)
            ys.append(y)

    def _refresh(self) -> None:
        for key, line in self.lines.items():
            line.set_data(*self.points[key])
        for axes in (self.loss_axes, self.acc_axes):
            axes.relim()
            axes.autoscale_view(scalex=True, scaley=axes is self.loss_axes)
        xs = [x for k in self.points for x in self.points[k][0]]
        right = max([1.0, *xs])
        for axes in (self.loss_axes, self.acc_axes):
            axes.set_xlim(0, right * 1.04)
        self.draw_idle()

    def refresh(self) -> None:
        self._refresh()

    def fill_history(self, history: dict) -> None:
        """Per-epoch points from a run's saved history (after a resume)."""
        for key in self.lines:
            for i, v in enumerate(history.get(key, []), start=1):
                self.add(key, float(i), v)
        self._refresh()


class TrainPage(QWizardPage):
    def __init__(self, wizard: "RetrainWizard"):
        super().__init__()
        self.w = wizard
        self.setTitle("3 · Train")
        self.setSubTitle("The model learns; training can be stopped and resumed later (also after closing "
                         "leukviewer).")
        self.result = None
        self.state = "idle"    # idle | waiting | running | stopping | cancelled | failed | finished
        self._worker: Worker | None = None
        self._stop = threading.Event()
        layout = QVBoxLayout(self)
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Room for three lines: the page's layout does not grow a wrapped label when the canvas wants the space.
        self.status.setMinimumHeight(3 * self.status.fontMetrics().lineSpacing() + 4)
        self.status.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.status)
        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.eta = QLabel("")
        self.eta.setMinimumWidth(150)
        row.addWidget(self.progress, 1)
        row.addWidget(self.eta)
        layout.addLayout(row)
        self.curves = LearningCurves(self)
        layout.addWidget(self.curves, 1)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumHeight(90)
        layout.addWidget(self.log)
        self.message = _message_label("#b00020")
        layout.addWidget(self.message)
        buttons = QHBoxLayout()
        self.stop_button = QPushButton("Stop training")
        self.resume_button = QPushButton("Resume")
        self.restart_button = QPushButton("Start over")
        self.stop_button.clicked.connect(self.stop)
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.restart_button.clicked.connect(self.start_over)
        for b in (self.stop_button, self.resume_button, self.restart_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        layout.addWidget(_ruo_label())
        self._set_state("idle")

    def initializePage(self) -> None:
        session = self.w.ensure_session()
        state = session.run_state()
        if self.state in ("running", "stopping"):
            return
        if state is None:
            self.start(resume=False)
        elif state.get("finished") and session.candidate_ready():
            self._show_finished_from_disk(state)
        elif self.w.resuming:
            self.start(resume=True)
        else:
            self._show_unfinished(state)

    def cleanupPage(self) -> None:  # Back: stop the training (its last checkpoint stays, Resume continues)
        self.stop()

    def _set_state(self, state: str) -> None:
        self.state = state
        self.stop_button.setVisible(state in ("running", "stopping"))
        self.stop_button.setEnabled(state == "running")
        self.resume_button.setVisible(state == "cancelled")
        self.restart_button.setVisible(state in ("cancelled", "failed"))
        emit(self.completeChanged)

    def isComplete(self) -> bool:
        return self.state == "finished"

    def start(self, resume: bool) -> None:
        """Start (or resume) training in a worker: the wizard's TrainConfig handed to ``training.train``."""
        warmup = self.w.settings_page._warmup
        if warmup is not None and not warmup.is_finished():
            # Two trainings at once would compete for the CPU and share Keras' global state: wait for the
            # time measurement to stop (it stops at its next batch, or once its images are read).
            warmup.cancel()
            self._set_state("waiting")
            self.status.setText("Stopping the time measurement first…")
            warmup.signals.finished.connect(lambda: self.state == "waiting" and not self.w._closing
                                            and self.start(resume))
            return
        session = self.w.ensure_session()
        if resume and session.config():
            config = training.TrainConfig.from_dict(session.config())
            resume = session.run_state() is not None   # no epoch had finished: nothing to resume from
        else:
            config = self.w.build_config()
            session.info.update({"config": config.to_dict(), "sources": self.w.data_sources(),
                                 "data_summary": self.w.data_summary(),
                                 "active_model": str(self.w.active_model.folder) if self.w.active_model else None})
            session.save()
        session.mark_pending()
        self.w.config = config
        self.result = None
        self._stop = threading.Event()
        _show(self.message, "")
        if not resume:
            self.curves.clear()
            self.log.clear()
        else:
            self.curves.clear()
            self.curves.fill_history((session.run_state() or {}).get("history", {}))
        self.status.setText("Resuming: reading the images…" if resume else "Reading and preparing the images…")
        self.progress.setValue(0)
        self.eta.setText("")
        self._set_state("running")
        worker = Worker(run_training, config, resume, self._stop, name="retrain-train")
        worker.signals.progress.connect(self._on_progress)
        worker.signals.returned.connect(self._on_returned)
        worker.signals.errored.connect(self._on_error)
        worker.signals.finished.connect(self._on_finished)
        self._worker = self.w.track(worker).start()

    def stop(self) -> None:
        """Ask training to stop at the next batch; the last finished epoch's checkpoint is kept."""
        if self.state != "running":
            return
        self._stop.set()
        self._set_state("stopping")
        self.status.setText("Stopping after the current batch… (while images are still being prepared, after "
                            "that step)")

    def is_busy(self) -> bool:
        return self._worker is not None

    def start_over(self) -> None:
        session = self.w.ensure_session()
        remove_tree_inside(session.run_dir, wizard_runs_dir())
        remove_tree_inside(session.candidate, wizard_runs_dir())
        self.w.resuming = False
        self.start(resume=False)

    def _on_progress(self, event) -> None:
        if event.fraction is not None and event.stage in ("prepare", "train"):
            self.progress.setValue(int(1000 * event.fraction) if event.stage == "train" else 0)
        if event.stage == "prepare":
            if self.state == "running":
                self.status.setText(event.message[:1].upper() + event.message[1:] + "…")
            return
        if event.stage == "train":
            logs = event.logs
            if event.message:   # an epoch ended: training mean and validation for that epoch
                for key in ("val_loss", "val_accuracy"):
                    if key in logs:
                        self.curves.add(key, float(event.epoch), logs[key])
                self.log.appendPlainText(
                    f"epoch {event.epoch}/{event.epochs} ({event.phase}): " +
                    ", ".join(f"{k} {v:.3f}" for k, v in logs.items()))
            else:
                x = event.epoch - 1 + event.batch / max(1, event.batches)
                self.curves.add("loss", x, logs.get("loss"))
                self.curves.add("accuracy", x, logs.get("accuracy"))
                if self.state == "running":
                    phase = "head only, backbone frozen" if event.phase == "head" else "whole network"
                    self.status.setText(f"Training epoch {event.epoch} of {event.epochs} ({phase}), batch "
                                        f"{event.batch} of {event.batches}")
            if event.eta_s is not None:
                self.eta.setText(f"about {_fmt_duration(event.eta_s)} left")
            self.curves.refresh()
        elif event.stage in ("evaluate", "export"):
            self.progress.setValue(1000)
            self.eta.setText("")
            self.status.setText(event.message[:1].upper() + event.message[1:] + "…")

    def _on_returned(self, result) -> None:
        self.result = result
        session = self.w.ensure_session()
        if result.cancelled:
            state = session.run_state() or {}
            done = state.get("epochs_done", 0)
            cfg = state.get("config", {})
            total = int(cfg.get("head_epochs", 0)) + int(cfg.get("epochs", 0))
            self._set_state("cancelled")
            self.status.setText(
                f"Training was stopped after epoch {done} of {total}. No model folder was written. "
                + (f"Resume continues from the checkpoint of epoch {done}, also after restarting leukviewer.\n"
                   f"Checkpoint: {session.run_dir}" if done else
                   "No epoch had finished, so Resume starts from the beginning."))
            self.eta.setText("")
            emit(self.w.trainingFinished, result)
            return
        self._set_state("finished")
        metrics = (result.metrics or {}).get("test") or {}
        best = result.meta.get("training", {}).get("best_epoch")
        self.status.setText(f"Finished: {result.meta.get('training', {}).get('epochs_trained')} epoch(s), best "
                            f"epoch {best}" + (" (stopped early: validation loss stopped improving)"
                                                if result.stopped_early else "") +
                            f". The new model folder is ready; weighted F1 on its held-out test subjects "
                            f"{_fmt(metrics.get('weighted_f1'))}. Next: compare it with the active model.")
        self.eta.setText("")
        self.progress.setValue(1000)
        emit(self.w.trainingFinished, result)

    def _on_error(self, error: Exception) -> None:
        self._set_state("failed")
        self.status.setText("Training failed.")
        _show(self.message, f"{type(error).__name__}: {error}")
        emit(self.w.trainingFinished, error)

    def _on_finished(self) -> None:
        self._worker = None
        if self.state in ("running", "stopping"):   # the app is closing: the worker was cancelled
            self._set_state("cancelled")
        self.w.worker_done()

    def _show_unfinished(self, state: dict) -> None:
        cfg = state.get("config", {})
        total = int(cfg.get("head_epochs", 0)) + int(cfg.get("epochs", 0))
        self.curves.clear()
        self.curves.fill_history(state.get("history", {}))
        self._set_state("cancelled")
        self.status.setText(f"An unfinished training of this session stopped after epoch "
                            f"{state.get('epochs_done', 0)} of {total}: Resume it, or Start over with the "
                            "current settings.")

    def _show_finished_from_disk(self, state: dict) -> None:
        from training.modelfolder import read_meta

        session = self.w.ensure_session()
        meta = read_meta(session.candidate)
        self.curves.clear()
        self.curves.fill_history(state.get("history", {}))
        self.result = training.TrainResult(session.run_dir, False, session.candidate, state.get("history", {}),
                                           meta.get("metrics", {}), meta)
        self.w.config = training.TrainConfig.from_dict(state["config"])
        self.progress.setValue(1000)
        self._set_state("finished")
        self.status.setText(f"This session's model finished training ({state.get('epochs_done')} epoch(s)). "
                            "Next: compare it with the active model.")


class ConfusionMatrices(FigureCanvasQTAgg):
    def __init__(self, parent=None):
        self.figure = Figure(figsize=(7.0, 2.4), dpi=90, layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        self.setMinimumHeight(190)

    def show_matrices(self, panels: list[tuple[str, dict | None]]) -> None:
        self.figure.clear()
        for i, (title, metrics) in enumerate(panels, start=1):
            axes = self.figure.add_subplot(1, len(panels), i)
            axes.set_title(title, fontsize=9)
            if not metrics:
                axes.text(0.5, 0.5, "not available", ha="center", va="center", fontsize=8, color="#666")
                axes.set_axis_off()
                continue
            cm = np.asarray(metrics["confusion_matrix"])
            names = list(metrics["per_class"])
            axes.imshow(cm, cmap="Blues")
            for (r, c), v in np.ndenumerate(cm):
                axes.text(c, r, str(v), ha="center", va="center", fontsize=9,
                          color="white" if v > 0.7 * cm.max() else "black")
            axes.set_xticks(range(len(names)), names, fontsize=8)
            axes.set_yticks(range(len(names)), names, fontsize=8)
            axes.set_xlabel("predicted", fontsize=8)
            axes.set_ylabel("reviewed / true", fontsize=8)
        self.draw_idle()


class EvaluatePage(QWizardPage):
    def __init__(self, wizard: "RetrainWizard"):
        super().__init__()
        self.w = wizard
        self.setTitle("4 · Evaluate")
        self.setSubTitle("The new model and the active model on the same held-out subjects, which the new model "
                         "never saw in training.")
        self.comparison: dict | None = None
        self._worker: Worker | None = None
        layout = QVBoxLayout(self)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.hide()
        layout.addWidget(self.progress)
        self.table = QTableWidget(len(METRIC_ROWS), 2)
        self.table.setVerticalHeaderLabels([label for _, label in METRIC_ROWS])
        self.table.setHorizontalHeaderLabels(["New model", "Active model"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.setFixedHeight(self.table.verticalHeader().length() + self.table.horizontalHeader().height() + 4)
        layout.addWidget(self.table)
        self.matrices = ConfusionMatrices(self)
        layout.addWidget(self.matrices, 1)
        self.notes = _message_label("#8a5a00")
        self.error = _message_label("#b00020")
        layout.addWidget(self.notes)
        layout.addWidget(self.error)
        layout.addWidget(_ruo_label())

    def initializePage(self) -> None:
        self.comparison = None
        emit(self.completeChanged)
        _show(self.notes, "")
        _show(self.error, "")
        self.table.clearContents()
        active = self.w.active_model
        self.table.setHorizontalHeaderLabels(["New model", f"Active model ({active.display_name})" if active
                                              else "Active model"])
        self.status.setText("Evaluating both models on the held-out subjects…")
        self.progress.show()
        session = self.w.ensure_session()
        worker = Worker(compare_models, session.candidate, active, session.run_dir, session.heldout_dir,
                        session.eval_dir, name="retrain-evaluate")
        worker.signals.progress.connect(lambda e: self.status.setText(
            f"Evaluating both models on the held-out subjects: {e.message}…" if e.message else self.status.text()))
        worker.signals.returned.connect(self._on_compared)
        worker.signals.errored.connect(self._on_error)
        worker.signals.finished.connect(self._on_finished)
        self._worker = self.w.track(worker).start()

    def is_busy(self) -> bool:
        return self._worker is not None

    def _on_compared(self, comparison: dict) -> None:
        self.comparison = comparison
        self.progress.hide()
        if comparison.get("error"):
            self.status.setText("No comparison.")
            _show(self.notes, comparison["error"] + " You can still accept the model; its card says so.")
        else:
            new, active = comparison["new"], comparison.get("active")
            self.status.setText(f"Held-out test subjects: {', '.join(comparison['subjects'])} — {new['n']} cells "
                                "(" + ", ".join(f"{c} {v['support']}" for c, v in new["per_class"].items()) + ").")
            for row, (key, _) in enumerate(METRIC_ROWS):
                for col, metrics in enumerate((new, active)):
                    value = metrics.get(key) if metrics else None
                    item = QTableWidgetItem(_fmt(value))
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                    self.table.setItem(row, col, item)
            self.matrices.show_matrices([("New model", new), ("Active model", active)])
            notes = []
            if comparison.get("active_error"):
                notes.append(f"The active model could not be evaluated: {comparison['active_error']}")
            for who, metrics in (("New model", new), ("Active model", active)):
                if metrics and metrics.get("warning"):
                    notes.append(f"{who}: {metrics['warning']}")
            if new["n"] < 50:
                notes.append(f"Only {new['n']} held-out cells: these figures are rough (each cell moves accuracy "
                             f"by {100 / max(1, new['n']):.1f} points).")
            _show(self.notes, "\n".join("⚠ " + n for n in notes))
        emit(self.w.evaluationFinished, comparison)
        emit(self.completeChanged)

    def _on_error(self, error: Exception) -> None:
        self.progress.hide()
        self.status.setText("The evaluation failed.")
        _show(self.error, f"{type(error).__name__}: {error}")
        self.comparison = {"error": f"the evaluation failed ({error})"}
        emit(self.w.evaluationFinished, self.comparison)
        emit(self.completeChanged)

    def _on_finished(self) -> None:
        self._worker = None
        self.w.worker_done()

    def isComplete(self) -> bool:
        return self.comparison is not None


class AcceptPage(QWizardPage):
    def __init__(self, wizard: "RetrainWizard"):
        super().__init__()
        self.w = wizard
        self.setTitle("5 · Accept")
        self.setSubTitle("Accepting puts the new model into your models with its model card. The bundled model is "
                         "kept; the model manager (Models menu) can switch back at any time.")
        self.accepted_model: RegisteredModel | None = None
        self._accepting: Worker | None = None
        layout = QVBoxLayout(self)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        layout.addWidget(self.summary)
        self.activate = QCheckBox("Make it the active model now (new analyses use it)")
        self.activate.setChecked(True)
        layout.addWidget(self.activate)
        self.card = QTextBrowser()
        layout.addWidget(self.card, 1)
        self.error = _message_label("#b00020")
        layout.addWidget(self.error)
        layout.addWidget(_ruo_label())
        self.setButtonText(QWizard.WizardButton.FinishButton, "Accept")
        self.setFinalPage(True)

    def initializePage(self) -> None:
        _show(self.error, "")
        session = self.w.ensure_session()
        try:
            self.w.write_card(session.candidate)
            text = (session.candidate / "MODEL_CARD.md").read_text(encoding="utf-8")
        except Exception as e:  # a card that cannot be written is shown, not hidden
            text = f"The model card could not be written: {e}"
        self.card.setMarkdown(text)
        cfg = self.w.config
        self.summary.setText(f"<b>{cfg.name} {cfg.version}</b> will be added to {self.w.registry.directory}. "
                             "It becomes the active model only if you accept with the box below ticked.")

    def validatePage(self) -> bool:
        """Accept: the model folder is moved into the registry and verified in a worker (the window stays
        responsive); the wizard finishes when that is done."""
        if self.accepted_model is not None:
            return True
        if self._accepting is not None and not self._accepting.is_finished():
            return False
        _show(self.error, "")
        self.summary.setText(self.summary.text().split("<br>")[0] + "<br><i>Adding the model and checking its "
                             "files…</i>")
        self._accepting = self.w.track(Worker(self.w.accept_candidate_files, self.activate.isChecked(),
                                              name="accept-model"))
        self._accepting.signals.returned.connect(self._accepted)
        self._accepting.signals.errored.connect(self._not_accepted)
        self._accepting.start()
        return False

    def _accepted(self, model: RegisteredModel) -> None:
        self.accepted_model = model
        self.w.after_accept(model, self.activate.isChecked())
        self.w.accept()

    def _not_accepted(self, error: Exception) -> None:
        _show(self.error, f"The model was not added: {error}")


# ================================================================ the wizard


class RetrainWizard(QWizard):
    """See the module docstring. ``defaults`` pre-set TrainConfig fields (tests use a tiny configuration)."""

    activeModelChanged = Signal(object)     # the new active model's folder (None: the bundled model)
    dataChecked = Signal(object)            # PreparedData (or None when a check was replaced)
    estimateReady = Signal(object)          # SpeedEstimate or None
    trainingFinished = Signal(object)       # TrainResult (cancelled or not) or the exception
    evaluationFinished = Signal(object)     # the comparison dict
    modelAccepted = Signal(object)          # RegisteredModel

    def __init__(self, parent=None, registry: ModelRegistry | None = None, case_folders: list | None = None,
                 settings: Settings | None = None, defaults: dict | None = None, auto_estimate: bool = True):
        super().__init__(parent)
        self.auto_estimate = auto_estimate
        self.setWindowTitle(f"Retrain the model — {RUO_NOTICE}")
        self.setWizardStyle(QWizard.WizardStyle.ModernStyle)
        self.setOption(QWizard.WizardOption.NoBackButtonOnStartPage, True)
        self.resize(900, 780)
        self.registry = registry or ModelRegistry()
        self.active_model = self.registry.active()
        self.defaults = dict(defaults or {})
        self.session: RetrainSession | None = None
        self.resuming = False
        self.config = None
        self._workers: set[Worker] = set()
        self._closing = False
        self.data_page = DataPage(self)
        self.settings_page = SettingsPage(self)
        self.train_page = TrainPage(self)
        self.evaluate_page = EvaluatePage(self)
        self.accept_page = AcceptPage(self)
        for page_id, page in ((PAGE_DATA, self.data_page), (PAGE_SETTINGS, self.settings_page),
                              (PAGE_TRAIN, self.train_page), (PAGE_EVALUATE, self.evaluate_page),
                              (PAGE_ACCEPT, self.accept_page)):
            self.setPage(page_id, page)
        if case_folders is None:
            settings = settings or Settings.load()
            case_folders = list(settings.recent_folders)
        self.data_page.set_cases([str(f) for f in case_folders])
        if self.defaults.get("data"):
            self.data_page.folder_box.setChecked(True)
            self.data_page.folder_edit.setText(str(self.defaults["data"]))
        self.currentIdChanged.connect(self._on_page_changed)
        self.refresh_pending_banner()

    # ---------------------------------------------------------------- session and data

    def ensure_session(self) -> RetrainSession:
        if self.session is None:
            self.session = RetrainSession.create()
        return self.session

    def data_root(self) -> Path | None:
        prepared = self.data_page.prepared
        if prepared is not None and prepared.root is not None:
            return prepared.root
        if self.config is not None:
            return Path(self.config.data)
        return None

    def data_summary(self) -> dict | None:
        prepared = self.data_page.prepared
        if prepared is not None and prepared.check is not None:
            return prepared.check.summary
        return (self.session.info.get("data_summary") if self.session else None)

    def data_sources(self) -> dict:
        prepared = self.data_page.prepared
        if prepared is not None:
            return prepared.sources
        return (self.session.info.get("sources") if self.session else None) or {}

    def skip_unreadable(self) -> bool:
        return self.data_page.skip_unreadable.isChecked()

    def build_config(self):
        return self.settings_page.train_config()

    # ---------------------------------------------------------------- resume after a restart

    def refresh_pending_banner(self) -> None:
        pending = RetrainSession.pending()
        box = self.data_page.resume_box
        if pending is None or (self.session is not None and pending.root == self.session.root):
            box.hide()
            return
        self.data_page.resume_label.setText(pending.describe())
        finished = (pending.run_state() or {}).get("finished") and pending.candidate_ready()
        self.data_page.resume_button.setText("Continue with it" if finished else "Resume training")
        box.show()

    def resume_pending(self) -> bool:
        """Continue the pending session: straight to the Train page (which resumes or shows the result)."""
        pending = RetrainSession.pending()
        if pending is None:
            self.refresh_pending_banner()
            return False
        if self.session is not None and self.session.root != pending.root and not self.session.run_state():
            remove_tree_inside(self.session.root, wizard_runs_dir())  # this wizard's own, unused session
        self.session = pending
        self.config = training.TrainConfig.from_dict(pending.config())
        self.resuming = True
        self.data_page.resume_box.hide()
        self.data_page._timer.stop()
        if self.data_page._scan is not None:
            self.data_page._scan.cancel()
        self.data_page.prepared = PreparedData(Path(self.config.data), None, None,
                                               pending.info.get("sources") or {})
        self.data_page.status.setText(f"Resuming the training of {pending.info.get('created', '')[:16]} on "
                                      f"{self.config.data}.")
        if self.currentId() == PAGE_DATA:
            self.next()
        return True

    def discard_pending(self) -> None:
        pending = RetrainSession.pending()
        if pending is not None:
            pending.discard()
        self.refresh_pending_banner()

    # ---------------------------------------------------------------- accepting

    def write_card(self, folder: Path) -> Path:
        """MODEL_CARD.md of the candidate with the retraining's data sources, parent and comparison."""
        from training.card import CNMC_SOURCE, DEFAULT_LIMITATIONS, write_model_card

        sources = self.data_sources()
        parts = []
        if sources.get("folder"):
            parts.append(f"the labelled folder {sources['folder']}")
        reviewed = sources.get("reviewed")
        if reviewed and reviewed.get("images"):
            cases = reviewed.get("cases", [])
            parts.append(f"{reviewed['images']} cells reviewed in leukviewer in {len(cases)} case(s) (" +
                         ", ".join(f"{Path(c['folder']).name} = subject {c['subject']}" for c in cases) +
                         f"); {reviewed.get('uncertain_excluded', 0)} cells reviewed as UNCERTAIN were left out")
        sections = {"Retraining in leukviewer": "\n".join([
            f"- Data: {'; '.join(parts) or self.config.data}",
            f"- Started from: {self.config.init}" + (
                f" (parent model {self.active_model.display_name}, SHA-256 {self.active_model.sha256}, "
                f"{self.config.parent_model})" if self.config.parent_model and self.active_model else ""),
            f"- Validation by subject: {'yes' if self.config.split == 'subject' else 'NO (image-level split)'}",
        ])}
        comparison = self.evaluate_page.comparison or {}
        if comparison.get("new"):
            new, active = comparison["new"], comparison.get("active")
            rows = ["| metric | new model | previously active model |", "|---|---|---|"]
            for key, label in METRIC_ROWS:
                rows.append(f"| {label} | {_fmt(new.get(key))} | {_fmt(active.get(key)) if active else 'n/a'} |")
            note = ""
            if active and active.get("warning"):
                note = f"\n\nPreviously active model: {active['warning']}."
            sections["Comparison with the previously active model"] = (
                f"Both models on the new model's held-out test subjects ({', '.join(comparison['subjects'])}); "
                f"previously active model: {self.active_model.display_name if self.active_model else 'none'}"
                f" (SHA-256 {self.active_model.sha256[:12] if self.active_model else ''}…).\n\n" + "\n".join(rows)
                + note)
        elif comparison.get("error"):
            sections["Comparison with the previously active model"] = comparison["error"]
        limitations = list(DEFAULT_LIMITATIONS)
        if reviewed and reviewed.get("images"):
            limitations.append("Cells from this lab's cases carry the labels one reviewer gave in leukviewer; "
                               "they are not confirmed by flow cytometry or a second reviewer.")
        cnmc = sources.get("folder") and not (reviewed and reviewed.get("images")) and (
            (self.data_summary() or {}).get("layout") == "cnmc")
        return write_model_card(folder, data_source=CNMC_SOURCE if cnmc else "; ".join(parts) or None,
                                limitations=limitations, extra_sections=sections)

    def accept_candidate(self, activate: bool) -> RegisteredModel:
        """Accept the candidate here and now (the Accept page does it in a worker: ``accept_candidate_files``)."""
        model = self.accept_candidate_files(activate)
        self.after_accept(model, activate)
        return model

    def accept_candidate_files(self, activate: bool) -> RegisteredModel:
        """The slow part of accepting, safe off the GUI thread: move the candidate into the registry (verifying
        its files), make it active, remove the session's checkpoints."""
        session = self.ensure_session()
        model = self.registry.add(session.candidate, move=True)
        if activate:
            self.registry.activate(model.name)
        session.discard()  # the model folder holds its figures; checkpoints are not needed any more
        return model

    def after_accept(self, model: RegisteredModel, activate: bool) -> None:
        """On the GUI thread: tell the window (the active model) and whoever waits for the accepted model."""
        if activate:
            emit(self.activeModelChanged, app_model_folder(model))
        emit(self.modelAccepted, model)

    # ---------------------------------------------------------------- workers and closing

    def track(self, worker: Worker) -> Worker:
        self._workers.add(worker)
        worker.signals.finished.connect(lambda w=worker: self._workers.discard(w))
        worker.signals.finished.connect(self.worker_done)
        return worker

    def busy(self) -> bool:
        return any(not w.is_finished() for w in self._workers)

    def worker_done(self) -> None:
        if self._closing and not self.busy():
            self._finish_reject()

    def _on_page_changed(self, page_id: int) -> None:
        if page_id != PAGE_SETTINGS:
            self.settings_page.stop_measuring()

    def reject(self) -> None:
        """Cancel: stop every worker (training keeps its last checkpoint) and close once they have ended."""
        self.settings_page.stop_measuring()
        self.train_page.stop()
        for worker in list(self._workers):
            worker.cancel()
        if self.busy():
            self._closing = True
            self.setEnabled(False)
            return
        self._finish_reject()

    def _finish_reject(self) -> None:
        self._closing = False
        if self.session is not None and not self.session.info.get("config"):
            remove_tree_inside(self.session.root, wizard_runs_dir())  # never trained: nothing worth resuming
            self.session = None
        super().reject()

    def closeEvent(self, event):
        if self.busy():
            event.ignore()
            self.reject()
            return
        super().closeEvent(event)


# ================================================================ menus in the main window


def open_retrain_wizard(main_window, registry: ModelRegistry | None = None, **kwargs) -> RetrainWizard:
    """Show the wizard (one at a time) beside the main window; the active model follows an accepted one."""
    wizard = getattr(main_window, "_retrain_wizard", None)
    if wizard is not None and wizard.isVisible():
        wizard.raise_()
        wizard.activateWindow()
        return wizard
    if wizard is not None:
        # Deleted here, long after it closed: deleting it while its own Finish click is being handled (as
        # WA_DeleteOnClose does) crashes PySide with a pure virtual call.
        wizard.deleteLater()
    settings = getattr(main_window, "settings", None)
    if "case_folders" not in kwargs:
        kwargs["case_folders"] = list(settings.recent_folders) if settings is not None else None
    wizard = RetrainWizard(main_window if isinstance(main_window, QWidget) else None,
                           registry or ModelRegistry(), **kwargs)
    wizard.activeModelChanged.connect(lambda folder: _apply_active_model(main_window, folder))
    main_window._retrain_wizard = wizard
    wizard.show()
    return wizard


def open_model_manager(main_window, registry: ModelRegistry | None = None):
    from .model_manager import ModelManagerDialog

    dialog = getattr(main_window, "_model_manager", None)
    if dialog is not None and dialog.isVisible():
        dialog.refresh()
        dialog.raise_()
        dialog.activateWindow()
        return dialog
    if dialog is not None:
        dialog.deleteLater()   # a closed one, deleted long after it closed (see open_retrain_wizard)
    dialog = ModelManagerDialog(registry or ModelRegistry(), main_window if isinstance(main_window, QWidget)
                                else None)
    dialog.activeModelChanged.connect(lambda folder: _apply_active_model(main_window, folder))
    main_window._model_manager = dialog
    dialog.show()
    return dialog


def _apply_active_model(main_window, folder: Path | None) -> None:
    setter = getattr(main_window, "set_model_folder", None)
    if callable(setter):
        setter(folder)


def install_menus(main_window, registry: ModelRegistry | None = None) -> QMenu:
    """Add a "Models" menu (Retrain model…, Model manager…) to a QMainWindow's menu bar.

    When the active model changes there, ``main_window.set_model_folder(folder)`` is called (None for the
    bundled model) if the window has that method.
    """
    registry = registry or ModelRegistry()
    menu = main_window.menuBar().addMenu("&Models")
    menu.retrain_action = menu.addAction("&Retrain model…")
    menu.retrain_action.setToolTip("Train a new model on reviewed cells and/or a labelled folder")
    menu.manager_action = menu.addAction("Model &manager…")
    menu.manager_action.setToolTip("List the models, read their cards, switch the active one, roll back")
    menu.retrain_action.triggered.connect(lambda: open_retrain_wizard(main_window, registry))
    menu.manager_action.triggered.connect(lambda: open_model_manager(main_window, registry))
    main_window.models_menu = menu
    return menu
