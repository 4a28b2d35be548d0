"""Analysis results saved beside the review, so a reopened case (or ``leukviewer report``) needs no re-run.

One JSON file per image under ``<review dir>/results/<model hash>/``; an entry is used only if the image file
still has the same size and modification time and the model is the same one.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from .results import ImageResult
from ..atomic import atomic_write_json


class ResultsStore:
    """Results are written under ``directory``; read from there, then from the ``read_also`` review directories
    (``paths.review_dirs``: results stored beside a case that has since become read-only)."""

    def __init__(self, directory: Path, model_sha256: str, read_also: Iterable[Path] = ()):
        self.directory = Path(directory) / "results" / model_sha256[:16]
        self.model_sha256 = model_sha256
        self._also = [d for d in (Path(r) / "results" / model_sha256[:16] for r in read_also) if d != self.directory]

    def _file(self, image: str, directory: Path | None = None) -> Path:
        return (directory or self.directory) / (hashlib.sha1(image.encode("utf-8")).hexdigest()[:20] + ".json")

    @staticmethod
    def _stamp(path: Path) -> list:
        st = Path(path).stat()
        return [st.st_size, st.st_mtime_ns]

    def get(self, image_path: Path, image: str) -> ImageResult | None:
        for directory in [self.directory, *self._also]:
            f = self._file(image, directory)
            if f.is_file():
                result = self._read(f, image_path)
                if result is not None:
                    return result
        return None

    def _read(self, f: Path, image_path: Path) -> ImageResult | None:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
            if data["stamp"] != self._stamp(image_path) or data["model_sha256"] != self.model_sha256:
                return None
            return ImageResult.from_dict(data["result"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, result: ImageResult) -> None:
        try:
            stamp = self._stamp(Path(result.path))
        except OSError:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self._file(result.image), {"stamp": stamp, "model_sha256": self.model_sha256,
                                                     "result": result.to_dict(with_cells=True)})

    def all(self) -> list[ImageResult]:
        out: dict[str, ImageResult] = {}
        for directory in [self.directory, *self._also]:
            for f in sorted(directory.glob("*.json")):
                if f.name in out:
                    continue
                try:
                    out[f.name] = ImageResult.from_dict(json.loads(f.read_text(encoding="utf-8"))["result"])
                except (OSError, ValueError, KeyError, TypeError):
                    continue
        return sorted(out.values(), key=lambda r: r.image)
