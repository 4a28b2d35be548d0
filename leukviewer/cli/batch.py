"""``leukviewer batch FOLDER --out DIR [--pdf] [--csv] [--geojson]``: analyse a folder headless and write the
report files (cells.csv and images.csv by default; report.pdf, cells.geojson on request) and summary.json, with a
terminal progress bar. CSV and GeoJSON rows are streamed, so memory stays flat however many images there are;
all files appear together at the end, or none.

``--out`` is checked writable before the model is even loaded. Ctrl+C (SIGINT) stops after the images in flight:
the images done so far are written, summary.json says ``"partial": true``, and ``--resume`` (same folder, same
--out) continues with the images not yet done. A second Ctrl+C stops at once without writing anything."""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from .. import RUO_NOTICE, __version__

RESUME_FILE = "partial-results.jsonl"   # every image done so far, cells and outlines included (for --resume)


def outputs_for(formats: set[str]) -> list[str]:
    from ..core.reports.export import output_names

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
                        "a CPU), tf (TensorFlow; a GPU when it sees one), auto (litert when a conversion exists: "
                        "the installer ships one for the bundled model; else tf for this run)")
    p.add_argument("--recursive", action="store_true", help="also analyse images in sub-folders")
    p.add_argument("--um-per-px", type=float, metavar="UM",
                   help="micrometres of slide per image pixel of your microscope and camera (default: from each "
                        "image's metadata, else its red cells, else the C-NMC calibration for crops on black)")
    p.add_argument("--kind", choices=["auto", "single_cell", "smear_field"], default="auto",
                   help="image kind: detected per image (auto), or forced")
    p.add_argument("--overwrite", action="store_true", help="replace outputs already in --out")
    p.add_argument("--resume", action="store_true", help="continue a run stopped with Ctrl+C (same folder and --out): "
                                                         "the images already done are not analysed again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from .archive import add_arguments as add_archive_arguments   # --archive, --cluster (Ray only when asked)

    add_archive_arguments(p)


# ---------------------------------------------------------------- --out, Ctrl+C and --resume (kept apart from
# the report columns so the two evolve separately)

def check_writable(out: Path) -> str | None:
    """None when report files can be created in ``out`` (made if missing), else the reason in words."""
    from ..core.reports.export import describe_os_error

    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".leukviewer-probe-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        return describe_os_error(e, out)
    return None


class StopOnInterrupt:
    """The first Ctrl+C asks the analysis to stop after the images in flight; a second one interrupts at once."""

    def __init__(self, quiet: bool = False):
        self.requested = False
        self.quiet = quiet
        self._previous = None

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if not self.quiet:
            print("\nstopping after the images in flight (Ctrl+C again to stop at once, writing nothing)...",
                  file=sys.stderr, flush=True)

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:   # not the main thread (a test calling run() from a worker): no handler
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class ResumeLog:
    """Every finished image (with its cells) appended to a hidden file in --out while the run goes on; kept as
    ``partial-results.jsonl`` when the run stops early, removed when it completes."""

    def __init__(self, out: Path):
        self.final = out / RESUME_FILE
        fd, tmp = tempfile.mkstemp(prefix=f".{RESUME_FILE}.", suffix=".part", dir=out)
        self.tmp = Path(tmp)
        self._file = os.fdopen(fd, "w", encoding="utf-8")

    def add(self, result) -> None:
        self._file.write(json.dumps(result.to_dict(with_cells=True), ensure_ascii=False) + "\n")
        self._file.flush()

    def keep(self) -> None:
        """The run stopped early: keep what was done for --resume."""
        from training.modelfolder import fsync_dir

        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.final)
        fsync_dir(self.final.parent)

    def discard(self) -> None:
        """The run completed (or failed): nothing to resume from."""
        if not self._file.closed:
            self._file.close()
        self.tmp.unlink(missing_ok=True)


def stopped_run(out: Path, folder_text: str) -> tuple[dict, str | None]:
    """summary.json of the stopped run --resume continues, or the reason there is none (no model needed)."""
    try:
        doc = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return {}, f"nothing to resume in {out}: summary.json cannot be read ({e})"
    if not isinstance(doc, dict) or not doc.get("partial"):
        return {}, f"nothing to resume in {out}: its summary.json is of a complete run"
    if doc.get("case", {}).get("folder") != folder_text:
        return {}, f"{out} holds a stopped run of another folder ({doc.get('case', {}).get('folder')})"
    if not (out / RESUME_FILE).is_file():
        return {}, f"nothing to resume in {out}: {RESUME_FILE} is missing"
    return doc, None


def load_resume(out: Path, doc: dict, info) -> tuple[list, str | None]:
    """The images a stopped run finished (ImageResults with cells), or the reason --resume cannot continue."""
    from ..core.analysis.results import ImageResult

    log = out / RESUME_FILE
    model = doc.get("model", {})
    if model.get("sha256") != info.sha256 or model.get("manifest_sha256") != info.manifest_sha256:
        return [], (f"{out} holds a stopped run made with another model ({model.get('name')} "
                    f"{model.get('version')}, {str(model.get('sha256'))[:12]}); rerun without --resume")
    results, seen = [], set()
    try:
        with open(log, encoding="utf-8") as f:
            for line in f:
                try:
                    result = ImageResult.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    break   # a line cut off by a crash: the images after it are analysed again
                if result.image not in seen:
                    seen.add(result.image)
                    results.append(result)
    except OSError as e:
        return [], f"nothing to resume in {out}: {RESUME_FILE} cannot be read ({e})"
    return results, None


def partial_fields(partial: bool, summary, out: Path) -> dict:
    """summary.json's record of a run stopped early (or of a complete one)."""
    if not partial:
        return {"partial": False}
    return {"partial": True, "images_done": summary.images_processed + summary.images_failed,
            "resume": f"rerun the same command with --resume: the images in {RESUME_FILE} are not analysed again"}


#: Images whose results may wait for their cells' batch: fields of one or two white cells fill whole batches
#: instead of padded ones (the window shows each image at once instead).
PENDING_IMAGES = 64


def reader_threads() -> int:
    """Images read, localised and prepared at once: one per core (decoding, OpenCV and numpy release the GIL)."""
    from ..core.model.engine import cpu_threads

    return cpu_threads()


def analyse_remaining(folder: Path, classifier, args, summary, done: list, progress, should_stop):
    """The results of a run: those ``done`` by a stopped run first (not analysed again), then the other images."""
    from ..core.analysis.imageio import list_images
    from ..core.analysis.pipeline import analyze_images, image_name

    images, skipped = list_images(folder, recursive=args.recursive)
    summary.images_total = len(images)
    summary.skipped_files = [image_name(p, folder) for p in skipped]
    names = {image_name(p, folder) for p in images}
    done = [r for r in done if r.image in names]
    for result in done:
        summary.add(result)
        yield result
    finished = {r.image for r in done}
    todo = [p for p in images if image_name(p, folder) not in finished]
    offset = len(done)
    for result in analyze_images(todo, folder, classifier, args.kind,
                                 (lambda n, total, r: progress(offset + n, offset + total, r)) if progress else None,
                                 should_stop, max_pending_images=PENDING_IMAGES,
                                 um_per_px=getattr(args, "um_per_px", None), readers=reader_threads()):
        summary.add(result)
        yield result
    if summary.images_processed + summary.images_failed < summary.images_total:
        summary.cancelled = True


def engine_note(classifier, requested: str) -> str | None:
    """One line when ``auto`` runs on TensorFlow only because the model has no LiteRT conversion yet."""
    if requested != "auto" or classifier.engine.backend != "tf" or classifier.device.startswith("GPU"):
        return None
    return ("note: this model has no LiteRT conversion yet, so this run uses TensorFlow (slower on a CPU); "
            "`leukviewer --prepare-engine` converts it once (about a minute)")


def run(args) -> int:
    if getattr(args, "archive", False) or getattr(args, "cluster", None):
        from .archive import run_archive   # a folder of cases, locally or on a Ray cluster

        return run_archive(args)
    try:
        return _run(args)
    except KeyboardInterrupt:   # before the analysis began, or a second Ctrl+C: stopped at once
        print(f"stopped; nothing was written to {args.out}", file=sys.stderr)
        return 130


def _run(args, classifier=None) -> int:
    """One case. ``classifier``: a model already loaded (archive mode keeps one per worker), else --model's."""
    from tqdm import tqdm

    from training.modelfolder import ModelFolderError, atomic_write_text

    from ..core.model.active import resolve_model
    from ..core.model.classifier import CellClassifier
    from ..core.reports.geojson import GeoJsonWriter
    from ..core.reports.export import ExportError, StagedOutputs, describe_os_error, make_case
    from ..core.analysis.results import CaseSummary, ImageResult, blast_percentage_text
    from ..core.reports.tables import IMAGE_COLUMNS, AtomicCsv, cell_columns, cell_row, image_row

    folder, out = Path(args.folder), Path(args.out)
    formats = {f for f in ("csv", "pdf", "geojson") if getattr(args, f, False)} or {"csv"}
    names = outputs_for(formats)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    problem = check_writable(out)   # before the model loads or any image is analysed
    if problem:
        print(f"error: {problem}; nothing was analysed", file=sys.stderr)
        return 2
    resume = getattr(args, "resume", False)
    if resume:
        stopped, problem = stopped_run(out, str(folder.resolve()))
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    existing = [n for n in names if (out / n).exists()]
    if existing and not (args.overwrite or resume):
        hint = " (or --resume to continue the run stopped there)" if (out / RESUME_FILE).is_file() else ""
        print(f"error: {out} already holds {', '.join(existing)}; use --overwrite or another --out{hint}",
              file=sys.stderr)
        return 2
    try:
        if classifier is None:
            resolved = resolve_model(args.model)
            if resolved.note:
                print(f"warning: {resolved.note}", file=sys.stderr)
            classifier = CellClassifier(resolved.folder,
                                        backend={"litert": "tflite"}.get(args.engine, args.engine))
    except ModelFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = classifier.info
    note = engine_note(classifier, args.engine)
    if note:   # even with --quiet: it explains a run's speed
        print(note, file=sys.stderr)
    if classifier.integrity_warning:
        print(f"warning: {classifier.integrity_warning}", file=sys.stderr)
    model_dir = Path(info.folder)
    folder_text = str(folder.resolve())
    created = datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")
    done = []
    if resume:
        done, problem = load_resume(out, stopped, info)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        if not args.quiet:
            print(f"resuming: {len(done)} images already done", file=sys.stderr)

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
        bar.set_postfix(cells=summary.white_cells + result.counts()["white_cells"], blasts=summary.blasts)

    def _write_result(result):
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
                                result.height, [replace(c, outline=[]) for c in result.cells], result.seconds,
                                um_per_px=result.um_per_px, scale_source=result.scale_source)
            light_results.append(light)

    stop = StopOnInterrupt(args.quiet)
    resume_log = None
    try:
        resume_log = ResumeLog(out)
        with stop:
            results = analyse_remaining(folder, classifier, args, summary, done, progress, stop)
            for result in results:
                resume_log.add(result)
                _write_result(result)
        if stop.requested:
            resume_log.keep()
        else:
            resume_log.discard()
            (out / RESUME_FILE).unlink(missing_ok=True)
        resume_log = None
        partial = stop.requested
        if partial and "pdf" in formats:   # no PDF of a part of a case
            names = [n for n in names if n != "report.pdf"]
            outputs.temporaries.pop("report.pdf", None)
        for w in (cells_csv, images_csv, geojson):
            if w is not None:
                w.close()
        if bar is not None:
            bar.close()
            bar = None
        if "pdf" in formats and not partial:
            from ..core.reports.pdf import write_pdf

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
                      "manifest_sha256": info.manifest_sha256,
                      "threshold": info.threshold, "uncertainty_band": list(info.uncertainty_band),
                      "class_names": list(info.class_names), "cell_types": list(info.cell_types)},
            "case": summary.to_dict(),
            "seconds": round(elapsed, 2),
            "outputs": names,
            "images": per_image,
        }
        doc.update(partial_fields(partial, summary, out))
        atomic_write_text(outputs.temporary("summary.json"), json.dumps(doc, indent=2, ensure_ascii=False))
        written = outputs.commit(overwrite=True)
    except BaseException as e:
        for w in (cells_csv, images_csv, geojson):   # nothing half-written is left behind
            if w is not None:
                w.abort()
        outputs.discard()
        if resume_log is not None:
            resume_log.discard()
        if not isinstance(e, (OSError, ExportError)):
            raise
        reason = describe_os_error(e, out) if isinstance(e, OSError) else str(e)
        print(f"error: writing the results failed, nothing was written: {reason}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    s = summary
    if partial:
        print(f"stopped after {s.images_processed + s.images_failed} of {s.images_total} images; partial results in "
              f"{out}: {', '.join(p.name for p in written)} (rerun with --resume to continue). {RUO_NOTICE}")
        return 130
    failed = s.images_failed - s.images_unreadable
    print(f"{s.images_processed} of {s.images_total} images analysed ({s.images_unreadable} unreadable, "
          + (f"{failed} failed in the analysis (a fault in leukviewer), " if failed else "") +
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
