"""``leukviewer batch FOLDER --out DIR [--pdf] [--csv] [--geojson]``: analyse a folder headless and write the
report files (cells.csv and images.csv by default; report.pdf, cells.geojson on request) and summary.json, with a
terminal progress bar. CSV and GeoJSON rows are streamed, so memory stays flat however many images there are;
all files appear together at the end, or none."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from . import RUO_NOTICE, __version__

OUTPUTS = ("cells.csv", "images.csv", "summary.json")


def outputs_for(formats: set[str]) -> list[str]:
    from .core.reports import output_names

    return output_names(formats) + ["summary.json"]


def add_arguments(p) -> None:
    p.add_argument("folder", help="folder of smear fields or single-cell crops (BMP, PNG, JPEG, TIFF)")
    p.add_argument("--out", required=True, help="output folder for the report files and summary.json")
    p.add_argument("--csv", action="store_true", help="write cells.csv and images.csv (the default when no format "
                                                       "is named)")
    p.add_argument("--pdf", action="store_true", help="write report.pdf (the model's suggestions, not yet reviewed)")
    p.add_argument("--geojson", action="store_true", help="write cells.geojson (cell outlines for QuPath)")
    p.add_argument("--model", help="model folder (default: the bundled model)")
    p.add_argument("--engine", choices=["auto", "tf", "litert"], default="auto",
                   help="inference engine: litert (LiteRT/XNNPACK, converted once and cached; ~1.6-2x faster on "
                        "a CPU), tf (TensorFlow; a GPU when it sees one), auto (litert when already converted)")
    p.add_argument("--recursive", action="store_true", help="also analyse images in sub-folders")
    p.add_argument("--um-per-px", type=float, metavar="UM",
                   help="micrometres of slide per image pixel of your microscope and camera (default: from each "
                        "image's metadata, else its red cells, else the C-NMC calibration for crops on black)")
    p.add_argument("--kind", choices=["auto", "single_cell", "smear_field"], default="auto",
                   help="image kind: detected per image (auto), or forced")
    p.add_argument("--overwrite", action="store_true", help="replace outputs already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> int:
    from tqdm import tqdm

    from training.modelfolder import ModelFolderError, atomic_write_text

    from .core.classifier import CellClassifier, bundled_model_dir
    from .core.pipeline import analyze_folder
    from .core.report_geojson import GeoJsonWriter
    from .core.reports import ExportError, StagedOutputs, describe_os_error, make_case
    from .core.results import CaseSummary, ImageResult, blast_percentage_text
    from .core.tables import IMAGE_COLUMNS, AtomicCsv, cell_columns, cell_row, image_row

    folder, out = Path(args.folder), Path(args.out)
    formats = {f for f in ("csv", "pdf", "geojson") if getattr(args, f, False)} or {"csv"}
    names = outputs_for(formats)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: {describe_os_error(e, out)}", file=sys.stderr)
        return 2
    existing = [n for n in names if (out / n).exists()]
    if existing and not args.overwrite:
        print(f"error: {out} already holds {', '.join(existing)}; use --overwrite or another --out", file=sys.stderr)
        return 2
    try:
        classifier = CellClassifier(args.model, backend={"litert": "tflite"}.get(args.engine, args.engine))
    except ModelFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = classifier.info
    model_dir = Path(args.model) if args.model else bundled_model_dir()
    folder_text = str(folder.resolve())
    created = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")

    summary = CaseSummary(folder=folder_text)
    outputs = StagedOutputs(out, names, overwrite=True)   # existing files were refused above unless --overwrite
    cells_csv = images_csv = geojson = None
    try:
        if "csv" in formats:
            cells_csv = AtomicCsv(out / "cells.csv", cell_columns(info.cell_types))
            outputs.adopt("cells.csv", cells_csv.temporary_path)
            images_csv = AtomicCsv(out / "images.csv", IMAGE_COLUMNS)
            outputs.adopt("images.csv", images_csv.temporary_path)
        if "geojson" in formats:
            geojson = GeoJsonWriter(outputs.temporary("cells.geojson"), folder.resolve().name, folder_text, created,
                                    info)
    except OSError as e:
        for w in (cells_csv, images_csv, geojson):
            if w is not None:
                w.abort()
        outputs.discard()
        print(f"error: {describe_os_error(e, out)}", file=sys.stderr)
        return 2

    bar = None
    per_image = []
    light_results = []   # for the PDF: cells without outlines, so memory stays small
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
                                     on_progress=progress, um_per_px=args.um_per_px):
            for cell in result.cells:
                if cells_csv:
                    cells_csv.write(cell_row(cell, folder_text, None, info.cell_types))
                if geojson:
                    geojson.add(cell)
            if images_csv:
                images_csv.write(image_row(result, folder_text))
            per_image.append(result.to_dict())
            if "pdf" in formats:
                light = ImageResult(result.path, result.image, result.status, result.kind, result.width,
                                    result.height, [replace(c, outline=[]) for c in result.cells], result.seconds)
                light_results.append(light)
        for w in (cells_csv, images_csv, geojson):
            if w is not None:
                w.close()
        if bar is not None:
            bar.close()
            bar = None
        if "pdf" in formats:
            from .core.report_pdf import write_pdf

            if not args.quiet:
                print("writing report.pdf", file=sys.stderr)
            case = make_case(light_results, None, info, folder=folder.resolve(), model_dir=model_dir)
            write_pdf(case, outputs.temporary("report.pdf"))
        elapsed = time.perf_counter() - started
        doc = {
            "notice": RUO_NOTICE,
            "software": f"leukviewer {__version__}",
            "created": created,
            "model": {"name": info.name, "version": info.version, "sha256": info.sha256,
                      "threshold": info.threshold, "uncertainty_band": list(info.uncertainty_band),
                      "class_names": list(info.class_names), "cell_types": list(info.cell_types)},
            "case": summary.to_dict(),
            "seconds": round(elapsed, 2),
            "outputs": names,
            "images": per_image,
        }
        atomic_write_text(outputs.temporary("summary.json"), json.dumps(doc, indent=2, ensure_ascii=False))
        written = outputs.commit(overwrite=True)
    except (OSError, ExportError) as e:
        for w in (cells_csv, images_csv, geojson):
            if w is not None:
                w.abort()
        outputs.discard()
        reason = describe_os_error(e, out) if isinstance(e, OSError) else str(e)
        print(f"error: writing the results failed, nothing was written: {reason}", file=sys.stderr)
        return 2
    except BaseException:
        for w in (cells_csv, images_csv, geojson):
            if w is not None:
                w.abort()
        outputs.discard()
        raise
    finally:
        if bar is not None:
            bar.close()
    s = summary
    print(f"{s.images_processed} of {s.images_total} images analysed ({s.images_failed} unreadable, "
          f"{len(s.skipped_files)} non-image files skipped): {s.white_cells} white cells, {s.blasts} blasts, "
          f"{s.uncertain} uncertain" + (f", blasts per 100 white cells {blast_percentage_text(s.to_dict())}"
                                        if s.blast_percentage is not None else "")
          + (f"; {s.cells - s.white_cells} detected objects are not white cells (type non_wbc) and are not counted"
             if s.cells > s.white_cells else ""))
    if s.cell_types:
        print("cell types: " + ", ".join(f"{t} {n}" for t, n in summary.to_dict()["cell_types"].items()))
    for failure in s.failures:
        print(f"  {failure['image']}: {failure['reason']}")
    print(f"results in {out}: {', '.join(p.name for p in written)}. {RUO_NOTICE}")
    return 0 if s.images_processed > 0 else 1
