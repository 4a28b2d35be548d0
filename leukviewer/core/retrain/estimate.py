"""How long a training will take on this computer: a few batches timed with ``training.train``. No Qt."""
from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import training

from .run import on_own_thread
from .session import wizard_runs_dir

WARMUP_BATCHES = 4          # batches timed for the estimate (the first one includes compiling the graph)


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

    def describe(self, epochs: int) -> str:
        return (f"About {format_duration(self.total_seconds(epochs))} for {epochs} epoch(s) "
                f"(measured {self.per_batch_s:.2f} s per batch of {self.batch_size}, {self.batches_per_epoch} "
                f"batches per epoch, {format_duration(self.overhead_s)} to read the images and build the model).")


def format_duration(seconds: float | None) -> str:
    """"42 s", "3 min 05 s", "2 h 07 min"; "–" for unknown."""
    if seconds is None:
        return "–"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def measure_training_speed(config: "training.TrainConfig", images: int, on_progress: Callable | None = None,
                           should_stop: Callable[[], bool] | None = None) -> SpeedEstimate | None:
    """Time a few training batches of ``config`` with ``training.train`` into a throwaway run folder.

    The backbone is unfrozen for the measurement (the slower phase), so the estimate errs on the long side.
    None when stopped before a batch was timed.
    """
    stopped = should_stop or (lambda: False)
    base = wizard_runs_dir()
    base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".warmup-", dir=base))
    warm = replace(config, run_dir=str(scratch / "run"), output=None, head_epochs=0, epochs=1, patience=0,
                   max_steps_per_epoch=None)
    times: list[float] = []
    seen = {"batches": 0}
    t0 = time.perf_counter()

    def progress(event):
        if event.stage == "train" and event.batch and not event.message:
            times.append(time.perf_counter())
            seen["batches"] = event.batches
        if on_progress:
            on_progress(event)

    def enough():
        return len(times) >= min(WARMUP_BATCHES, seen["batches"] or WARMUP_BATCHES) or stopped()

    try:
        on_own_thread(training.train, warm, on_progress=progress, should_stop=enough)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not times or stopped():
        return None
    return estimate_from_batch_times(times, t0, seen["batches"], images, config.batch_size)


def estimate_from_batch_times(times: list[float], t0: float, batches_per_epoch: int, images: int,
                              batch_size: int) -> SpeedEstimate:
    """The estimate from the clock times at which the timed batches ended (``t0``: when training was called)."""
    gaps = np.diff(times).tolist()
    per_batch = statistics.median(gaps) if gaps else (times[0] - t0) / 4
    overhead = max(0.0, times[0] - t0 - per_batch)
    return SpeedEstimate(per_batch, batches_per_epoch, overhead, images, batch_size)
