"""Page 2 of the retraining wizard: how to train. Its widgets fill a ``core.retrain.plan.RetrainChoices``; the
plan turns it into the ``training.TrainConfig``. A few batches timed in a worker give the training time."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QRadioButton, QSpinBox, QVBoxLayout)

from ....core.retrain.estimate import SpeedEstimate, measure_training_speed
from ....core.retrain.plan import (BACKBONE_CHOICES, FREEZE_CHOICES, RetrainChoices, default_epochs, default_patience,
                                   fine_tune_basis, schedule, train_config)
from ...signals import emit
from ...worker import Worker
from ..common import RetrainPage, ruo_label, show_message

if TYPE_CHECKING:
    import training

    from ..wizard import RetrainWizard


def measure_in_worker(config: "training.TrainConfig", images: int, worker=None) -> SpeedEstimate | None:
    """``measure_training_speed`` reporting its training events to the worker, stopping when it is cancelled."""
    return measure_training_speed(config, images, on_progress=worker.report_progress, should_stop=worker.is_cancelled)


class SettingsPage(RetrainPage):
    def __init__(self, wizard: "RetrainWizard"):
        super().__init__(wizard, "2 · Settings",
                         "How to train. The defaults suit fine-tuning the active model on a lab's reviewed cells.")
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
        layout.addWidget(ruo_label())

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
        parent_size = None
        if active is not None and active.usable and active.is_blast_classifier:
            parent_backbone, parent_size = fine_tune_basis(active.meta)
            self.from_model.setText(f"The active model, fine-tuned: {active.display_name}")
            self.model_reason.hide()
        else:
            self.from_model.setText("The active model, fine-tuned")
            self.from_model.setEnabled(False)
            show_message(self.model_reason, "Not available: " + (active.error if active and active.error else
                                                          "the active model is not an ALL/HEM classifier"))
        backbones = list(BACKBONE_CHOICES)
        for extra in (d.get("backbone"), parent_backbone):
            if extra and extra not in backbones:
                backbones.append(extra)
        self.backbone.addItems(backbones)
        self.backbone.setCurrentText(d.get("backbone") or parent_backbone or "EfficientNetB3")
        self._parent_backbone = parent_backbone
        self._parent_size = parent_size if parent_backbone else None
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
        chosen_init = "model" if self.from_model.isChecked() else "imagenet"   # the epochs differ only for "model"
        self.epochs.setValue(int(d.get("epochs") or default_epochs(chosen_init)))
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
            show_message(self.imagenet_reason, f"Not available: {e}")

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
        return schedule(self.epochs.value(), self.freeze.currentData())

    def _update_schedule_hint(self, *args) -> None:
        head, unfrozen = self.schedule()
        patience = default_patience(self.w.defaults)
        self.schedule_hint.setText(f"{head} epoch(s) with the backbone frozen, then {unfrozen} with the whole network "
                                   "learning" + (f"; stops early after {patience} epochs without a better validation "
                                                 "loss" if patience else ""))

    def choices(self) -> RetrainChoices:
        """What these settings say, in the plan's terms (the wizard's defaults carry the other TrainConfig fields)."""
        init = "model" if self.from_model.isChecked() else "imagenet" if self.from_imagenet.isChecked() else "scratch"
        active = self.w.active_model
        return RetrainChoices(
            init=init, backbone=self.backbone.currentText(), input_size=self.input_size.value(),
            batch_size=self.batch_size.value(), epochs=self.epochs.value(), freeze=self.freeze.currentData(),
            augment=self.augment.isChecked(), by_subject=self.by_subject.isChecked(), name=self.name.text(),
            version=self.version.text(), parent_model=str(active.folder) if init == "model" and active else None,
            imagenet_weights=self._imagenet_file, skip_unreadable=self.w.skip_unreadable(),
            extra=self.w.defaults)

    def train_config(self) -> "training.TrainConfig":
        """The TrainConfig these settings describe (data, run folder and output from the wizard session)."""
        session = self.w.ensure_session()
        return train_config(self.choices(), str(self.w.data_root()), str(session.run_dir), str(session.candidate))

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
        worker = Worker(measure_in_worker, config, int(summary.get("images", 0)), name="retrain-warmup")
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
        if self.estimate is not None:
            self.estimate_label.setText(self.estimate.describe(self.epochs.value()))
