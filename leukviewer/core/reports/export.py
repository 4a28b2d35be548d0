"""The case report: cells.csv and images.csv for the lab, report.pdf for the hematologist's signature and
cells.geojson for QuPath, all from one case (results + review state + model description).

``export_case`` is what the GUI's worker and the CLI call. It reports progress through a plain callback,
stops cooperatively between steps, never overwrites an existing file unless asked (it picks a new name set
instead), and writes every file to a hidden temporary file in the target folder first: a failed or cancelled
export (no permission, disk full) leaves nothing behind and raises ``ExportError`` saying why.

Qt-free; reportlab and matplotlib are imported only when a PDF is made.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

from ... import RUO_NOTICE
from ..model.classifier import LABEL_NORMAL
from ..model.descriptor import ModelDescriptor

from ..analysis.case import Case  # noqa: F401 (re-exported: the one case, core/analysis/case.py)
from ..analysis.results import ImageResult
from .method import FALLBACK_LIMITATIONS, FALLBACK_METHOD, method_and_limitations  # noqa: F401 (re-exported)
from ..review.session import ReviewSession, final_label, reviewed_counts

FORMATS = ("pdf", "csv", "geojson")
OUTPUT_FILES = {"pdf": ("report.pdf",), "csv": ("cells.csv", "images.csv"), "geojson": ("cells.geojson",)}
MAX_GALLERY = 60

#: (done, total, what is being done) — the same shape as the analysis progress, for one progress bar.
ExportProgress = Callable[[int, int, str], None]

class ExportError(Exception):
    """An export that could not be completed; the message says why. Nothing was left behind."""


class ExportCancelled(ExportError):
    """The export was stopped through ``should_stop``; nothing was left behind."""


# ---------------------------------------------------------------------------------------------------- the case


def make_case(results: Iterable[ImageResult], session: ReviewSession | None, model_info,
              folder: str | Path | None = None, reviewer: str | None = None, case_name: str | None = None,
              model_dir: str | Path | None = None) -> Case:
    """The case as it is now: a snapshot of the review, so labels given while a report is written (the reviewer
    keeps working) never mix into it."""
    results = sorted(results, key=lambda r: (r.image.lower(), r.image))
    session = session.snapshot() if session is not None else None
    if folder is None:
        if session is not None:
            folder = session.folder
        elif results:
            p = Path(results[0].path)
            folder = p.parents[len(Path(results[0].image).parts) - 1] if Path(results[0].image).parts else p.parent
        else:
            folder = Path.cwd()
    folder = Path(folder)
    model = ModelDescriptor.of(model_info, model_dir)
    case = Case.of(results, folder=str(folder), session=session, name=case_name or folder.name or str(folder),
                   model=model, created=datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"))
    case.reviewer = reviewer if reviewer is not None else ", ".join(case.reviewers())
    if session is not None and session.saved_model.get("sha256") and model.sha256 and \
            session.saved_model["sha256"] != model.sha256:
        case.notes.append(f"The review was made with model {session.saved_model.get('name', '?')} "
                          f"({session.saved_model['sha256'][:12]}); this report uses {model.name} "
                          f"({model.short_hash}). Reviewed labels are matched by cell id.")
    stale = {c.model_sha256 for c in case.cells()} - {model.sha256}
    if stale and model.sha256:
        case.notes.append("Some cells were classified by another model (" + ", ".join(s[:12] for s in sorted(stale))
                          + "); see model_sha256 in cells.csv.")
    return case


# ---------------------------------------------------------------------------------------------------- writing


def describe_os_error(e: OSError, where: Path) -> str:
    """An OSError in words a user can act on."""
    from ..paths import os_error_reason

    reason = os_error_reason(e)
    return f"cannot write the report into {where}: {reason}"


class StagedOutputs:
    """Temporary files in the target folder, renamed into their final names together at the end (a failure
    removes them all). Without ``overwrite`` an existing name set is left alone and a new one chosen."""

    def __init__(self, out_dir: Path, names: list[str], overwrite: bool):
        self.out_dir = out_dir
        self.temporaries: dict[str, Path] = {}
        self.finals = self._choose(names, overwrite)

    def _choose(self, names: list[str], overwrite: bool) -> dict[str, Path]:
        if overwrite or not any((self.out_dir / n).exists() for n in names):
            return {n: self.out_dir / n for n in names}
        for k in range(2, 10_000):  # a new name set: report-2.pdf, cells-2.csv, ... (one number for the set)
            candidate = {n: self.out_dir / f"{Path(n).stem}-{k}{Path(n).suffix}" for n in names}
            if not any(p.exists() for p in candidate.values()):
                return candidate
        raise ExportError(f"{self.out_dir} already holds too many reports; choose another folder")

    def temporary(self, name: str) -> Path:
        """A new empty hidden file in the target folder that becomes ``name`` on ``commit``."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.finals[name].name}.", suffix=".part", dir=self.out_dir)
        os.close(fd)
        self.temporaries[name] = Path(tmp)
        return Path(tmp)

    def adopt(self, name: str, tmp: Path) -> None:
        """Take over a temporary file made elsewhere (e.g. ``AtomicCsv.temporary_path``)."""
        self.temporaries[name] = Path(tmp)

    def commit(self, overwrite: bool) -> list[Path]:
        placed: list[Path] = []
        try:
            for name, tmp in self.temporaries.items():
                final = self.finals[name]
                os.chmod(tmp, 0o644)
                if not overwrite and final.exists():
                    raise ExportError(f"{final} appeared while exporting; nothing was overwritten")
                os.replace(tmp, final)
                placed.append(final)
        except BaseException:
            if not overwrite:
                for p in placed:
                    p.unlink(missing_ok=True)
            self.discard()
            raise
        if placed:
            from training.modelfolder import fsync_dir

            fsync_dir(self.out_dir)
        return placed

    def discard(self) -> None:
        for tmp in self.temporaries.values():
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def output_names(formats: Iterable[str]) -> list[str]:
    formats = set(formats)
    unknown = formats - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown report format(s) {', '.join(sorted(unknown))}; use {', '.join(FORMATS)}")
    return [n for f in FORMATS if f in formats for n in OUTPUT_FILES[f]]


def suggested_report_dir(image_folder: str | Path) -> Path:
    """Where a report of ``image_folder`` goes by default: beside it, never inside it (a report inside the image
    folder mixes with the images and travels with them). ``CASE-report`` next to ``CASE``; under the home
    folder when the parent cannot be written (a read-only share or a mounted card)."""
    folder = Path(image_folder).resolve()
    name = f"{folder.name or 'case'}-report"
    parent = folder.parent
    if parent != folder and os.access(parent, os.W_OK):
        return parent / name
    return Path.home() / "leukviewer-reports" / name


def is_inside(path: str | Path, folder: str | Path) -> bool:
    """Is ``path`` the folder itself or somewhere under it?"""
    path, folder = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return path == folder or folder in path.parents


def review_status(cells, session: ReviewSession | None) -> dict:
    """How far the review of these cells went, as the export dialog and the report's title tell it: flagged
    cells (ALL or UNCERTAIN by the model or the reviewer), how many of those nobody reviewed, reviewed cells."""
    flagged = [c for c in cells if c.label != LABEL_NORMAL or final_label(c, session) != LABEL_NORMAL]
    unreviewed = [c for c in flagged if not (session and session.reviewed_label(c.cell_id))]
    return {"flagged": len(flagged), "flagged_unreviewed": len(unreviewed),
            "reviewed": reviewed_counts(cells, session)["reviewed"]}


def existing_outputs(out_dir: str | Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Files in ``out_dir`` that an export with ``overwrite=True`` would replace (for the GUI's question)."""
    return [Path(out_dir) / n for n in output_names(formats) if (Path(out_dir) / n).exists()]


def write_cells_csv(case: Case, path: Path) -> None:
    import csv

    from .tables import cell_columns, cell_row

    types = case.cell_types()
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(cell_columns(types))
        for result in case.results:
            for cell in result.cells:
                writer.writerow(cell_row(cell, case.folder, case.review_of(cell), types))
        f.flush()
        os.fsync(f.fileno())


def write_images_csv(case: Case, path: Path) -> None:
    import csv

    from .tables import IMAGE_COLUMNS, image_row

    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(IMAGE_COLUMNS)
        for result in case.results:
            writer.writerow(image_row(result, case.folder, reviewed_counts(result.cells, case.session)))
        f.flush()
        os.fsync(f.fileno())


def export_case(results: Iterable[ImageResult], session: ReviewSession | None, model_info, out_dir: str | Path,
                formats: Iterable[str] = FORMATS, reviewer: str | None = None,
                on_progress: ExportProgress | None = None, should_stop: Callable[[], bool] | None = None,
                overwrite: bool = False, folder: str | Path | None = None, model_dir: str | Path | None = None,
                case_name: str | None = None, max_gallery: int = MAX_GALLERY) -> list[Path]:
    """Write the case's report files into ``out_dir`` and return their paths.

    ``formats`` is any of "pdf" (report.pdf), "csv" (cells.csv, images.csv), "geojson" (cells.geojson).
    ``model_info`` is the model's ``ModelDescriptor`` (the classifier's ``info``) or a dict with name, version,
    sha256, threshold and uncertainty_band; ``model_dir`` (optional) supplies the method text (model.json,
    MODEL_CARD.md). ``reviewer`` is the name on the sign-off line (default: the session's reviewers).
    Existing files are replaced only with ``overwrite=True``; otherwise the whole set gets a new name
    (report-2.pdf, cells-2.csv, ...). Raises ``ExportError`` (nothing written) on any failure,
    ``ExportCancelled`` when ``should_stop()`` became true.
    """
    names = output_names(formats)
    if not names:
        raise ValueError("choose at least one report format")
    formats = set(formats)
    out_dir = Path(out_dir)
    case = make_case(results, session, model_info, folder, reviewer, case_name, model_dir)

    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ExportError(f"cannot write the report into {out_dir}: it is a file, not a folder") from None
    except OSError as e:
        raise ExportError(describe_os_error(e, out_dir)) from None
    if not out_dir.is_dir():
        raise ExportError(f"cannot write the report into {out_dir}: it is a file, not a folder")

    flagged = case.flagged_cells() if "pdf" in formats else []
    gallery_images = len({c.image for c in flagged[:max_gallery]})
    total = len(names) + gallery_images
    done = 0

    def step(message: str, advance: int = 1) -> None:
        nonlocal done
        if should_stop and should_stop():
            raise ExportCancelled("the export was cancelled; nothing was written")
        done += advance
        if on_progress:
            on_progress(min(done, total), total, message)

    outputs = None
    try:
        outputs = StagedOutputs(out_dir, names, overwrite)
        step("checking the output folder", 0)
        if "csv" in formats:
            write_cells_csv(case, outputs.temporary("cells.csv"))
            step("cells.csv")
            write_images_csv(case, outputs.temporary("images.csv"))
            step("images.csv")
        if "geojson" in formats:
            from .geojson import write_geojson

            write_geojson(case, outputs.temporary("cells.geojson"))
            step("cells.geojson")
        if "pdf" in formats:
            from .pdf import write_pdf

            write_pdf(case, outputs.temporary("report.pdf"), max_gallery=max_gallery,
                      on_image=lambda image: step(f"thumbnails: {image}"))
            step("report.pdf")
        if should_stop and should_stop():
            raise ExportCancelled("the export was cancelled; nothing was written")
        return outputs.commit(overwrite)
    except ExportError:
        if outputs:
            outputs.discard()
        raise
    except OSError as e:
        if outputs:
            outputs.discard()
        raise ExportError(describe_os_error(e, out_dir)) from e
    except BaseException:
        if outputs:
            outputs.discard()
        raise


# ---------------------------------------------------------------------------------------------------- loading


class LoadedCase(Case):
    """A folder's case as the app left it (``load_case``)."""
    reused = 0           # images whose stored results were used
    analysed = 0         # images analysed now (no stored result, or the image changed)


def load_case(folder: str | Path, model_dir: str | Path | None = None, recursive: bool = False,
              kind: str = "auto", on_progress: Callable[[int, int, ImageResult], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> LoadedCase:
    """A folder as the app left it: its saved review and stored results (``ResultsStore``); images without a
    stored result (or changed since) are analysed now and stored. TensorFlow loads only if something is
    analysed."""
    from ..model.active import resolve_model
    from ..analysis.imageio import list_images
    from ..paths import review_dirs
    from ..analysis.pipeline import analyze_images
    from ..analysis.store import ResultsStore

    folder = Path(folder).resolve()
    model_folder = resolve_model(model_dir).folder
    model = ModelDescriptor.from_folder(model_folder)
    session = ReviewSession.open(folder, model.identity())
    store = ResultsStore(session.directory, model.sha256, read_also=review_dirs(folder))
    images, _ = list_images(folder, recursive=recursive)
    results: dict[Path, ImageResult] = {}
    missing = []
    for path in images:
        rel = path.relative_to(folder).as_posix()
        stored = store.get(path, rel)
        if stored is not None:
            stored.path = str(path)
            results[path] = stored
        else:
            missing.append(path)
    reused = len(results)
    if missing:
        from ..model.classifier import CellClassifier

        classifier = CellClassifier(model_folder)
        for result in analyze_images(missing, folder, classifier, kind, on_progress, should_stop):
            results[Path(result.path)] = result
            try:
                store.put(result)
            except OSError:
                pass  # a read-only store only costs a re-run next time
    ordered = [results[p] for p in images if p in results]
    case = LoadedCase.of(ordered, folder=str(folder), session=session, model=model)
    case.reused, case.analysed = reused, len(ordered) - reused
    return case
