"""``leukviewer evaluate ...`` and ``leukviewer cells ...``: the training steps that must see images as the app does.

The training library never imports the app (it is the lower layer). Two of its steps need the app's own image code:
evaluating a model that keeps physical cell size (each image's scale measured as the app measures it) and building
the multi-source cell table of the white-cell-type model (cells found and cut by the app's localiser). These
commands run ``python -m training evaluate`` and ``python -m training wbc cells`` with that code handed in: the same
options, the same output.
"""
from __future__ import annotations

from ..core.analysis import localize

#: command -> the training command it runs
COMMANDS = {"evaluate": ["evaluate"], "cells": ["wbc", "cells"]}


class AppCellFinder:
    """The app's localiser as a ``training.sources.CellFinder`` (a plain class: worker processes unpickle it)."""

    def find_single_cell(self, rgb):
        return localize.find_single_cell(rgb)

    def estimate_rbc_diameter(self, rgb):
        return localize.estimate_rbc_diameter(rgb)

    def find_white_cells(self, rgb, *, rbc_diameter=None):
        return localize.find_white_cells(rgb, rbc_diameter=rbc_diameter)

    def crop_cell(self, rgb, region, mask_background=True):
        return localize.crop_cell(rgb, region, mask_background=mask_background)


def main(argv: list[str]) -> int:
    """``argv``: the command (a key of ``COMMANDS``) and its options."""
    from training.cli import main as training_main

    from ..core.analysis.scale import measured_um_per_px

    command, options = argv[0], list(argv[1:])
    return training_main([*COMMANDS[command], *options], prog="leukviewer", um_per_px_of=measured_um_per_px,
                         cell_finder=AppCellFinder())
