"""``training.train`` (and evaluation) for a retraining, each on a fresh Python thread. No Qt."""
from __future__ import annotations

import threading
from collections.abc import Callable

import training


def on_own_thread(fn, *args, **kwargs):
    """Run ``fn`` on a new Python thread and wait for it (result or exception).

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


def run_training(config: "training.TrainConfig", resume: bool = False, on_progress: Callable | None = None,
                 should_stop: Callable[[], bool] | None = None) -> "training.TrainResult":
    """``training.train`` on its own thread with progress events and a cooperative stop (the same call for the
    wizard and ``leukviewer retrain``)."""
    return on_own_thread(training.train, config, on_progress=on_progress, should_stop=should_stop, resume=resume)
