"""The training loop: ``train(config, on_progress, should_stop) -> TrainResult``.

The CLI and the app's retraining wizard both call this one function. It checkpoints after every epoch into
``config.run_dir`` (outside the repository by default) so that ``resume=True`` continues an interrupted run,
reports through a plain callback, and stops cooperatively when ``should_stop()`` returns True.

The pieces: ``config`` (what a run is told), ``traindata`` (images, split, epochs' order), ``runfolder``
(checkpoints), ``schedule`` (initial network, phases, learning rate), ``epochs`` (the per-epoch callback),
``finalize`` (calibration, test figures, model folder), ``distribute`` (tf.distribute).
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import replace
from typing import Callable

import numpy as np

from .config import RUO, Cancelled, ProgressEvent, TrainConfig, TrainResult, default_runs_dir
from .epochs import RunCallback, positive_index
from .finalize import export_run, finalize
from .runfolder import RunFolder
from .schedule import compile_model, initial_model, load_weights, phases_of, resized
from .splits import LEAK_WARNING
from .traindata import make_sequence, prepare_data, recalibration_images

__all__ = ["train", "TrainConfig", "ProgressEvent", "TrainResult", "Cancelled", "export_run", "prepare_data",
           "default_runs_dir", "RUO"]

log = logging.getLogger(__name__)


def train(config: TrainConfig | dict, on_progress: Callable[[ProgressEvent], None] | None = None,
          should_stop: Callable[[], bool] | None = None, resume: bool = False,
          strategy: str | None = None) -> TrainResult:
    """Train a classifier as ``config`` says; see the module docstring for checkpoints and cancellation.

    ``strategy`` (mirrored | multiworker): the same training under tf.distribute, scaled and checkpointed as
    ``training/distribute.py`` says; the model folder is the same."""
    from .distribute import make_distribution, this_workers_run

    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    dist = make_distribution(strategy)   # first: MultiWorkerMirroredStrategy configures TensorFlow's runtime
    with this_workers_run(config, dist, resume) as config:
        return _train(config, on_progress, should_stop, resume, dist)


def _train(config: TrainConfig, on_progress, should_stop, resume: bool, dist) -> TrainResult:
    from .distribute import scaled
    from .model import set_trainable

    report = on_progress or (lambda e: None)
    stop = should_stop or (lambda: False)
    run = RunFolder(config.resolved_run_dir())
    if run.exists() and not resume:
        state = run.load_state()
        if state.get("finished"):
            raise FileExistsError(f"{run.path} holds a finished run; choose another run folder")
        raise FileExistsError(f"{run.path} holds an unfinished run; resume it (--resume) or choose another "
                              "run folder")
    if resume and run.exists():
        state = run.load_state()
        saved = TrainConfig.from_dict(state["config"])
        for key in ("data", "backbone", "input_size", "canvas_px", "split", "seed", "cv_fold", "init",
                    "sample_weights"):
            if getattr(saved, key) != getattr(config, key):
                raise ValueError(f"cannot resume {run.path}: its {key} was {getattr(saved, key)!r}, "
                                 f"now {getattr(config, key)!r}")
        # a worker other than the chief resumes from a copy of the chief's run and keeps writing to its scratch
        config = saved if dist is None or dist.chief else replace(saved, run_dir=config.run_dir, output=config.output)
    else:
        state = {"config": config.to_dict(), "epochs_done": 0, "history": {}, "best_val_loss": None,
                 "best_epoch": None, "wait": 0, "finished": False, "train_seconds": 0.0}
    run.path.mkdir(parents=True, exist_ok=True)
    if dist is not None:
        state["distribution"] = dist.describe(config.batch_size)

    t_start = time.time()
    report(ProgressEvent("prepare", "reading and preprocessing images"))
    data = prepare_data(config, report)
    log.info("split: %s", json.dumps(data.split.describe(data.dataset)))
    if data.split.leaks_subjects:
        log.warning(LEAK_WARNING)
    n_classes = len(data.dataset.class_names)

    run_config = scaled(config, dist.replicas) if dist else config   # global batch and learning rates
    phases = phases_of(run_config)
    total_epochs = phases[-1][2]
    x_val = data.images[data.split.val] if data.split.val else None
    y_val = data.labels[data.split.val] if data.split.val else None
    class_weight = None
    if config.class_weights:
        counts = np.bincount(data.labels[data.split.train], minlength=n_classes)
        class_weight = {i: float(len(data.split.train) / (n_classes * max(1, c))) for i, c in enumerate(counts)}
    if data.weights is not None:   # per-image weights: the batches carry them, the class weights folded in
        if class_weight is not None:
            data.weights = data.weights * np.array([class_weight[int(c)] for c in data.labels])
        class_weight = None

    scope = dist.strategy.scope() if dist else contextlib.nullcontext()
    with scope:   # the network, its optimizer and every step built and run under the strategy
        model = full_model = initial_model(config, n_classes)
        # Pre-trained BatchNorm statistics are kept by default (ImageNet's are better than a small data set's); a
        # backbone pre-trained on another lab's images (PBC) may need them re-learnt: train_batchnorm=True.
        pretrained = config.init in ("imagenet", "model") and not config.train_batchnorm
        stopped_early = False
        recal_images = recalibration_images(data, config)

        for phase_name, first, end, base_lr, size in phases:
            if state["epochs_done"] >= end or state.get("early_stopped"):
                continue
            if size != config.input_size:
                # The same network built for smaller inputs shares every weight; it hands them on through the
                # phase's last checkpoint, which the full-size network loads when the next phase starts.
                model = initial_model(replace(config, input_size=size), n_classes)
                if first == 0 or not run.last_weights.is_file():
                    model.set_weights(full_model.get_weights())
            else:
                model = full_model
            set_trainable(model, "head" if phase_name == "head" else config.unfreeze, freeze_batchnorm=pretrained)
            compile_model(model, base_lr, config.weight_decay)
            if dist is not None and dist.workers > 1:
                from .distribute import build_from_local_batch

                build_from_local_batch(model)
            start = max(first, state["epochs_done"])
            if start > 0 and run.last_weights.is_file():
                load_weights(model, run.last_weights)
                if start > first:
                    run.restore_optimizer(model.optimizer, model.trainable_variables)
            sequence = make_sequence(data, run_config, start, resized(data.images, size))
            callback = RunCallback(run, state, config, phase_name, first, end, base_lr, total_epochs,
                                    sequence.n_batches, report, stop,
                                    validation=(resized(x_val, size), y_val) if x_val is not None else None,
                                    calibration_images=resized(recal_images, size),
                                    positive=positive_index(data.dataset.class_names),
                                    track_best=size == config.input_size)
            try:
                model.fit(sequence, epochs=end, initial_epoch=start, verbose=0, callbacks=[callback],
                          class_weight=class_weight)
            except Cancelled:
                report(ProgressEvent("done", f"cancelled; the last checkpoint (epoch {state['epochs_done']}) is kept "
                                     f"in {run.path}", epoch=state["epochs_done"], epochs=total_epochs))
                return TrainResult(run.path, cancelled=True, history=state["history"])
            if callback.early_stopped:
                stopped_early = True
                state["early_stopped"] = True
                run.save_state(state)
                break

        state["train_seconds"] = state.get("train_seconds", 0.0)
        report(ProgressEvent("evaluate", "calibrating and evaluating"))
        model = full_model
        if run.best_weights.is_file():
            load_weights(model, run.best_weights)
    result = finalize(model, data, config, state, run, report)
    result.stopped_early = stopped_early
    state["finished"] = True
    state["wall_seconds_last_session"] = time.time() - t_start
    run.save_state(state)
    report(ProgressEvent("done", "finished" + (f"; model folder {result.model_folder}" if result.model_folder else ""),
                         epoch=state["epochs_done"], epochs=total_epochs))
    return result
