"""Every staged source as white cells with a type, cut and scaled exactly as the app cuts and scales them.

The multi-class model learns from several labs at once, so every source goes through ONE crop and scale
convention: the app's own localiser finds the cells of a smear field and cuts each onto black (as
``leukviewer.core.analysis.pipeline.locate`` does),
C-NMC crops are used whole (as the app uses a single-cell crop), and each
image's micrometres per pixel comes from its red cells (fields) or the C-NMC calibration (crops on black), as in
the app. Sources and the labels they give (data staged by ``../shared/tools/stage-data``):

- ``cnmc``  C-NMC 2019 fold_0 + fold_1: ``all`` -> blast, ``hem`` -> lymphoid (normal B-lineage); group = subject.
- ``pbc``   PBC (CellaVision, healthy donors): 8 classes; ``lymphocyte`` -> lymphoid, ``platelet`` -> non_wbc; the
            cell nearest the image centre is the labelled one. Group = image (PBC has no donor IDs).
- ``aria``  "Blood cells cancer (ALL)" fields: Benign (hematogones) -> lymphoid, Early/Pre/Pro (B-ALL) -> blast.
            A WEAK label: one per field, given to every whole white cell found in it (a B-ALL field may also hold
            a normal cell). Group = field (no patient IDs).
- ``bccd``  BCCD fields: detections on an annotated WBC box -> ``wbc`` (type unknown; for evaluation only, BCCD
            donors have no leukaemia), other detections and annotated red cells -> non_wbc.

This module holds the rules (which cell of which source gets which label); the localiser is passed in as a
:class:`CellFinder`: the training library never imports the app, and the app's ``python -m leukviewer cells``
passes its own (``leukviewer.core.analysis.localize``), so that training sees what the app sees.
"""
from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .imageio import read_image
from .preprocess import PreprocessConfig, preprocess_cell
from .scale import CNMC_UM_PER_PX, um_per_px_from_rbc

PBC_TYPES = {"basophil": "basophil", "eosinophil": "eosinophil", "erythroblast": "erythroblast", "ig": "ig",
             "lymphocyte": "lymphoid", "monocyte": "monocyte", "neutrophil": "neutrophil", "platelet": "non_wbc"}
ARIA_TYPES = {"Benign": "lymphoid", "Early": "blast", "Pre": "blast", "Pro": "blast"}
CNMC_TYPES = {"all": "blast", "hem": "lymphoid"}
#: a detection smaller than this (equivalent diameter, µm) is not taken as a white cell of a weakly labelled field
MIN_WBC_DIAMETER_UM = 6.0


class CellFinder(Protocol):
    """How cells are found and cut in an image: the app's localiser, as ``leukviewer.core.analysis.localize``
    names it. A region has ``area`` (px), ``centroid`` (x, y) and ``partial`` (cut by the image border). Picklable: the table
    is built in worker processes."""

    def find_single_cell(self, rgb: np.ndarray): ...

    def estimate_rbc_diameter(self, rgb: np.ndarray) -> float | None: ...

    def find_white_cells(self, rgb: np.ndarray, *, rbc_diameter: float | None = None) -> list: ...

    def crop_cell(self, rgb: np.ndarray, region, mask_background: bool = True) -> np.ndarray: ...


@dataclass
class SourceImage:
    path: Path
    source: str
    label: str          # cell type of the image (C-NMC, PBC, Aria) or "" (BCCD: per detection)
    group: str          # subject where known, else the image
    field: str          # the image, for field-level figures


def _images(folder: Path, patterns=("*.bmp", "*.jpg", "*.png")) -> list[Path]:
    return sorted(p for pat in patterns for p in folder.glob(pat))


def list_source_images(root: str | Path, sources=("cnmc", "pbc", "aria", "bccd"), pbc_per_class: int | None = None,
                       aria_per_class: int | None = None, seed: int = 0,
                       bccd_fields: int | None = None) -> list[SourceImage]:
    """The staged images of each source with their labels (sampled per class where a limit is given)."""
    from .datasets import subject_from_name

    root = Path(root)
    rng = random.Random(seed)
    out: list[SourceImage] = []
    if "cnmc" in sources:
        for fold in sorted((root / "cnmc" / "training_data").glob("fold_*")):
            for cls, cell_type in CNMC_TYPES.items():
                for p in _images(fold / cls):
                    subject = subject_from_name(p.stem) or p.stem
                    out.append(SourceImage(p, "cnmc", cell_type, f"cnmc:{subject}", f"{fold.name}/{p.name}"))
    for name, types, limit in (("pbc", PBC_TYPES, pbc_per_class), ("aria", ARIA_TYPES, aria_per_class)):
        if name not in sources:
            continue
        for cls, cell_type in types.items():
            files = _images(root / name / cls)
            if limit is not None and len(files) > limit:
                files = sorted(rng.sample(files, limit))
            out += [SourceImage(p, name, cell_type, f"{name}:{cls}/{p.name}", f"{cls}/{p.name}") for p in files]
    if "bccd" in sources:
        for p in _images(root / "bccd" / "JPEGImages")[:bccd_fields]:
            out.append(SourceImage(p, "bccd", "", f"bccd:{p.name}", p.name))
    return out


def _voc_boxes(xml_path: Path) -> list[tuple[str, tuple[int, int, int, int]]]:
    if not xml_path.is_file():
        return []
    boxes = []
    for obj in ET.parse(xml_path).getroot().iter("object"):
        b = obj.find("bndbox")
        x0, y0, x1, y1 = (int(float(b.find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax"))
        if x1 > x0 and y1 > y0:
            boxes.append((obj.find("name").text.strip(), (x0, y0, x1, y1)))
    return boxes


def _ellipse_crop(rgb: np.ndarray, box) -> np.ndarray:
    """A red-cell box cut onto black with an elliptical mask (a non-white-cell example)."""
    import cv2

    x0, y0, x1, y1 = box
    patch = rgb[y0:y1, x0:x1].copy()
    mask = np.zeros(patch.shape[:2], np.uint8)
    cv2.ellipse(mask, ((patch.shape[1] / 2, patch.shape[0] / 2), (patch.shape[1], patch.shape[0]), 0), 255, -1)
    return cv2.bitwise_and(patch, patch, mask=mask)


def image_cells(item: SourceImage, config: PreprocessConfig, finder: CellFinder, red_cells_per_field: int = 2):
    """(prepared cells, rows) for one source image, its cells found by ``finder``; rows describe each cell (type,
    scale, size, border)."""
    rgb = read_image(item.path)
    rows, cells = [], []
    base = {"source": item.source, "group": item.group, "field": item.field}
    if item.source == "cnmc":
        region = finder.find_single_cell(rgb)
        if region is None:
            return cells, rows
        um = CNMC_UM_PER_PX
        cells.append(preprocess_cell(rgb, config, um))
        rows.append({**base, "cell_type": item.label, "um_per_px": um, "scale_source": "cnmc_calibration",
                     "diameter_um": float(np.sqrt(4 * region.area / np.pi)) * um, "partial": False})
        return cells, rows
    rbc = finder.estimate_rbc_diameter(rgb)
    if rbc is None:
        return cells, rows  # no trustworthy scale: left out of training (the app flags such images)
    um = um_per_px_from_rbc(rbc)
    regions = finder.find_white_cells(rgb, rbc_diameter=rbc)
    height, width = rgb.shape[:2]
    picked: list[tuple[object, str]] = []
    if item.source == "pbc":
        if regions:
            centre = min(regions, key=lambda r: (r.centroid[0] - width / 2) ** 2 + (r.centroid[1] - height / 2) ** 2)
            if abs(centre.centroid[0] - width / 2) < width / 4 and abs(centre.centroid[1] - height / 2) < height / 4:
                picked.append((centre, item.label))
    elif item.source == "aria":
        for r in regions:
            if not r.partial and np.sqrt(4 * r.area / np.pi) * um >= MIN_WBC_DIAMETER_UM:
                picked.append((r, item.label))
    elif item.source == "bccd":
        boxes = _voc_boxes(item.path.parent.parent / "Annotations" / (item.path.stem + ".xml"))
        wbc = [b for n, b in boxes if n == "WBC"]
        for r in regions:
            cx, cy = r.centroid
            on_wbc = any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in wbc)
            picked.append((r, "wbc" if on_wbc else "non_wbc"))
        rbcs = [b for n, b in boxes if n == "RBC" and b[0] > 0 and b[1] > 0 and b[2] < width and b[3] < height]
        for box in random.Random(item.field).sample(rbcs, min(red_cells_per_field, len(rbcs))):
            cells.append(preprocess_cell(_ellipse_crop(rgb, box), config, um))
            d = np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
            rows.append({**base, "cell_type": "non_wbc", "um_per_px": um, "scale_source": "red_cells",
                         "diameter_um": float(d * um), "partial": False, "detected": False})
    for region, cell_type in picked:
        cells.append(preprocess_cell(finder.crop_cell(rgb, region, mask_background=True), config, um))
        rows.append({**base, "cell_type": cell_type, "um_per_px": um, "scale_source": "red_cells",
                     "diameter_um": float(np.sqrt(4 * region.area / np.pi)) * um, "partial": bool(region.partial),
                     "detected": True})
    return cells, rows


def _work(args):
    item, config, finder = args
    try:
        return image_cells(item, config, finder)
    except Exception as e:  # one unreadable image must not end the table; it is counted
        return [], [{"error": f"{item.path}: {type(e).__name__}: {e}"}]


class _InProcess:
    """The Pool interface, run in this process (one worker: no process start-up)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def imap(fn, jobs, chunksize=1):
        return map(fn, jobs)


def build_cell_table(items: list[SourceImage], config: PreprocessConfig, out: str | Path, workers: int = 2,
                     progress=None, *, finder: CellFinder) -> dict:
    """Cut (with ``finder``), scale and preprocess every cell of ``items``; write ``out`` (.npz: ``x`` uint8 cells
    and one array per row field). Returns counts per source and type."""
    import json
    from multiprocessing import get_context

    xs, rows, errors = [], [], []
    jobs = [(it, config, finder) for it in items]
    pool = get_context("spawn").Pool(workers) if workers > 1 else None
    with pool or _InProcess() as runner:
        for i, (cells, rws) in enumerate(runner.imap(_work, jobs, chunksize=16)):
            for c, r in zip(cells, rws):
                xs.append(c)
                rows.append(r)
            errors += [r["error"] for r in rws if "error" in r]
            if progress and i % 500 == 0:
                progress(i, len(jobs))
    keys = ["source", "group", "field", "cell_type", "um_per_px", "scale_source", "diameter_um", "partial"]
    arrays = {k: np.array([r.get(k) for r in rows]) for k in keys}
    x = np.stack(xs) if xs else np.zeros((0, config.size, config.size, 3), np.uint8)
    counts: dict = {}
    for s, t in zip(arrays["source"], arrays["cell_type"]):
        counts.setdefault(str(s), {}).setdefault(str(t), 0)
        counts[str(s)][str(t)] += 1
    summary = {"cells": len(rows), "images": len(items), "errors": errors, "per_source": counts,
               "preprocessing": config.to_dict()}
    np.savez(out, x=x, summary=json.dumps(summary), **arrays)
    return summary
