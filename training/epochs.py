"""What happens at every batch and epoch of a run: progress and ETA, cancellation, validation in inference mode,
BatchNorm re-estimation, the per-epoch checkpoint, the best epoch and early stopping."""
from __future__ import annotations

import time

import numpy as np

from .celltypes import BLAST
from .config import Cancelled, ProgressEvent
from .datasets import POSITIVE_CLASS
from .schedule import cosine_lr


def positive_index(class_names) -> int | None:
    """The blast class: ALL (binary C-NMC names) or blast (a multi-class cell-type folder)."""
    names = list(class_names)
    for positive in (POSITIVE_CLASS, BLAST):
        if positive in names:
            return names.index(positive)
    return 1 if len(names) == 2 else None


def validation_logs(model, x_val: np.ndarray, y_val: np.ndarray, batch_size: int, positive: int | None) -> dict:
    """Loss, accuracy and (binary) ROC-AUC of the network in inference mode on the validation part."""
    logits = predict_logits(model, x_val, batch_size)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
    logs = {"val_loss": float(-logp[np.arange(len(y_val)), y_val].mean()),
            "val_accuracy": float((logits.argmax(axis=1) == y_val).mean())}
    if positive is not None and logits.shape[1] == 2 and len(np.unique(y_val)) == 2:
        from .metrics import roc_auc_score

        logs["val_auc"] = float(roc_auc_score(y_val == positive, logp[:, positive]))
    return logs


def recalibrate_batchnorm(model, images: np.ndarray, batch_size: int, momentum: float = 0.9) -> int:
    """Re-estimate the moving statistics of every trainable BatchNormalization layer on ``images``.

    While the weights change quickly (from scratch, high learning rate) the moving averages lag far behind them,
    and the network in inference mode can predict one class for everything although it trains well: measured
    here on EfficientNet-B3 from scratch after 3 epochs (every cell called ALL; after re-estimation training
    subjects separated again). Forward passes in training mode with a short memory fix that. Frozen layers
    (fine-tuning pre-trained weights) are left alone. Returns the number of layers updated.
    """
    import keras

    def sublayers(layer):
        for child in getattr(layer, "layers", []):
            yield child
            yield from sublayers(child)

    layers = [layer for layer in sublayers(model) if isinstance(layer, keras.layers.BatchNormalization)
              and layer.trainable]
    if not layers or len(images) == 0:
        return 0
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = momentum
    try:
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size].astype("float32"), training=True)
    finally:
        for layer, m in zip(layers, saved):
            layer.momentum = m
    return len(layers)


class RunCallback:
    """Progress, cancellation, per-epoch checkpoint, early stopping and the LR schedule, resumably."""

    def __new__(cls, *args, **kwargs):
        import keras

        class Impl(keras.callbacks.Callback):
            def __init__(self, run, state, config, phase, first, end, base_lr, total_epochs, n_batches, report,
                         stop, validation=None, calibration_images=None, positive=None, track_best=True):
                super().__init__()
                self.track_best = track_best
                self.validation, self.positive = validation, positive
                has_val = validation is not None
                self.calibration_images = calibration_images
                self.calibrated_epoch = None
                self.run, self.state, self.config = run, state, config
                self.phase, self.first, self.end, self.base_lr = phase, first, end, base_lr
                self.total_epochs, self.n_batches = total_epochs, n_batches
                self.report, self.stop, self.has_val = report, stop, has_val
                self.early_stopped = False
                self.batch_times: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                if self.stop():
                    raise Cancelled()
                self.model.optimizer.learning_rate.assign(cosine_lr(self.base_lr, epoch, self.first, self.end))
                self.epoch = epoch
                self.t_epoch = self.t_batch = time.time()

            def _recalibrate(self):
                if self.calibration_images is not None and self.calibrated_epoch != self.epoch:
                    self.calibrated_epoch = self.epoch
                    self.report(ProgressEvent("train", "re-estimating BatchNorm statistics", phase=self.phase,
                                              epoch=self.epoch + 1, epochs=self.total_epochs))
                    recalibrate_batchnorm(self.model, self.calibration_images, self.config.batch_size)

            def on_train_batch_end(self, batch, logs=None):
                now = time.time()
                self.batch_times.append(now - self.t_batch)
                self.t_batch = now
                recent = self.batch_times[-20:] if len(self.batch_times) > 1 else self.batch_times
                per_batch = float(np.median(recent[1:] if len(recent) > 1 else recent))
                remaining = (self.n_batches - batch - 1) + (self.total_epochs - self.epoch - 1) * self.n_batches
                self.report(ProgressEvent(
                    "train", phase=self.phase, epoch=self.epoch + 1, epochs=self.total_epochs, batch=batch + 1,
                    batches=self.n_batches, logs={k: float(v) for k, v in (logs or {}).items()},
                    eta_s=remaining * per_batch * 1.15,
                    fraction=(self.epoch + (batch + 1) / self.n_batches) / self.total_epochs))
                if self.stop():
                    raise Cancelled()

            def on_epoch_end(self, epoch, logs=None):
                self._recalibrate()   # measure (and save) the network as it will be used: inference mode
                logs = {k: float(v) for k, v in (logs or {}).items()}
                if self.validation is not None:
                    logs.update(validation_logs(self.model, *self.validation, self.config.batch_size, self.positive))
                st = self.state
                for k, v in logs.items():
                    st["history"].setdefault(k, []).append(v)
                st["history"].setdefault("phase", []).append(self.phase)
                st["history"].setdefault("lr", []).append(float(np.asarray(self.model.optimizer.learning_rate)))
                st["epochs_done"] = epoch + 1
                st["train_seconds"] = st.get("train_seconds", 0.0) + (time.time() - self.t_epoch)
                # best_val_loss keeps its name in state.json; it holds the monitored figure, lower is better
                if self.config.monitor == "last":
                    monitor = -float(epoch)          # every epoch beats the one before
                elif self.config.monitor == "val_auc" and "val_auc" in logs:
                    monitor = -logs["val_auc"]
                else:
                    monitor = logs.get("val_loss", logs.get("loss"))
                if not self.track_best:
                    pass   # a low-resolution epoch is not a candidate for the model that will be used
                elif st["best_val_loss"] is None or monitor < st["best_val_loss"] - 1e-4:
                    st["best_val_loss"], st["best_epoch"], st["wait"] = monitor, epoch + 1, 0
                    self.run.save_weights(self.model, self.run.best_weights)
                else:
                    st["wait"] += 1
                self.run.save_weights(self.model, self.run.last_weights)
                self.run.save_optimizer(self.model.optimizer)
                self.run.save_state(st)
                self.report(ProgressEvent("train", f"epoch {epoch + 1}/{self.total_epochs} done", phase=self.phase,
                                          epoch=epoch + 1, epochs=self.total_epochs, batch=self.n_batches,
                                          batches=self.n_batches, logs=logs,
                                          fraction=(epoch + 1) / self.total_epochs))
                if (self.config.patience and self.has_val and self.track_best and self.phase != "head"
                        and st["wait"] >= self.config.patience):
                    self.early_stopped = True
                    self.model.stop_training = True

        return Impl(*args, **kwargs)


def predict_logits(model, images: np.ndarray, batch_size: int = 32, tta: bool | int = False) -> np.ndarray:
    """Logits of a Keras network for preprocessed cells; ``tta``: views averaged (True = 8, False = 1, or N)."""
    from .augment import dihedral_views, tta_view_count

    def run(x):
        outs = [np.asarray(model(x[i:i + batch_size].astype("float32"), training=False))
                for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, model.output_shape[-1]), np.float32)

    views = tta_view_count(tta)
    if views > 1:
        return np.mean([run(v) for v in dihedral_views(images, views)], axis=0)
    return run(images)
