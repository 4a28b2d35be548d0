"""The end of a run: calibrate on the validation subjects, evaluate on the test subjects, write the figures,
``result.json`` and the self-describing model folder; ``export_run`` does the same from a stopped run's checkpoint."""
from __future__ import annotations

import json
import os
import platform
import shutil
from pathlib import Path

import numpy as np

from . import __version__
from .config import RUO, TrainConfig, TrainResult, ProgressEvent
from .augment import tta_view_count
from .epochs import positive_index, predict_logits
from .metrics import (choose_threshold, choose_uncertainty_band, classification_metrics,
                      expected_calibration_error, fit_temperature, save_figures)
from .modelfolder import atomic_write_text, jsonable, save_model_folder, softmax, tta_description
from .runfolder import RunFolder
from .schedule import initial_model, load_weights
from .splits import LEAK_WARNING
from .traindata import PreparedData, prepare_data


def finalize(model, data: PreparedData, config: TrainConfig, state: dict, run: RunFolder, report) -> TrainResult:
    """Calibrate on validation subjects, evaluate on test subjects, write figures and the model folder."""
    ds, split = data.dataset, data.split
    class_names = list(ds.class_names)
    binary = len(class_names) == 2
    positive = positive_index(class_names)
    subjects = [s.subject for s in ds.samples]

    temperature, threshold, band = 1.0, 0.5, (0.5, 0.5)
    calibration = {"temperature": 1.0, "fitted_on": "nothing (no validation part)"}
    decision_note = "default 0.5 (no validation part to choose on)"
    val_metrics = None
    if split.val:
        val_logits = predict_logits(model, data.images[split.val], config.batch_size, config.tta)
        y_val = data.labels[split.val]
        temperature = fit_temperature(val_logits, y_val)
        p_raw, p_cal = softmax(val_logits), softmax(val_logits, temperature)
        calibration = {"temperature": temperature, "fitted_on": f"validation part ({split.kind} split, "
                       f"{len(split.val)} images)", "ece_before": expected_calibration_error(y_val, p_raw),
                       "ece_after": expected_calibration_error(y_val, p_cal)}
        if binary and len(set(y_val.tolist())) > 1:
            threshold = choose_threshold(y_val, p_cal[:, positive], positive)
            band = choose_uncertainty_band(y_val, p_cal[:, positive], threshold, positive,
                                           config.uncertainty_target_accuracy)
            decision_note = (f"threshold maximises balanced accuracy on the validation part; the uncertainty band "
                             f"is the narrowest around it outside which validation accuracy is >= "
                             f"{config.uncertainty_target_accuracy:.2f}")
        val_metrics = classification_metrics(y_val, p_cal, class_names, [subjects[i] for i in split.val],
                                             positive, threshold if binary else None)

    test_metrics = None
    report_dir = run.path / "report"
    if split.test:
        test_logits = predict_logits(model, data.images[split.test], config.batch_size, config.tta)
        y_test = data.labels[split.test]
        p_test = softmax(test_logits, temperature)
        test_metrics = classification_metrics(y_test, p_test, class_names, [subjects[i] for i in split.test],
                                              positive, threshold if binary else None)
        test_metrics["ece_uncalibrated"] = expected_calibration_error(y_test, softmax(test_logits))
        save_figures(report_dir, y_test, p_test, class_names, positive, threshold if binary else None,
                     state["history"], title=f"({split.kind} test)")
        np.savez(run.path / "test_predictions.npz", logits=test_logits, labels=y_test,
                 subjects=np.array([subjects[i] for i in split.test]),
                 paths=np.array([str(ds.samples[i].path) for i in split.test]))

    split_desc = split.describe(ds)
    metrics = {"test": test_metrics, "validation": val_metrics,
               "measured_on": ("held-out test part of a " + ("LEAKY IMAGE-LEVEL" if split.leaks_subjects else
                                                               "subject-disjoint") + f" {split.kind} split")}
    if split.leaks_subjects:
        metrics["warning"] = LEAK_WARNING
    meta = {
        "name": config.name,
        "version": config.version,
        "intended_use": RUO,
        "class_names": class_names,
        "positive_class": class_names[positive] if positive is not None else None,
        "architecture": {"backbone": config.backbone, "input_size": [config.input_size] * 2,
                         "dropout": config.dropout, "head": "dense logits; p = softmax(logits / temperature)"},
        "preprocessing": data.preprocess.to_dict(),
        "temperature": temperature,
        "calibration": calibration,
        **({"test_time_augmentation": tta_description(views)} if (views := tta_view_count(config.tta)) > 1 else {}),
        "decision": {"threshold": threshold, "uncertainty_band": list(band), "chosen_by": decision_note},
        "training": {
            "data": ds.summary(),
            "split": split_desc,
            "config": config.to_dict(),
            "epochs_trained": state["epochs_done"],
            "best_epoch": state["best_epoch"],
            "history": state["history"],
            "train_seconds": state.get("train_seconds"),
            "hardware": _hardware(),
            "software": _software(),
            "parent_model": config.parent_model,
        },
        "metrics": metrics,
    }
    if state.get("distribution"):   # trained under tf.distribute (training/distribute.py)
        meta["training"]["distribution"] = state["distribution"]
    atomic_write_text(run.path / "result.json", json.dumps(meta, indent=2, default=jsonable))
    folder = None
    if config.output:
        report(ProgressEvent("export", f"writing the model folder {config.output}"))
        folder = save_model_folder(model, config.output, meta, overwrite=False)
        from .card import CNMC_SOURCE, write_model_card

        write_model_card(folder, data_source=CNMC_SOURCE if ds.layout == "cnmc" else None)
        if report_dir.is_dir():
            shutil.copytree(report_dir, Path(folder) / "figures", dirs_exist_ok=True)
    return TrainResult(run.path, False, Path(folder) if folder else None, state["history"], metrics, meta)


def _hardware() -> dict:
    import tensorflow as tf

    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def _software() -> dict:
    import keras
    import tensorflow as tf

    return {"training_library": __version__, "tensorflow": tf.__version__, "keras": keras.__version__,
            "keras_backend": keras.backend.backend(), "python": platform.python_version()}


def export_run(run_dir: str | Path, output: str | Path, report=lambda e: None) -> TrainResult:
    """Write a model folder from a run's best checkpoint (e.g. a run that was stopped before its end)."""
    run = RunFolder(Path(run_dir))
    if not run.exists():
        raise FileNotFoundError(f"{run_dir} is not a training run folder (no state.json)")
    state = run.load_state()
    config = TrainConfig.from_dict(state["config"])
    config.output = str(output)
    data = prepare_data(config, report)
    model = initial_model(TrainConfig.from_dict({**config.to_dict(), "init": "scratch"}),
                           len(data.dataset.class_names))
    weights = run.best_weights if run.best_weights.is_file() else run.last_weights
    if not weights.is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet")
    load_weights(model, weights)
    return finalize(model, data, config, state, run, report)
