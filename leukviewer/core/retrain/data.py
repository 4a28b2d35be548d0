"""Training data for retraining: the cells hematologists reviewed in this app, checks of a data folder, and
the data of one retraining (``prepare_data``: reviewed cells and/or a folder, combined and checked).

``export_reviewed_cells`` turns saved reviews into a C-NMC-style data set that ``training.datasets.load_dataset``
reads: every reviewed cell becomes a crop (the cell on black, as the classifier sees it) named
``all/UID_<subject>_<image>_<cell>_all.png`` or ``hem/..._hem.png``, where the subject is the case (one stable
number per case folder, recorded in ``subjects.json``), so splits keep each case on one side. Cells reviewed as
UNCERTAIN are left out and counted. ``check_data`` reads a data folder the way training will and says what is
wrong with it (errors) or worth knowing (warnings). No Qt, no TensorFlow.
"""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from training.datasets import CNMC_CLASSES, DatasetError, load_dataset

from ..atomic import atomic_write_text, replace_folder
from ..model.classifier import LABEL_BLAST, LABEL_NORMAL, LABEL_UNCERTAIN
from ..analysis.imageio import UnreadableImage, read_image
from ..analysis.localize import CellRegion, crop_cell
from ..analysis.results import ImageResult
from ..review.session import FORMAT as REVIEW_FORMAT
from ..paths import STATE_FILE, review_dirs, saved_review_dir, user_data_dir
from ..review.session import CellReview
from ..analysis.store import ResultsStore

# Case subjects are numbered from here so they never clash with C-NMC subject numbers (1-99, H1-H99) when the
# reviewed cells are trained together with a C-NMC folder.
FIRST_CASE_SUBJECT = 9001
SUBJECTS_FILE = "subjects.json"
CELLS_FILE = "cells.csv"
CLASS_FOLDERS = {LABEL_BLAST: "all", LABEL_NORMAL: "hem"}
# Below this ratio of the smaller to the larger class a warning is shown.
IMBALANCE_RATIO = 0.25
MIN_SUBJECTS_PER_CLASS = 3   # one each for training, validation and test
MIN_IMAGES_PER_CLASS = 20
# The fewest cells of a class ``leukviewer retrain`` trains on (the wizard warns below MIN_IMAGES_PER_CLASS and lets
# the user decide): with fewer, validation and test get next to none of them.
MIN_CELLS_TO_TRAIN = 10

ProgressCallback = Callable[[str, float | None], None]


# ================================================================ saved reviews


@dataclass
class SavedReview:
    folder: Path
    directory: Path
    reviews: dict[str, CellReview]
    model_sha256: str

    def counts(self) -> dict[str, int]:
        c = Counter(r.label for r in self.reviews.values())
        return {label: c.get(label, 0) for label in (LABEL_BLAST, LABEL_NORMAL, LABEL_UNCERTAIN)}


def read_saved_review(folder: str | Path) -> SavedReview | None:
    """The saved review of a case folder, or None when it has none (or it cannot be read)."""
    directory = saved_review_dir(folder)
    if directory is None:
        return None
    try:
        data = json.loads((directory / STATE_FILE).read_text(encoding="utf-8"))
        if data.get("format") != REVIEW_FORMAT:
            return None
        reviews = {k: CellReview(**v) for k, v in data.get("reviews", {}).items()}
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        return None
    return SavedReview(Path(folder).resolve(), directory, reviews, str(data.get("model", {}).get("sha256") or ""))


def reviewed_cases(folders: Iterable[str | Path]) -> list[SavedReview]:
    """The folders (in the given order, without repeats) that have a saved review with at least one cell."""
    out, seen = [], set()
    for folder in folders:
        path = Path(folder)
        if not path.is_dir():
            continue
        key = str(path.resolve())
        if key in seen:
            continue
        seen.add(key)
        review = read_saved_review(path)
        if review is not None and review.reviews:
            out.append(review)
    return out


# ================================================================ stable subject numbers per case


def _subjects_registry() -> Path:
    return user_data_dir() / "retrain" / "case_subjects.json"


def case_subject_ids(folders: Iterable[Path], registry: Path | None = None) -> dict[str, int]:
    """A number per case folder that stays the same across exports (recorded in the user data dir)."""
    registry = registry or _subjects_registry()
    try:
        known = json.loads(registry.read_text(encoding="utf-8")) if registry.is_file() else {}
        known = {str(k): int(v) for k, v in known.items()}
    except (OSError, ValueError, TypeError, UnicodeDecodeError):
        known = {}
    changed = False
    out = {}
    for folder in folders:
        key = str(Path(folder).resolve())
        if key not in known:
            known[key] = max([FIRST_CASE_SUBJECT - 1, *known.values()]) + 1
            changed = True
        out[key] = known[key]
    if changed:
        registry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(registry, json.dumps(known, indent=1, ensure_ascii=False))
    return out


# ================================================================ exporting reviewed cells


@dataclass
class CaseExport:
    folder: str
    subject: str
    per_class: dict[str, int] = field(default_factory=dict)   # exported crops per class (ALL, HEM)
    uncertain: int = 0                                          # reviewed UNCERTAIN: left out
    skipped: list[str] = field(default_factory=list)            # reviewed cells that could not be exported, why


@dataclass
class ReviewedCellsExport:
    root: Path
    cases: list[CaseExport]
    cancelled: bool = False

    @property
    def per_class(self) -> dict[str, int]:
        total = Counter()
        for case in self.cases:
            total.update(case.per_class)
        return {label: total.get(label, 0) for label in (LABEL_BLAST, LABEL_NORMAL)}

    @property
    def images(self) -> int:
        return sum(self.per_class.values())

    @property
    def uncertain_excluded(self) -> int:
        return sum(c.uncertain for c in self.cases)

    @property
    def skipped(self) -> int:
        return sum(len(c.skipped) for c in self.cases)

    def notes(self) -> list[str]:
        """What a user should know about the export, in words."""
        out = []
        if self.uncertain_excluded:
            out.append(f"{self.uncertain_excluded} cell(s) reviewed as UNCERTAIN are not used for training.")
        for case in self.cases:
            if case.skipped:
                out.append(f"{Path(case.folder).name}: {len(case.skipped)} reviewed cell(s) could not be exported "
                           f"({case.skipped[0]}{'; …' if len(case.skipped) > 1 else ''}).")
        return out

    def to_dict(self) -> dict:
        return {"root": str(self.root), "images": self.images, "per_class": self.per_class,
                "uncertain_excluded": self.uncertain_excluded, "skipped": self.skipped,
                "cases": [vars(c) for c in self.cases]}


def _results_by_cell(review: SavedReview) -> dict[str, tuple[ImageResult, object]]:
    """cell_id -> (image result, cell) from the stored results, the review's model first, then any other."""
    # The review's directory first, then the case's other one (results stored beside a folder since archived).
    bases = [review.directory] + [d for d in review_dirs(review.folder) if d != review.directory]
    stores: list[tuple[Path, str]] = []
    if review.model_sha256:
        stores += [(base, review.model_sha256[:16]) for base in bases]
    for base in bases:
        if (base / "results").is_dir():
            others = sorted((d for d in (base / "results").iterdir() if d.is_dir() and (base, d.name) not in stores),
                            key=lambda d: d.stat().st_mtime, reverse=True)
            stores += [(base, d.name) for d in others]
    found: dict[str, tuple[ImageResult, object]] = {}
    for base, name in stores:
        # Cell numbers come from localisation, not from the model, so results of another model still match.
        for result in ResultsStore(base, name).all():
            for cell in result.cells:
                found.setdefault(cell.cell_id, (result, cell))
    return found


def _region(cell) -> CellRegion:
    return CellRegion(tuple(int(v) for v in cell.bbox), np.asarray(cell.outline, np.int32),
                      tuple(float(v) for v in cell.centroid), int(cell.area), 0, bool(cell.partial))


def _png_bytes(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def export_reviewed_cells(case_folders: Iterable[str | Path], dest: str | Path,
                          on_progress: ProgressCallback | None = None,
                          should_stop: Callable[[], bool] | None = None,
                          subject_registry: Path | None = None) -> ReviewedCellsExport:
    """Write the reviewed cells of the given case folders as a C-NMC-style data set in ``dest``.

    ``dest`` is replaced as a whole (built under a hidden name, then renamed), so it never holds half an
    export. Folders without a saved review are skipped. Returns counts per class and per case.
    """
    report = on_progress or (lambda message, fraction: None)
    stop = should_stop or (lambda: False)
    dest = Path(dest)
    reviews = reviewed_cases(case_folders)
    subjects = case_subject_ids([r.folder for r in reviews], subject_registry)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    cases: list[CaseExport] = []
    rows = []
    try:
        for label in (LABEL_BLAST, LABEL_NORMAL):
            (staging / CLASS_FOLDERS[label]).mkdir()
        total = sum(len(r.reviews) for r in reviews) or 1
        done = 0
        for review in reviews:
            subject = str(subjects[str(review.folder)])
            case = CaseExport(str(review.folder), subject, {LABEL_BLAST: 0, LABEL_NORMAL: 0})
            cases.append(case)
            found = _results_by_cell(review)
            image_numbers = {name: i for i, name in enumerate(sorted({r.image for r, _ in found.values()}), 1)}
            wanted = defaultdict(list)
            for cell_id, cell_review in sorted(review.reviews.items()):
                if cell_review.label == LABEL_UNCERTAIN:
                    case.uncertain += 1
                elif cell_review.label not in CLASS_FOLDERS:
                    case.skipped.append(f"{cell_id}: unknown label {cell_review.label!r}")
                elif cell_id not in found:
                    case.skipped.append(f"{cell_id}: no stored analysis result (open the case again)")
                else:
                    result, cell = found[cell_id]
                    wanted[result.image].append((cell, cell_review, result))
            done += case.uncertain + len(case.skipped)
            for image, cells in sorted(wanted.items()):
                if stop():
                    return ReviewedCellsExport(dest, cases, cancelled=True)
                try:
                    rgb = read_image(review.folder / image)
                except UnreadableImage as e:
                    case.skipped += [f"{c.cell_id}: image unreadable ({e.reason})" for c, _, _ in cells]
                    done += len(cells)
                    continue
                for cell, cell_review, result in cells:
                    if (result.width, result.height) not in ((0, 0), (rgb.shape[1], rgb.shape[0])):
                        case.skipped.append(f"{cell.cell_id}: the image changed since it was analysed")
                        continue
                    # As in the pipeline: a single-cell image is the crop; in a field the cell is cut out on black.
                    crop = rgb if result.kind == "single_cell" else crop_cell(rgb, _region(cell), mask_background=True)
                    cell_number = cell.cell_id.rsplit("#", 1)[-1]
                    folder = CLASS_FOLDERS[cell_review.label]
                    name = f"UID_{subject}_{image_numbers[image]}_{cell_number}_{folder}.png"
                    (staging / folder / name).write_bytes(_png_bytes(crop))
                    case.per_class[cell_review.label] += 1
                    rows.append([f"{folder}/{name}", subject, str(review.folder), image, cell.cell_id,
                                 cell_review.label, cell_review.suggested, cell_review.reviewer, cell_review.time])
                done += len(cells)
                report(f"exporting reviewed cells of {review.folder.name}", done / total)
        atomic_write_text(staging / SUBJECTS_FILE, json.dumps(
            {c.subject: c.folder for c in cases}, indent=1, ensure_ascii=False))
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["file", "subject", "case", "image", "cell_id", "reviewed_label", "suggested_label",
                         "reviewer", "reviewed"])
        writer.writerows(rows)
        atomic_write_text(staging / CELLS_FILE, text.getvalue())
        os.chmod(staging, 0o755)
        replace_folder(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return ReviewedCellsExport(dest, cases)


# ================================================================ combining sources


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.symlink(source.resolve(), target)
    except OSError:  # no symlinks (Windows without the privilege): a hard link, else a copy
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)


def combine_sources(dest: str | Path, sources: list[str | Path]) -> Path:
    """One C-NMC-style folder (``all/``, ``hem/``) linking to the images of several ALL/HEM data sets.

    File names are kept (they carry the subject); a name seen twice is prefixed with its source's number.
    Raises DatasetError when a source has classes other than ALL and HEM.
    """
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    for folder in CNMC_CLASSES:
        (dest / folder).mkdir(parents=True)
    taken: set[str] = set()
    for n, source in enumerate(sources, 1):
        dataset = load_dataset(source, dedupe=False)
        other = sorted(set(dataset.class_names) - set(CLASS_FOLDERS))
        if other:
            raise DatasetError(f"{source} has the class(es) {', '.join(other)}; the reviewed cells are "
                               f"{LABEL_BLAST}/{LABEL_NORMAL} only, so they can be combined only with an "
                               f"{LABEL_BLAST}/{LABEL_NORMAL} data set (train on one of them alone instead)")
        for sample in dataset.samples:
            folder = CLASS_FOLDERS[sample.label]
            name = sample.path.name if sample.path.suffix else sample.path.name + ".png"
            if f"{folder}/{name}" in taken:
                name = f"src{n}__{name}"
            taken.add(f"{folder}/{name}")
            _link_or_copy(sample.path, dest / folder / name)
    return dest


# ================================================================ checking a data folder


@dataclass
class DataCheck:
    """What training will see in a data folder."""
    root: Path
    summary: dict | None = None          # training.datasets.Dataset.summary(), None when it cannot be read
    subjects_per_class: dict[str, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)   # "name (reason)"
    errors: list[str] = field(default_factory=list)       # training cannot start
    warnings: list[str] = field(default_factory=list)     # training can start; worth knowing
    readable_classes: int = 0                             # classes with at least one readable image
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and self.summary is not None and not self.cancelled

    @property
    def usable_without_unreadable(self) -> bool:
        """True when the only problem is unreadable images and enough readable ones remain to train."""
        return bool(self.unreadable) and self.summary is not None and not self.cancelled and \
            all(e == self.unreadable_message() for e in self.errors) and self.readable_classes >= 2

    def unreadable_message(self) -> str:
        names = "; ".join(self.unreadable[:3]) + (f" and {len(self.unreadable) - 3} more"
                                                   if len(self.unreadable) > 3 else "")
        return f"{len(self.unreadable)} image(s) cannot be read: {names}"


def count_subjects_per_class(summary: dict) -> dict[str, int]:
    """Subjects with at least one image of each class, from the data summary's per-subject counts (the table the
    wizard shows), so a case with cells of both classes counts for both. (Counting each subject only for its
    majority class said "ALL 0" next to a table listing a subject with ALL cells.)"""
    per_subject = summary.get("per_subject") or {}
    return {c: sum(1 for counts in per_subject.values() if counts.get(c, 0) > 0) for c in summary.get("classes", [])}


def check_data(root: str | Path, decode: bool = True, subject_split: bool = True,
               on_progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None,
               workers: int = 0) -> DataCheck:
    """Read a data folder as training will (``load_dataset``) and, with ``decode``, decode every image."""
    report = on_progress or (lambda message, fraction: None)
    stop = should_stop or (lambda: False)
    check = DataCheck(Path(root))
    report(f"reading {check.root}", None)
    try:
        dataset = load_dataset(root)
    except DatasetError as e:
        check.errors.append(str(e))
        return check
    check.summary = dataset.summary()
    check.subjects_per_class = count_subjects_per_class(check.summary)
    bad_labels: Counter = Counter()
    if decode:
        samples = dataset.samples
        n = len(samples)

        def one(sample):
            if stop():
                return None
            try:
                read_image(sample.path)
                return None
            except UnreadableImage as e:
                return f"{sample.path.name} ({e.reason})"

        with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
            for k, (sample, problem) in enumerate(zip(samples, pool.map(one, samples))):
                if problem:
                    check.unreadable.append(problem)
                    bad_labels[sample.label] += 1
                if k % 50 == 0 or k == n - 1:
                    report(f"checking images {k + 1}/{n}", (k + 1) / n)
        if stop():
            check.cancelled = True
            return check
    per_class = check.summary["per_class"]
    readable = {c: per_class[c] - bad_labels.get(c, 0) for c in per_class}
    check.readable_classes = sum(1 for v in readable.values() if v > 0)
    if check.unreadable:
        check.errors.append(check.unreadable_message())
    check.warnings = data_warnings(check.summary, check.subjects_per_class, subject_split)
    return check


def too_few_cells(summary: dict, minimum: int = MIN_CELLS_TO_TRAIN) -> str:
    """Why the data is too small to train on headless ("" when it is not): a class with fewer than ``minimum``."""
    per_class = summary.get("per_class", {})
    if all(n >= minimum for n in per_class.values()):
        return ""
    counts = ", ".join(f"{c} {n}" for c, n in per_class.items())
    return (f"too few labelled cells to train: {counts} (each class needs at least {minimum}). Review more cells "
            "as ALL and HEM, add more cases, or add a labelled folder")


def data_warnings(summary: dict, subjects_per_class: dict[str, int], subject_split: bool = True) -> list[str]:
    """Imbalance, too few subjects for a subject-disjoint validation and test, duplicates, small classes."""
    out = []
    per_class = summary.get("per_class", {})
    counts = [v for v in per_class.values() if v]
    if len(counts) >= 2 and min(counts) / max(counts) < IMBALANCE_RATIO:
        smallest = min(per_class, key=lambda c: per_class[c] or float("inf"))
        largest = max(per_class, key=lambda c: per_class[c])
        out.append(f"The classes are imbalanced: {largest} {per_class[largest]} vs {smallest} "
                   f"{per_class[smallest]} images ({per_class[largest] / per_class[smallest]:.1f} : 1). The smaller "
                   "class is oversampled in training, but its figures rest on few cells.")
    for c, v in per_class.items():
        if 0 < v < MIN_IMAGES_PER_CLASS:
            out.append(f"Class {c} has only {v} image(s); the model will learn little about it.")
    if not summary.get("subjects_known", True):
        out.append("Some images carry no subject (patient) ID in their name: each of them counts as its own "
                   "subject, so cells of one patient can land in training and in validation/test.")
    elif subject_split:
        few = {c: n for c, n in subjects_per_class.items() if n < MIN_SUBJECTS_PER_CLASS}
        if few:
            listed = ", ".join(f"{c} {n}" for c, n in few.items())
            out.append(f"Too few subjects for a subject-disjoint validation: subjects with images of each class "
                       f"{listed} (each class needs {MIN_SUBJECTS_PER_CLASS}: training, validation and test). "
                       "Some parts will lack a class, and the figures will rest on very few patients.")
    if summary.get("duplicates_dropped"):
        out.append(f"{summary['duplicates_dropped']} byte-identical duplicate image(s) are dropped before the "
                   "split (they would otherwise sit on both sides of it).")
    return out


# ================================================================ the data of one retraining


@dataclass
class PreparedData:
    """The data training will read (``root``), where it came from, and what the check found."""
    root: Path | None
    check: DataCheck | None
    export: ReviewedCellsExport | None = None
    sources: dict = field(default_factory=dict)
    error: str = ""


def prepare_data(folder: str | None, cases: list[str], session_root: str | Path,
                 on_progress: ProgressCallback | None = None,
                 should_stop: Callable[[], bool] | None = None) -> PreparedData:
    """Export the reviewed cells, combine them with the folder if both are chosen, and check the result."""
    progress = on_progress or (lambda message, fraction: None)
    stop = should_stop or (lambda: False)
    session = Path(session_root)
    sources: dict = {"folder": folder, "cases": list(cases)}
    export = None
    roots = []
    if folder:
        roots.append(Path(folder))
    if cases:
        export = export_reviewed_cells(cases, session / "reviewed", on_progress=progress, should_stop=stop)
        if export.cancelled:
            return PreparedData(None, None, export, sources, "cancelled")
        sources["reviewed"] = export.to_dict()
        if export.images:
            roots.append(export.root)
        elif not folder:
            return PreparedData(None, None, export, sources,
                                "The chosen cases have no cells reviewed as ALL or HEM "
                                f"({export.uncertain_excluded} reviewed as UNCERTAIN, which are not used).")
    if not roots:
        return PreparedData(None, None, export, sources, "Choose a folder of labelled cells and/or reviewed cases.")
    if len(roots) == 1:
        root = roots[0]
    else:
        progress("combining the folder with the reviewed cells", None)
        try:
            root = combine_sources(session / "data", roots)
        except DatasetError as e:
            return PreparedData(None, None, export, sources, str(e))
    check = check_data(root, decode=True, on_progress=progress, should_stop=stop)
    return PreparedData(root, check, export, sources)
