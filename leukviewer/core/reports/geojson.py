"""cells.geojson: every cell outline as a QuPath detection (File > Import objects from file).

QuPath's GeoJSON form: a FeatureCollection of Features with a Polygon geometry in full-resolution image pixels
(origin top-left) and ``properties`` holding ``objectType``, ``classification`` {name, color [r, g, b]} and
``measurements`` {name: number}. The classification's name is the label after review (ALL / UNCERTAIN / HEM, as
QuPath projects already use it); its ``cell_type`` member (ignored by readers that do not know it) and the metadata
carry the white-cell type, and the measurements one "P(<type>)" per model class. One file per case; ``properties.image`` says which image a cell belongs to
(QuPath adds every feature of a file to the open image, so filter by image before importing into one).
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from ... import RUO_NOTICE, __version__
from ..labels import label_rgb

_NAMESPACE = uuid.UUID("6f1c8a52-52a4-4b7e-9c1e-0d5c7c1b2a90")


def closed_ring(outline, bbox) -> list[list[float]]:
    """The outline as a closed GeoJSON linear ring (first point repeated at the end, at least 4 positions);
    the bounding box when the outline is degenerate."""
    points = [[float(x), float(y)] for x, y in (outline or [])]
    deduped = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
    if len(deduped) > 1 and deduped[0] == deduped[-1]:
        deduped.pop()
    if len({tuple(p) for p in deduped}) < 3:
        x, y, w, h = (float(v) for v in bbox)
        deduped = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]
    return deduped + [list(deduped[0])]


def cell_feature(cell, folder: str, review, label_after: str) -> dict:
    from ..review.session import type_after_review

    x, y, w, h = cell.bbox
    type_after = type_after_review(cell, review)
    return {
        "type": "Feature",
        "id": str(uuid.uuid5(_NAMESPACE, f"{folder}\n{cell.cell_id}\n{cell.model_sha256}")),
        "geometry": {"type": "Polygon", "coordinates": [closed_ring(cell.outline, cell.bbox)]},
        "properties": {
            "objectType": "detection",
            "name": cell.cell_id,
            "image": cell.image,
            "classification": {"name": label_after, "color": label_rgb(label_after),
                               "cell_type": type_after},
            "isLocked": False,
            "measurements": {
                "Blast probability": float(cell.blast_probability),
                "Area px^2": float(cell.area),
                "Centroid X px": float(cell.centroid[0]),
                "Centroid Y px": float(cell.centroid[1]),
                "Bounding box X px": float(x), "Bounding box Y px": float(y),
                "Bounding box width px": float(w), "Bounding box height px": float(h),
                "Partial (cut by border)": 1.0 if cell.partial else 0.0,
                "Reviewed": 1.0 if review else 0.0,
                **{f"P({t})": float(p) for t, p in cell.type_probabilities.items()},
            },
            "metadata": {
                "suggested_label": cell.label,
                "reviewed_label": review.label if review else "",
                "reviewer": review.reviewer if review else "",
                "review_time": review.time if review else "",
                "suggested_cell_type": cell.cell_type,
                "reviewed_cell_type": (review.cell_type or "") if review else "",
                "cell_type": type_after,
                "model": f"{cell.model_name} {cell.model_version}".strip(),
                "model_sha256": cell.model_sha256,
            },
        },
    }


class GeoJsonWriter:
    """Features streamed into a FeatureCollection file one cell at a time (memory stays flat)."""

    def __init__(self, path: Path, case_name: str, folder: str, created: str, model):
        self._file = open(path, "w", encoding="utf-8")
        self._first = True
        self.folder = folder
        # foreign members (RFC 7946 section 6.1): readers that do not know them ignore them
        header = {"notice": RUO_NOTICE, "software": f"leukviewer {__version__}", "case": case_name,
                  "folder": folder, "created": created,
                  "model": {"name": model.name, "version": model.version, "sha256": model.sha256}}
        self._file.write('{"type":"FeatureCollection","leukviewer":'
                         + json.dumps(header, ensure_ascii=False, separators=(",", ":")) + ',"features":[\n')

    def add(self, cell, review=None, label_after: str | None = None) -> None:
        feature = cell_feature(cell, self.folder, review, label_after or (review.label if review else cell.label))
        self._file.write(("" if self._first else ",\n") + json.dumps(feature, ensure_ascii=False,
                                                                     separators=(",", ":")))
        self._first = False

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.write("\n]}\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()


def write_geojson(case, path: Path) -> None:
    """All cells of the case into one FeatureCollection at ``path`` (UTF-8)."""
    writer = GeoJsonWriter(path, case.name, case.folder, case.created, case.model)
    try:
        for result in case.results:
            for cell in result.cells:
                writer.add(cell, case.review_of(cell))
    finally:
        writer.close()
