"""The case: one folder's images in order, their results and cells, the running summary and the review.

The one object the window fills as results stream in, the report renders (``reports.make_case`` /
``reports.load_case``) and the CLI writes: the counts, the image counts and the J / K review order are computed
here, once. Qt-free.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from training.celltypes import cell_type_of_class

from ..model.classifier import LABEL_BLAST, LABEL_NORMAL, LABEL_UNCERTAIN
from .results import STATUS_FAILED, STATUS_UNREADABLE, CaseSummary, Cell, ImageResult, count_cells, counted_cells
from ..review.session import ReviewSession, final_label, reviewed_counts

if TYPE_CHECKING:
    from ..model.descriptor import ModelDescriptor


class Case:
    """A folder's images (``image_names``, in list order), the results that have arrived (``by_image``), their
    cells (``cells_by_id``), the running ``summary`` and the ``session`` (review). A report's case also carries
    the model, the reviewer's name, the date and notes (``reports.make_case``)."""

    def __init__(self, folder: str | Path = "", session: ReviewSession | None = None, name: str = "",
                 model: "ModelDescriptor | None" = None, reviewer: str = "", created: str = "",
                 notes: list[str] | None = None):
        self.folder = str(folder)
        self.name = name or (Path(folder).name if folder else "")
        self.session = session
        self.model = model
        self.reviewer = reviewer
        self.created = created
        self.notes: list[str] = list(notes or [])
        self.image_names: list[str] = []
        self._listed: set[str] = set()
        self.by_image: dict[str, ImageResult] = {}
        self.cells_by_id: dict[str, Cell] = {}
        self.summary = CaseSummary(folder=self.folder)

    # ---------------------------------------------------------------- filling it

    def set_listing(self, images: list[str], skipped: list[str] | None = None) -> None:
        """Every image of the folder, in the order the list shows them, and the files that are not images."""
        self.image_names = list(images)
        self._listed = set(self.image_names)
        self.summary.images_total = len(self.image_names)
        self.summary.skipped_files = list(skipped or [])

    def add(self, result: ImageResult) -> None:
        """An image's result arrived (analysed now or read back from the store)."""
        if result.image not in self._listed:   # a set: a case of thousands of images is filled in linear time
            self.image_names.append(result.image)
            self._listed.add(result.image)
            self.summary.images_total = max(self.summary.images_total, len(self.image_names))
        self.by_image[result.image] = result
        self.summary.add(result)
        for cell in result.cells:
            self.cells_by_id[cell.cell_id] = cell

    @classmethod
    def of(cls, results: Iterable[ImageResult], **kwargs) -> "Case":
        """A case of finished results, in the order given."""
        case = cls(**kwargs)
        results = list(results)
        case.set_listing([r.image for r in results])
        for result in results:
            case.add(result)
        return case

    # ---------------------------------------------------------------- reading it

    @property
    def results(self) -> list[ImageResult]:
        """The results that have arrived, in list order."""
        return [self.by_image[n] for n in self.image_names if n in self.by_image]

    def result(self, image: str | None) -> ImageResult | None:
        return self.by_image.get(image) if image else None

    def cell(self, cell_id: str | None) -> Cell | None:
        return self.cells_by_id.get(cell_id) if cell_id else None

    def cells(self) -> list[Cell]:
        return [c for r in self.results for c in r.cells]

    def failures(self) -> list[str]:
        """"image: why" of each image that could not be analysed (unreadable, or an analysis fault)."""
        return [f"{f['image']}: {f['reason']}" for f in self.summary.failures]

    def review_of(self, cell):
        return self.session.reviews.get(cell.cell_id) if self.session else None

    def reviewed_label(self, cell_id: str) -> str | None:
        return self.session.reviewed_label(cell_id) if self.session else None

    def cell_types(self) -> tuple[str, ...]:
        """The white-cell types the model can give (its classes, from model.json; else those its cells carry)."""
        names = self.model.class_names if self.model else ()
        if names:
            try:
                return tuple(cell_type_of_class(c) for c in names)
            except ValueError:
                pass
        seen: dict[str, None] = {}
        for cell in self.cells():
            seen.update(dict.fromkeys(cell.type_probabilities))
        return tuple(seen)

    def suggested_counts(self) -> dict:
        """The model's counts over the counted cells (``counted_cells``: cells cut by the border are left out)."""
        everything = self.cells()
        cells = counted_cells(everything)
        return {**count_cells((c.label, c.cell_type) for c in cells),
                "border_cells_excluded": len(everything) - len(cells)}

    def reviewed_counts(self, image: str | None = None) -> dict:
        """Counts after review, of the case or (``image``) of one image."""
        if image is not None:
            result = self.by_image.get(image)
            return reviewed_counts(result.cells, self.session) if result else {}
        return reviewed_counts(self.cells_by_id.values(), self.session)

    def is_reviewed(self) -> bool:
        """Has anyone reviewed a cell of this case? If not, a report is the model's analysis, not a review."""
        return self.reviewed_counts()["reviewed"] > 0

    def image_counts(self) -> dict:
        """Images by what became of them: ``analysed``, ``unreadable`` (the file could not be decoded: the
        image's fault), ``failed`` (the analysis failed on a readable image: a fault in leukviewer), and the
        analysed ones ``without_cells``."""
        results = self.results
        unreadable = sum(1 for r in results if r.status.startswith(STATUS_UNREADABLE))
        failed = sum(1 for r in results if r.status.startswith(STATUS_FAILED))
        ok = [r for r in results if r.ok]
        return {"images": len(results), "analysed": len(ok), "unreadable": unreadable, "failed": failed,
                "without_cells": sum(1 for r in ok if not r.cells)}

    def flagged_cells(self) -> list:
        """Cells the model or the reviewer called ALL or UNCERTAIN: blasts first, then uncertain, then cells
        the reviewer cleared; most probable first within each."""
        order = {LABEL_BLAST: 0, LABEL_UNCERTAIN: 1, LABEL_NORMAL: 2}
        flagged = [c for c in self.cells()
                   if c.label != LABEL_NORMAL or final_label(c, self.session) != LABEL_NORMAL]
        return sorted(flagged, key=lambda c: (order.get(final_label(c, self.session), 3),
                                              -c.blast_probability, c.image, c.cell_id))

    def reviewers(self) -> list[str]:
        if not self.session:
            return []
        counts = Counter(r.reviewer for r in self.session.reviews.values() if r.reviewer)
        return [name for name, _ in counts.most_common()]

    def navigation_order(self, within_image: list[str] | None = None) -> list[str]:
        """The J / K order of cell ids: image by image in list order; within an image in ``within_image``'s order
        (the gallery's: ALL, uncertain, HEM, each by probability), else by cell id."""
        order = [c for c in within_image if c in self.cells_by_id] if within_image else sorted(self.cells_by_id)
        rank = {name: i for i, name in enumerate(self.image_names)}
        position = {cell_id: i for i, cell_id in enumerate(order)}
        return sorted(order, key=lambda c: (rank.get(self.cells_by_id[c].image, len(rank)), position[c]))

    def next_cell(self, current: str | None, current_image: str | None, delta: int,
                  within_image: list[str] | None = None) -> str | None:
        """The cell ``delta`` steps from ``current`` in the review order (wrapping round); without a current cell
        the first (or, backwards, last) cell of ``current_image``, else of the case."""
        order = self.navigation_order(within_image)
        if not order:
            return None
        if current in order:
            return order[(order.index(current) + delta) % len(order)]
        in_image = [c for c in order if self.cells_by_id[c].image == current_image]
        return (in_image or order)[0 if delta > 0 else -1]
