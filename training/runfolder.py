"""The checkpoint folder of one run (``state.json``, last/best weights, optimizer state), so a run resumes."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from .modelfolder import atomic_write_text, jsonable

log = logging.getLogger(__name__)


class RunFolder:
    """The checkpoint folder of one run: state.json, last/best weights and the optimizer state."""

    def __init__(self, path: Path):
        self.path = Path(path)

    state_file = property(lambda self: self.path / "state.json")
    last_weights = property(lambda self: self.path / "last.weights.h5")
    last_optimizer = property(lambda self: self.path / "last.optimizer.npz")
    best_weights = property(lambda self: self.path / "best.weights.h5")

    def exists(self) -> bool:
        return self.state_file.is_file()

    def load_state(self) -> dict:
        return json.loads(self.state_file.read_text(encoding="utf-8"))

    def save_state(self, state: dict) -> None:
        atomic_write_text(self.state_file, json.dumps(state, indent=2, default=jsonable))

    def save_weights(self, model, target: Path) -> None:
        tmp = target.with_name(target.name.replace(".weights.h5", ".tmp.weights.h5"))
        model.save_weights(tmp)
        os.replace(tmp, target)

    def save_optimizer(self, optimizer) -> None:
        tmp = self.path / "last.optimizer.tmp.npz"
        np.savez(tmp, *[np.asarray(v) for v in optimizer.variables])
        os.replace(tmp, self.last_optimizer)

    def restore_optimizer(self, optimizer, trainable_variables) -> bool:
        if not self.last_optimizer.is_file():
            return False
        optimizer.build(trainable_variables)
        with np.load(self.last_optimizer) as saved:
            values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if len(values) != len(optimizer.variables) or any(
                tuple(v.shape) != tuple(s.shape) for v, s in zip(optimizer.variables, values)):
            log.warning("saved optimizer state does not match; continuing with a fresh optimizer")
            return False
        for v, s in zip(optimizer.variables, values):
            v.assign(s)
        return True
