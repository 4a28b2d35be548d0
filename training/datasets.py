"""Reading labelled cell images: the C-NMC 2019 layout and a generic one-folder-per-class layout.

Every sample knows its path, its label and its subject (the patient). Byte-identical files are dropped
before any split, so one image can never sit on both sides of a split.
"""
from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff")

# C-NMC names: UID_<subject>_<image>_<cell>_<all|hem>; healthy subjects are H<n> (one is "h3" upstream).
CNMC_NAME = re.compile(r"^UID_(?P<subject>[Hh]?\d+)_(?P<image>\d+)_(?P<cell>\d+)_(?P<label>all|hem)$", re.I)

# C-NMC class folders and the names the model uses for them; ALL (the blast) is the positive class.
CNMC_CLASSES = {"hem": "HEM", "all": "ALL"}
CNMC_CLASS_NAMES = ("HEM", "ALL")
POSITIVE_CLASS = "ALL"


class DatasetError(ValueError):
    """A data set that cannot be used, with a message a user can act on."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str
    subject: str
    sha256: str = ""


@dataclass
class Dataset:
    samples: list[Sample]
    class_names: tuple[str, ...]
    layout: str
    root: Path
    duplicates_dropped: int = 0
    subjects_known: bool = True
    notes: list[str] = field(default_factory=list)

    def label_index(self, sample: Sample) -> int:
        return self.class_names.index(sample.label)

    def labels(self) -> list[int]:
        return [self.class_names.index(s.label) for s in self.samples]

    def subjects(self) -> list[str]:
        return sorted({s.subject for s in self.samples})

    def summary(self) -> dict:
        """Counts per class and per subject, as recorded in a model folder."""
        per_class = Counter(s.label for s in self.samples)
        per_subject: dict[str, dict[str, int]] = {}
        for s in self.samples:
            per_subject.setdefault(s.subject, Counter())[s.label] += 1
        return {
            "root": str(self.root),
            "layout": self.layout,
            "images": len(self.samples),
            "classes": list(self.class_names),
            "per_class": {c: per_class.get(c, 0) for c in self.class_names},
            "subjects": len(per_subject) if self.subjects_known else None,
            "subjects_known": self.subjects_known,
            "per_subject": {k: dict(v) for k, v in sorted(per_subject.items())} if self.subjects_known else {},
            "duplicates_dropped": self.duplicates_dropped,
            "notes": list(self.notes),
        }

    def subset(self, indices) -> "Dataset":
        return Dataset([self.samples[i] for i in indices], self.class_names, self.layout, self.root,
                       0, self.subjects_known, list(self.notes))


def subject_from_name(stem: str) -> str | None:
    """Subject ID of a C-NMC file name (``UID_45_3_2_all`` -> ``45``, ``UID_h3_..`` -> ``H3``)."""
    m = CNMC_NAME.match(stem)
    if not m:
        return None
    return m.group("subject").upper()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _cnmc_class_dirs(root: Path, folds: list[int] | None) -> list[tuple[Path, str]] | None:
    """(folder, label) pairs for a C-NMC root, or None if ``root`` is not in that layout."""
    def flat(d: Path):
        return [(d / k, v) for k, v in CNMC_CLASSES.items() if (d / k).is_dir()]

    if (root / "all").is_dir() or (root / "hem").is_dir():
        return flat(root)
    fold_dirs = []
    for base in (root, root / "training_data", root / "cnmc" / "training_data"):
        fold_dirs += sorted(base.glob("fold_*")) if base.is_dir() else []
    if not fold_dirs:
        return None
    if folds is not None:
        wanted = {f"fold_{i}" for i in folds}
        fold_dirs = [d for d in fold_dirs if d.name in wanted]
        if not fold_dirs:
            raise DatasetError(f"none of the folds {sorted(folds)} is under {root}")
    pairs = []
    for d in fold_dirs:
        pairs += flat(d)
    return pairs


def load_dataset(root: str | Path, folds: list[int] | None = None, dedupe: bool = True) -> Dataset:
    """Read a labelled image folder.

    Layouts, detected in this order:
      * C-NMC: ``root/{all,hem}/`` or ``root/[training_data/]fold_N/{all,hem}/`` with ``UID_*`` names;
      * generic: ``root/<class>/...`` (one folder per class, images anywhere below it).
    Subjects come from C-NMC names; where a name carries none, each image is its own subject (and a
    note says that subject-disjoint splits then fall back to image level).
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"data folder not found: {root}")
    if not root.is_dir():
        raise DatasetError(f"not a folder: {root}")

    cnmc = _cnmc_class_dirs(root, folds)
    if cnmc is not None:
        layout, class_names = "cnmc", CNMC_CLASS_NAMES
        pairs = [(p, label) for d, label in cnmc for p in _images_in(d)]
    else:
        class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        class_dirs = [d for d in class_dirs if _images_in(d)]
        layout, class_names = "folder_per_class", tuple(d.name for d in class_dirs)
        pairs = [(p, d.name) for d in class_dirs for p in _images_in(d)]

    if not pairs:
        raise DatasetError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {root}")
    present = {label for _, label in pairs}
    if len(present) < 2:
        raise DatasetError(
            f"only one class ({', '.join(sorted(present))}) has images under {root}; "
            "training needs at least two classes (e.g. all/ and hem/ folders)")
    if layout == "cnmc":
        class_names = tuple(c for c in CNMC_CLASS_NAMES if c in present)

    samples, seen, dropped, unnamed = [], {}, 0, 0
    for path, label in pairs:
        digest = _sha256(path)
        if dedupe and digest in seen:
            dropped += 1
            first = seen[digest]
            if first.label != label:
                log.warning("identical image in two classes: %s (%s) and %s (%s); keeping the first",
                            first.path, first.label, path, label)
            continue
        subject = subject_from_name(path.stem)
        if subject is None:
            unnamed += 1
            subject = f"image:{path.relative_to(root).as_posix()}"
        sample = Sample(path, label, subject, digest)
        seen[digest] = sample
        samples.append(sample)

    notes = []
    if dropped:
        log.info("dropped %d byte-identical duplicate image(s) before splitting", dropped)
        notes.append(f"{dropped} byte-identical duplicate image(s) dropped before splitting")
    subjects_known = unnamed == 0
    if unnamed:
        msg = (f"{unnamed} of {len(samples)} images carry no subject ID in their name; each of them is "
               "treated as its own subject, so subject-disjoint splits fall back to image level for them")
        log.warning(msg)
        notes.append(msg)
    return Dataset(samples, class_names, layout, root, dropped, subjects_known, notes)
