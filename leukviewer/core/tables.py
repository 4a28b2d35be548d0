"""CSV output that a spreadsheet can open safely: UTF-8, RFC 4180 quoting, formulas neutralised."""
from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

CELL_COLUMNS = ["image", "cell_id", "x", "y", "width", "height", "centroid_x", "centroid_y", "area", "p_blast",
                "label", "partial", "model_name", "model_version", "model_sha256"]


def neutralise(value) -> str:
    """A text value a spreadsheet will not run as a formula (prefixed with a quote); numbers stay numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def cell_row(cell) -> list[str]:
    x, y, w, h = cell.bbox
    values = [cell.image, cell.cell_id, x, y, w, h, cell.centroid[0], cell.centroid[1], cell.area,
              cell.blast_probability, cell.label, cell.partial, cell.model_name, cell.model_version,
              cell.model_sha256]
    return [neutralise(v) for v in values]


class AtomicCsv:
    """Rows streamed to a hidden temporary file, renamed into place on ``commit()`` (never half-written)."""

    def __init__(self, path: str | Path, header: list[str]):
        self.path = Path(path)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".part", dir=self.path.parent)
        self._file = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        self._writer.writerow(header)

    def write(self, row: list[str]) -> None:
        self._writer.writerow(row)

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.chmod(self._tmp, 0o644)
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        Path(self._tmp).unlink(missing_ok=True)
