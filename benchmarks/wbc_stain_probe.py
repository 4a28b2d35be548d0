"""Stain normalisation and optical resolution as levers for the white-cell model (issue 15, item 4): a copy of a
cell table (from ``leukviewer cells``) with every cell's colours or sharpness transformed, for the usual feature and
evaluation commands:

  python benchmarks/wbc_stain_probe.py --cells cells.npz --stain grey|reinhard --out cells_grey.npz
  python benchmarks/wbc_stain_probe.py --cells cells.npz --resolution 0.5 --out cells_res.npz
  python -m training wbc features --cells cells_grey.npz --imagenet-b4 b4.weights.h5 --views 1 --out feats.npy
  python -m training wbc fit --cells cells_grey.npz --features feats.npy --columns 272:2512 --all-cnmc-subjects \\
      --evaluation eval_grey.json

``grey``: luminance in all three channels (no colour at all). ``reinhard``: per cell, the L*a*b* mean and spread of
its non-black pixels set to the median of 3,000 cells of the table (Reinhard et al. 2001 colour transfer), the
black canvas untouched. Measured 2026-12-01 (training/results/wbc-stain-normalisation.json): neither helps the
held-out sources; both hurt the Aria-style fields.

``--resolution UM``: every cell brought to one optical resolution, UM micrometres per pixel, whatever its source
(downsampled with area averaging to the pixels UM would give the table's canvas, then resized back up bilinearly,
as the app resizes a cell up). The cells are all resampled to one physical scale, 23 µm on 128 px (0.18 µm a model
pixel), but not to one sharpness: C-NMC (0.066 µm a source pixel), BCCD (0.09) and PBC (0.11) are downsampled to
the model scale and stay sharp, while the Aria-style fields (0.31-0.50 µm a source pixel) are magnified ~2.3x and
so are the only blurred source, the one on which every backbone so far fails (field ROC-AUC 0.53-0.58).
"""
from __future__ import annotations

import argparse

import cv2
import numpy as np

BLACK = 12   # a pixel whose brightest channel is at most this is the canvas


def grey(cell: np.ndarray) -> np.ndarray:
    return np.repeat(cv2.cvtColor(cell, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


def lab_stats(cell: np.ndarray):
    fg = cell.max(axis=2) > BLACK
    if fg.sum() < 20:
        return None
    lab = cv2.cvtColor(cell, cv2.COLOR_RGB2LAB).astype(np.float32)[fg]
    return lab.mean(0), lab.std(0) + 1e-3


def reinhard(cell: np.ndarray, target_mean: np.ndarray, target_std: np.ndarray) -> np.ndarray:
    stats = lab_stats(cell)
    if stats is None:
        return cell
    fg = cell.max(axis=2) > BLACK
    lab = cv2.cvtColor(cell, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[fg] = (lab[fg] - stats[0]) / stats[1] * target_std + target_mean
    out = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    out[~fg] = cell[~fg]
    return out


def at_resolution(cell: np.ndarray, model_um_per_px: float, um_per_px: float) -> np.ndarray:
    """A model-scale cell as a camera of ``um_per_px`` would show it (a coarser resolution than the cell's own)."""
    side = cell.shape[0]
    small = max(2, int(round(side * model_um_per_px / um_per_px)))
    if small >= side:
        return cell
    down = cv2.resize(cell, (small, small), interpolation=cv2.INTER_AREA)
    return cv2.resize(down, (side, side), interpolation=cv2.INTER_LINEAR)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", required=True)
    p.add_argument("--stain", choices=("grey", "reinhard"))
    p.add_argument("--resolution", type=float, metavar="UM", help="one optical resolution for every cell, µm a pixel")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if not args.stain and not args.resolution:
        p.error("give --stain or --resolution")
    table = dict(np.load(args.cells))
    x = table["x"]
    if args.resolution:
        import json

        prep = json.loads(str(table["summary"]))["preprocessing"]
        model_um = float(prep["canvas_um"]) / float(prep["size"])
        table["x"] = np.stack([at_resolution(c, model_um, args.resolution) for c in x])
        np.savez(args.out, **table)
        print(f"{len(x)} cells at {args.resolution} µm a pixel (model pixels {model_um:.4f} µm): {args.out}")
        return
    if args.stain == "grey":
        table["x"] = np.stack([grey(c) for c in x])
    else:
        sample = np.random.default_rng(0).choice(len(x), min(3000, len(x)), replace=False)
        stats = [s for s in (lab_stats(x[i]) for i in sample) if s is not None]
        target_mean = np.median([s[0] for s in stats], 0)
        target_std = np.median([s[1] for s in stats], 0)
        table["x"] = np.stack([reinhard(c, target_mean, target_std) for c in x])
    np.savez(args.out, **table)
    print(f"{len(x)} cells, stain {args.stain}: {args.out}")


if __name__ == "__main__":
    main()
