"""The wizard's plots: learning curves while training, confusion matrices of the comparison."""
from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtWidgets import QSizePolicy


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

