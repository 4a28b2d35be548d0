"""What an analysis produces: cells, per-image results and the case (folder) summary."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from training.celltypes import BLAST, CELL_TYPES, LEGACY_BINARY, NON_WBC, is_white_cell

from ..model.classifier import LABEL_BLAST, LABEL_NORMAL, LABEL_UNCERTAIN

STATUS_OK = "ok"
STATUS_NO_CELLS = "no cells found"
STATUS_UNREADABLE = "unreadable"          # the file could not be decoded (the image's fault)
STATUS_FAILED = "analysis failed"         # leukviewer failed on a readable image (a fault to report, not the image's)
#: ``Case.image_counts()`` keys of the images that add no cell to the counts, as a report names them.
IMAGE_COUNT_WORDS = {"unreadable": "unreadable", "failed": "failed (analysis fault)",
                     "without_cells": "without white cells"}

WHITE_CELLS_NOTE = (f"Cells of type {NON_WBC} ({CELL_TYPES[NON_WBC].lower()}: platelet, debris, red cell) are not "
                    "white cells: they are excluded from white_cells, blasts, uncertain and normal, and from the "
                    "denominator of the blast percentage (blasts per 100 white cells).")


def count_cells(labels_and_types: Iterable[tuple[str, str]]) -> dict:
    """The counts every output shows, from each cell's (label, white-cell type).

    ``cells``: every detected cell; ``white_cells``: those not of type non_wbc; ``blasts`` / ``uncertain`` /
    ``normal``: white cells by label; ``blast_percentage``: blasts per 100 white cells; ``blast_percentage_min`` /
    ``blast_percentage_max``: the range it can take while the ``uncertain`` (undecided) white cells are undecided
    (``blast_range``); ``cell_types``: cells per type (vocabulary order, types with no cell left out), non_wbc
    included.
    """
    n = blasts = uncertain = 0
    types: Counter = Counter()
    for label, cell_type in labels_and_types:
        n += 1
        types[cell_type] += 1
        if is_white_cell(cell_type):
            blasts += label == LABEL_BLAST
            uncertain += label == LABEL_UNCERTAIN
    white = n - types[NON_WBC]
    return {"cells": n, "white_cells": white, "non_white_cells": types[NON_WBC], "blasts": blasts,
            "uncertain": uncertain, "normal": white - blasts - uncertain,
            "blast_percentage": round(100.0 * blasts / white, 2) if white else None,
            **blast_range(blasts, uncertain, white), "cell_types": in_type_order(types)}


def blast_range(blasts: int, undecided: int, white_cells: int) -> dict:
    """The blasts per 100 white cells that ``undecided`` (UNCERTAIN) white cells allow: the minimum counts every
    undecided cell as normal, the maximum every one as a blast (None without white cells). The one place the
    range is computed; every table, panel and report reads these two keys."""
    if not white_cells:
        return {"blast_percentage_min": None, "blast_percentage_max": None}
    return {"blast_percentage_min": round(100.0 * blasts / white_cells, 2),
            "blast_percentage_max": round(100.0 * (blasts + undecided) / white_cells, 2)}


def _number(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def percentage_text(counts: dict) -> str:
    """Blasts per 100 white cells as every surface shows it: "12.5 %" when it is decided, "0–100 %" while
    undecided cells could change it, "–" without white cells."""
    lo, hi = counts.get("blast_percentage_min"), counts.get("blast_percentage_max")
    if lo is None:
        value = counts.get("blast_percentage")
        return "–" if value is None else f"{value:.1f} %"
    return f"{lo:.1f} %" if hi is None or hi == lo else f"{_number(lo)}–{_number(hi)} %"


def undecided_text(counts: dict) -> str:
    """"47 of 47 white cells undecided" when undecided cells could change the blast percentage, else ""."""
    lo, hi = counts.get("blast_percentage_min"), counts.get("blast_percentage_max")
    if lo is None or hi is None or hi == lo:
        return ""
    return f"{counts.get('uncertain', 0)} of {counts.get('white_cells', 0)} white cells undecided"


def blast_percentage_text(counts: dict) -> str:
    """``percentage_text`` with the undecided cells named: "0–100 %, 47 of 47 white cells undecided"."""
    undecided = undecided_text(counts)
    return percentage_text(counts) + (f", {undecided}" if undecided else "")


def in_type_order(counts: dict[str, int]) -> dict[str, int]:
    """Counts per type in the vocabulary's order (unknown names last), types with no cell left out."""
    return {t: counts[t] for t in [*CELL_TYPES, *sorted(set(counts) - set(CELL_TYPES))] if counts.get(t)}


def counted_cells(cells, include_partial: bool = False) -> list:
    """The cells that enter the counts: a cell cut by the image border is shown and flagged but, as on
    CellaVision, not counted (part of it is outside the field, so it may be counted again in the next one)."""
    return [c for c in cells if include_partial or not c.partial]


@dataclass
class Cell:
    cell_id: str                       # "<image relative path>#<n>", n from 1 in reading order
    image: str                         # image path relative to the case folder
    bbox: tuple[int, int, int, int]    # x, y, width, height in image pixels
    outline: list[list[int]]           # polygon [[x, y], ...] in image pixels
    centroid: tuple[float, float]
    area: int
    blast_probability: float           # calibrated P(ALL)
    label: str                         # ALL | HEM | UNCERTAIN (the model's suggestion)
    partial: bool                      # cut by the image border
    model_name: str
    model_version: str
    model_sha256: str
    cell_type: str = ""                # white-cell type (training.celltypes), consistent with label
    type_probabilities: dict[str, float] = field(default_factory=dict)   # calibrated, per model class, by type

    def __post_init__(self):
        if not self.cell_type:  # a cell without a type (stored before types existed): a legacy HEM/ALL model's
            p = float(self.blast_probability)
            self.type_probabilities = {LEGACY_BINARY[LABEL_NORMAL]: round(1.0 - p, 6), BLAST: p}
            self.cell_type = BLAST if self.label == LABEL_BLAST else LEGACY_BINARY[LABEL_NORMAL]

    def to_dict(self) -> dict:
        """``dataclasses.asdict(self)``, the same dict, without its deep copy of every outline point one by one
        (1.2 ms an image of C-NMC crops, paid on the batch CLI's main thread for every image it logs)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["bbox"], d["centroid"] = tuple(self.bbox), tuple(self.centroid)
        d["outline"] = [list(point) for point in self.outline]
        d["type_probabilities"] = dict(self.type_probabilities)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        d = dict(d)
        d["bbox"] = tuple(d["bbox"])
        d["centroid"] = tuple(d["centroid"])
        return cls(**d)


@dataclass
class ImageResult:
    path: str                          # absolute path
    image: str                         # relative to the case folder
    status: str                        # ok | no cells found | unreadable: <reason> | analysis failed: <error>
    kind: str = ""                     # single_cell | smear_field
    width: int = 0
    height: int = 0
    cells: list[Cell] = field(default_factory=list)
    seconds: float = 0.0
    um_per_px: float = 0.0             # micrometres of slide per image pixel (0: not determined)
    scale_source: str = ""             # user | metadata | red_cells | cnmc_calibration | assumed (untrusted)

    @property
    def ok(self) -> bool:
        return not self.status.startswith((STATUS_UNREADABLE, STATUS_FAILED))

    def counts(self) -> dict:
        """The model's counts (``count_cells``) of the cells that count (``counted_cells``);
        ``border_cells_excluded``: the cells cut by the border, shown but not counted."""
        cells = counted_cells(self.cells)
        return {**count_cells((c.label, c.cell_type) for c in cells),
                "border_cells_excluded": len(self.cells) - len(cells)}

    def to_dict(self, with_cells: bool = False) -> dict:
        d = {"image": self.image, "status": self.status, "kind": self.kind, "width": self.width,
             "height": self.height, "um_per_px": self.um_per_px, "scale_source": self.scale_source,
             **self.counts(), "seconds": round(self.seconds, 3)}
        if with_cells:
            d["cells"] = [c.to_dict() for c in self.cells]
            d["path"] = self.path
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ImageResult":
        """Inverse of ``to_dict(with_cells=True)``."""
        return cls(path=d["path"], image=d["image"], status=d["status"], kind=d.get("kind", ""),
                   width=d.get("width", 0), height=d.get("height", 0),
                   cells=[Cell.from_dict(c) for c in d.get("cells", [])], seconds=d.get("seconds", 0.0),
                   um_per_px=d.get("um_per_px", 0.0), scale_source=d.get("scale_source", ""))


@dataclass
class CaseSummary:
    """Running totals over a folder; memory does not grow with the number of images."""
    folder: str
    images_total: int = 0
    images_processed: int = 0
    images_failed: int = 0             # not analysed: unreadable files and analysis faults together
    images_unreadable: int = 0         # of those, the files that could not be decoded
    images_without_cells: int = 0
    cells: int = 0
    white_cells: int = 0
    blasts: int = 0
    uncertain: int = 0
    cell_types: dict[str, int] = field(default_factory=dict)
    border_cells_excluded: int = 0     # cells cut by the image border: shown, not counted
    skipped_files: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    cancelled: bool = False

    def add(self, result: ImageResult) -> None:
        if not result.ok:
            self.images_failed += 1
            self.images_unreadable += result.status.startswith(STATUS_UNREADABLE)
            self.failures.append({"image": result.image, "reason": result.status})
            return
        self.images_processed += 1
        c = result.counts()
        self.cells += c["cells"]
        self.white_cells += c["white_cells"]
        self.blasts += c["blasts"]
        self.uncertain += c["uncertain"]
        for cell_type, n in c["cell_types"].items():
            self.cell_types[cell_type] = self.cell_types.get(cell_type, 0) + n
        self.border_cells_excluded += c["border_cells_excluded"]
        if not result.cells:
            self.images_without_cells += 1

    @property
    def blast_percentage(self) -> float | None:
        return round(100.0 * self.blasts / self.white_cells, 2) if self.white_cells else None

    def blast_range(self) -> dict:
        """``blast_percentage_min`` / ``blast_percentage_max`` of the case (``results.blast_range``)."""
        return blast_range(self.blasts, self.uncertain, self.white_cells)

    def to_dict(self) -> dict:
        return {"folder": self.folder, "images_total": self.images_total,
                "images_processed": self.images_processed, "images_failed": self.images_failed,
                "images_unreadable": self.images_unreadable,
                "images_analysis_failed": self.images_failed - self.images_unreadable,
                "images_without_cells": self.images_without_cells, "cells": self.cells,
                "white_cells": self.white_cells, "non_white_cells": self.cells - self.white_cells,
                "blasts": self.blasts, "uncertain": self.uncertain,
                "normal": self.white_cells - self.blasts - self.uncertain,
                "blast_percentage": self.blast_percentage, "blasts_per_100_white_cells": self.blast_percentage,
                **self.blast_range(),
                "cell_types": in_type_order(self.cell_types), "border_cells_excluded": self.border_cells_excluded,
                "white_cells_note": WHITE_CELLS_NOTE, "skipped_files": self.skipped_files,
                "failures": self.failures, "cancelled": self.cancelled}
