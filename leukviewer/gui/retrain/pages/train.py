"""Page 3 of the retraining wizard: the plan's ``training.TrainConfig`` handed to ``training.train`` in a worker,
with learning curves, Stop (the last epoch's checkpoint is kept) and Resume, also after a restart."""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton, QVBoxLayout

import training

from ....core.retrain.compare import format_value
from ....core.retrain.estimate import format_duration
from ....core.retrain.run import run_training
from ....core.retrain.session import total_epochs
from ...signals import emit
from ...worker import Worker
from ..common import RetrainPage, message_label, ruo_label, sentence, show_message
from ..plots import LearningCurves

if TYPE_CHECKING:
    from ..wizard import RetrainWizard


def train_in_worker(config: "training.TrainConfig", resume: bool, stop: threading.Event, worker=None):
    """``run_training`` with progress to the worker and a cooperative stop (the Stop button or app exit)."""
    return run_training(config, resume, on_progress=worker.report_progress,
                        should_stop=lambda: stop.is_set() or worker.is_cancelled())


class TrainPage(RetrainPage):
    def __init__(self, wizard: "RetrainWizard"):
        super().__init__(wizard, "3 · Train",
                         "The model learns; training can be stopped and resumed later (also after closing "
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
        self.message = message_label("#b00020")
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
        layout.addWidget(ruo_label())
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
        show_message(self.message, "")
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
        worker = Worker(train_in_worker, config, resume, self._stop, name="retrain-train")
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
        self.w.ensure_session().remove_training()
        self.w.resuming = False
        self.start(resume=False)

    def _on_progress(self, event) -> None:
        if event.fraction is not None and event.stage in ("prepare", "train"):
            self.progress.setValue(int(1000 * event.fraction) if event.stage == "train" else 0)
        if event.stage == "prepare":
            if self.state == "running":
                self.status.setText(sentence(event.message))
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
                self.eta.setText(f"about {format_duration(event.eta_s)} left")
            self.curves.refresh()
        elif event.stage in ("evaluate", "export"):
            self.progress.setValue(1000)
            self.eta.setText("")
            self.status.setText(sentence(event.message))

    def _on_returned(self, result) -> None:
        self.result = result
        session = self.w.ensure_session()
        if result.cancelled:
            state = session.run_state() or {}
            done = state.get("epochs_done", 0)
            total = total_epochs(state.get("config", {}))
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
                            f"{format_value(metrics.get('weighted_f1'))}. Next: compare it with the active model.")
        self.eta.setText("")
        self.progress.setValue(1000)
        emit(self.w.trainingFinished, result)

    def _on_error(self, error: Exception) -> None:
        self._set_state("failed")
        self.status.setText("Training failed.")
        show_message(self.message, f"{type(error).__name__}: {error}")
        emit(self.w.trainingFinished, error)

    def _on_finished(self) -> None:
        self._worker = None
        if self.state in ("running", "stopping"):   # the app is closing: the worker was cancelled
            self._set_state("cancelled")
        self.w.worker_done()

    def _show_unfinished(self, state: dict) -> None:
        total = total_epochs(state.get("config", {}))
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

