"""``leukviewer batch FOLDER --out DIR``: analyse a folder headless and write cells.csv, images.csv and
summary.json, with a terminal progress bar."""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from . import RUO_NOTICE, __version__

OUTPUTS = ("cells.csv", "images.csv", "summary.json")


def add_arguments(p) -> None:
    p.add_argument("folder", help="folder of smear fields or single-cell crops (BMP, PNG, JPEG, TIFF)")
    p.add_argument("--out", required=True, help="output folder for cells.csv, images.csv and summary.json")
    p.add_argument("--model", help="model folder (default: the bundled model)")
    p.add_argument("--recursive", action="store_true", help="also analyse images in sub-folders")
    p.add_argument("--kind", choices=["auto", "single_cell", "smear_field"], default="auto",
                   help="image kind: detected per image (auto), or forced")
    p.add_argument("--overwrite", action="store_true", help="replace outputs already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from tqdm import tqdm

    from training.modelfolder import ModelFolderError, atomic_write_text

    from .core.classifier import CellClassifier
    from .core.pipeline import analyze_folder
    from .core.results import CaseSummary
    from .core.tables import CELL_COLUMNS, AtomicCsv, cell_row, neutralise

    folder, out = Path(args.folder), Path(args.out)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: cannot create {out}: {e.strerror}", file=sys.stderr)
        return 2
    existing = [n for n in OUTPUTS if (out / n).exists()]
    if existing and not args.overwrite:
        print(f"error: {out} already holds {', '.join(existing)}; use --overwrite or another --out", file=sys.stderr)
        return 2
    try:
        classifier = CellClassifier(args.model)
    except ModelFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    summary = CaseSummary(folder=str(folder.resolve()))
    try:
        cells_csv = AtomicCsv(out / "cells.csv", CELL_COLUMNS)
        images_csv = AtomicCsv(out / "images.csv", ["image", "status", "kind", "width", "height", "white_cells",
                                                     "blasts", "uncertain", "normal", "blast_percentage"])
    except OSError as e:
        print(f"error: cannot write into {out}: {e.strerror}", file=sys.stderr)
        return 2

    bar = None
    per_image = []
    started = time.perf_counter()

    def progress(done, total, result):
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            bar = tqdm(total=total, unit="image", file=sys.stderr)
        bar.update(1)
        bar.set_postfix(cells=summary.white_cells + len(result.cells), blasts=summary.blasts)

    try:
        for result in analyze_folder(folder, classifier, recursive=args.recursive, kind=args.kind, summary=summary,
                                     on_progress=progress):
            for cell in result.cells:
                cells_csv.write(cell_row(cell))
            d = result.to_dict()
            images_csv.write([neutralise(d[k]) for k in ("image", "status", "kind", "width", "height",
                                                         "white_cells", "blasts", "uncertain", "normal",
                                                         "blast_percentage")])
            per_image.append(d)
        cells_csv.commit()
        images_csv.commit()
        elapsed = time.perf_counter() - started
        doc = {
            "notice": RUO_NOTICE,
            "software": f"leukviewer {__version__}",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": {"name": classifier.info.name, "version": classifier.info.version,
                      "sha256": classifier.info.sha256, "threshold": classifier.info.threshold,
                      "uncertainty_band": list(classifier.info.uncertainty_band)},
            "case": summary.to_dict(),
            "seconds": round(elapsed, 2),
            "images": per_image,
        }
        atomic_write_text(out / "summary.json", json.dumps(doc, indent=2))
    except OSError as e:
        cells_csv.abort()
        images_csv.abort()
        print(f"error: writing the results failed: {e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    s = summary
    print(f"{s.images_processed} of {s.images_total} images analysed ({s.images_failed} unreadable, "
          f"{len(s.skipped_files)} non-image files skipped): {s.white_cells} white cells, {s.blasts} blasts, "
          f"{s.uncertain} uncertain" + (f", blasts {s.blast_percentage:.1f}%" if s.blast_percentage is not None
                                        else ""))
    for failure in s.failures:
        print(f"  {failure['image']}: {failure['reason']}")
    print(f"results in {out}. {RUO_NOTICE}")
    return 0 if s.images_processed > 0 else 1
