"""CSV output that a spreadsheet can open safely: UTF-8, RFC 4180 quoting, formulas neutralised.

The column sets are the lab's import contract: ``cells.csv`` has one row per cell (with the hematologist's
review where there is one), ``images.csv`` one row per image with its status and counts.
"""
from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

from training.celltypes import BLAST, CELL_TYPES

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# p_blast (the calibrated blast probability) and label (the model's suggestion) keep the names the batch CLI
# first published them under, so a lab's existing import keeps working.
CELL_COLUMNS = ["folder", "image", "cell_id", "x", "y", "width", "height", "centroid_x", "centroid_y", "area",
                "p_blast", "label", "reviewed_label", "final_label", "reviewer", "review_time", "partial",
                "model_name", "model_version", "model_sha256"]

# appended after them: the white-cell type (model, reviewer, after review) and one calibrated probability per model
# class other than blast (p_blast above is P(blast)), named p_<cell type>: see ``cell_columns``.
TYPE_COLUMNS = ["cell_type", "reviewed_cell_type", "final_cell_type"]

IMAGE_COLUMNS = ["folder", "image", "status", "kind", "width", "height", "um_per_px", "scale_source", "white_cells",
                 "blasts", "uncertain",
                 "normal", "blast_percentage", "border_cells_excluded", "reviewed_cells", "changed_cells",
                 "blasts_after_review",
                 "uncertain_after_review", "normal_after_review", "blast_percentage_after_review",
                 "non_white_cells", "non_white_cells_after_review",
                 # the range blasts per 100 white cells can take while UNCERTAIN white cells are undecided (minimum:
                 # every one normal, maximum: every one a blast), as the model gave it and after review
                 "blast_percentage_min", "blast_percentage_max", "blast_percentage_after_review_min",
                 "blast_percentage_after_review_max",
                 # *_after_review mixes the reviewer's labels with the model's suggestions for the cells nobody
                 # reviewed; these are the two parts apart: reviewed cells only (the reviewer's labels) and the
                 # model's suggestions for the cells not reviewed
                 "reviewed_white_cells", "reviewed_blasts", "reviewed_uncertain", "reviewed_normal",
                 "not_reviewed_white_cells", "not_reviewed_blasts", "not_reviewed_uncertain", "not_reviewed_normal"]


def neutralise(value) -> str:
    """A text value a spreadsheet will not run as a formula (prefixed with a quote); numbers stay numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def probability_types(cell_types) -> list[str]:
    """The types that get a p_<type> column: every model class's type but blast (p_blast has it), in the
    vocabulary's order."""
    present = set(cell_types)
    return [t for t in [*CELL_TYPES, *sorted(present - set(CELL_TYPES))] if t in present and t != BLAST]


def cell_columns(cell_types) -> list[str]:
    """The ``cells.csv`` header for a model whose classes are ``cell_types`` (``ModelDescriptor.cell_types``)."""
    return CELL_COLUMNS + TYPE_COLUMNS + [f"p_{t}" for t in probability_types(cell_types)]


def cell_row(cell, folder: str = "", review=None, cell_types=()) -> list[str]:
    """One ``cells.csv`` row (``cell_columns(cell_types)``); ``review`` is the cell's ``CellReview`` or None."""
    from ..review.session import type_after_review

    x, y, w, h = cell.bbox
    reviewed = review.label if review else ""
    values = [folder, cell.image, cell.cell_id, x, y, w, h, cell.centroid[0], cell.centroid[1], cell.area,
              cell.blast_probability, cell.label, reviewed, reviewed or cell.label,
              review.reviewer if review else "", review.time if review else "", cell.partial, cell.model_name,
              cell.model_version, cell.model_sha256,
              cell.cell_type, (review.cell_type or "") if review else "", type_after_review(cell, review)]
    values += [cell.type_probabilities.get(t, "") for t in probability_types(cell_types)]
    return [neutralise(v) for v in values]


def image_row(result, folder: str = "", after_review: dict | None = None) -> list[str]:
    """One ``images.csv`` row (``IMAGE_COLUMNS``); ``after_review`` is ``review.reviewed_counts`` of its cells
    (None: nobody reviewed them)."""
    from ..review.session import reviewed_counts

    d = result.to_dict()
    r = after_review if after_review is not None else reviewed_counts(result.cells, None)
    mine, model = r["by_reviewer"], r["not_reviewed"]
    values = [folder, d["image"], d["status"], d["kind"], d["width"], d["height"], d["um_per_px"] or "",
              d["scale_source"], d["white_cells"], d["blasts"],
              d["uncertain"], d["normal"], d["blast_percentage"], d["border_cells_excluded"], r["reviewed"], r["changed"],
              r["blasts"], r["uncertain"], r["normal"], r["blast_percentage"], d["non_white_cells"],
              r["non_white_cells"], d["blast_percentage_min"], d["blast_percentage_max"],
              r["blast_percentage_min"], r["blast_percentage_max"],
              mine["white_cells"], mine["blasts"], mine["uncertain"], mine["normal"],
              model["white_cells"], model["blasts"], model["uncertain"], model["normal"]]
    return [neutralise(v) for v in values]


class AtomicCsv:
    """Rows streamed to a hidden temporary file, renamed into place on ``commit()`` (never half-written)."""

    def __init__(self, path: str | Path, header: list[str]):
        self.path = Path(path)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        self._writer.writerow(header)

    @property
    def temporary_path(self) -> Path:
        return Path(self._tmp)

    def write(self, row: list[str]) -> None:
        self._writer.writerow(row)

    def close(self) -> None:
        """Flush to disk without renaming (for callers that place several files together)."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.chmod(self._tmp, 0o644)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        Path(self._tmp).unlink(missing_ok=True)
