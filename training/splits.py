"""Splitting a data set so that no patient is on two sides.

The default everywhere is subject-disjoint and stratified by class. An image-level random split exists
only to reproduce the paper's protocol; it is marked ``leaks_subjects`` and every report says so.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from .datasets import Dataset, DatasetError

LEAK_WARNING = ("IMAGE-LEVEL SPLIT: cells of one patient are on both sides of this split, so these figures "
                "overstate performance on new patients (the paper's protocol, reproduced for contrast only).")


class LeakError(DatasetError):
    """A split that puts one subject on two sides."""


@dataclass
class Split:
    train: list[int]
    val: list[int]
    test: list[int]
    kind: str = "subject"
    seed: int = 0
    leaks_subjects: bool = False
    notes: list[str] = field(default_factory=list)

    def parts(self) -> dict[str, list[int]]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def describe(self, dataset: Dataset) -> dict:
        out = {"kind": self.kind, "seed": self.seed, "leaks_subjects": self.leaks_subjects,
               "notes": list(self.notes)}
        if self.leaks_subjects:
            out["warning"] = LEAK_WARNING
        for name, idx in self.parts().items():
            samples = [dataset.samples[i] for i in idx]
            out[name] = {
                "images": len(samples),
                "per_class": dict(Counter(s.label for s in samples)),
                "subjects": sorted({s.subject for s in samples}) if dataset.subjects_known else None,
            }
        return out


def check_subject_disjoint(dataset: Dataset, parts: dict[str, list[int]]) -> None:
    """Raise LeakError if any subject has images in two parts."""
    owner: dict[str, str] = {}
    for name, idx in parts.items():
        for i in idx:
            subj = dataset.samples[i].subject
            if owner.setdefault(subj, name) != name:
                raise LeakError(f"subject {subj} is in both the {owner[subj]} and the {name} part; "
                                "a subject-disjoint split may not put one patient on two sides")


def _subjects_by_class(dataset: Dataset) -> dict[str, list[str]]:
    """Subjects grouped by their majority class (in C-NMC every subject has one class)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for s in dataset.samples:
        counts[s.subject][s.label] += 1
    groups: dict[str, list[str]] = defaultdict(list)
    for subj in sorted(counts):
        label = max(dataset.class_names, key=lambda c: (counts[subj][c], -dataset.class_names.index(c)))
        groups[label].append(subj)
    return groups


def _indices_of(dataset: Dataset, subjects: set[str]) -> list[int]:
    return [i for i, s in enumerate(dataset.samples) if s.subject in subjects]


def subject_split(dataset: Dataset, val_fraction: float = 0.15, test_fraction: float = 0.15,
                  seed: int = 0) -> Split:
    """Subject-disjoint train/val/test split, stratified by each subject's class.

    Within every class, subjects are shuffled (seeded) and dealt out so that val and test each get at least
    one subject of the class when the class has three or more, and roughly the asked fractions of images.
    """
    rng = np.random.default_rng(seed)
    sizes = Counter(s.subject for s in dataset.samples)
    parts: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    notes = []
    for label, subjects in sorted(_subjects_by_class(dataset).items()):
        subjects = list(subjects)
        rng.shuffle(subjects)
        total = sum(sizes[s] for s in subjects)
        wanted = {"test": test_fraction * total, "val": val_fraction * total}
        taken = {"test": 0, "val": 0}
        remaining = list(subjects)
        for part in ("test", "val"):
            if wanted[part] <= 0:
                continue
            # Keep at least one subject of the class for training.
            while len(remaining) > 1 and (taken[part] == 0 or taken[part] + sizes[remaining[0]] / 2 <= wanted[part]):
                subj = remaining.pop(0)
                parts[part].add(subj)
                taken[part] += sizes[subj]
        parts["train"].update(remaining)
        if len(subjects) < 3:
            notes.append(f"class {label} has only {len(subjects)} subject(s): not every part gets one")
    idx = {k: _indices_of(dataset, v) for k, v in parts.items()}
    check_subject_disjoint(dataset, idx)
    if not dataset.subjects_known:
        notes.append("some images carry no subject ID: for them this split is image-level")
    return Split(idx["train"], idx["val"], idx["test"], "subject", seed, False, notes)


def image_split(dataset: Dataset, val_fraction: float = 0.10, test_fraction: float = 0.20, seed: int = 0,
                allow_subject_leak: bool = False) -> Split:
    """Random image-level split, stratified by class: the paper's 70/10/20 protocol.

    Refused unless ``allow_subject_leak`` is given, because it puts cells of one patient on both sides.
    """
    if not allow_subject_leak:
        raise LeakError("an image-level split puts cells of one patient on both sides; pass "
                        "allow_subject_leak=True (CLI: --leaky-image-split) to reproduce the paper's protocol")
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    by_class = defaultdict(list)
    for i, s in enumerate(dataset.samples):
        by_class[s.label].append(i)
    for label in sorted(by_class):
        idx = np.array(by_class[label])
        rng.shuffle(idx)
        n_test = int(round(test_fraction * len(idx)))
        n_val = int(round(val_fraction * len(idx)))
        test += idx[:n_test].tolist()
        val += idx[n_test:n_test + n_val].tolist()
        train += idx[n_test + n_val:].tolist()
    return Split(sorted(train), sorted(val), sorted(test), "image", seed, True, [LEAK_WARNING])


def subject_folds(dataset: Dataset, k: int, seed: int = 0) -> list[list[int]]:
    """Leave-subjects-out folds: k disjoint groups of subjects, each class's subjects dealt across folds.

    Subjects of each class are shuffled (seeded) and each goes to the fold that so far holds the fewest
    images of that class, so every fold gets about 1/k of each class's subjects.
    """
    if k < 2:
        raise DatasetError("cross-validation needs at least 2 folds")
    groups = _subjects_by_class(dataset)
    for label, subjects in groups.items():
        if len(subjects) < k:
            raise DatasetError(f"class {label} has {len(subjects)} subject(s), fewer than the {k} folds asked: "
                               f"use at most {len(subjects)} folds")
    rng = np.random.default_rng(seed)
    sizes = Counter(s.subject for s in dataset.samples)
    fold_subjects: list[set[str]] = [set() for _ in range(k)]
    for label in sorted(groups):
        subjects = list(groups[label])
        rng.shuffle(subjects)
        load = [0] * k
        count = [0] * k
        for subj in subjects:
            j = min(range(k), key=lambda f: (count[f], load[f], f))
            fold_subjects[j].add(subj)
            load[j] += sizes[subj]
            count[j] += 1
    folds = [_indices_of(dataset, s) for s in fold_subjects]
    check_subject_disjoint(dataset, {f"fold {i}": f for i, f in enumerate(folds)})
    return folds


def cross_validation_splits(dataset: Dataset, k: int, seed: int = 0, val_fraction: float = 0.15) -> list[Split]:
    """For each of k subject folds: test = that fold; train/val = a subject-disjoint split of the rest."""
    splits = []
    for i, test in enumerate(subject_folds(dataset, k, seed)):
        rest_idx = sorted(set(range(len(dataset.samples))) - set(test))
        rest = dataset.subset(rest_idx)
        inner = subject_split(rest, val_fraction=val_fraction, test_fraction=0.0, seed=seed + i)
        train = [rest_idx[j] for j in inner.train]
        val = [rest_idx[j] for j in inner.val]
        split = Split(train, val, sorted(test), "subject-cv", seed, False,
                      [f"fold {i + 1} of {k}"] + inner.notes)
        check_subject_disjoint(dataset, split.parts())
        splits.append(split)
    return splits
