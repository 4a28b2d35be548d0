"""Training data from the app: reviewed cells of a real analysed case, and checks of data folders."""
import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from leukviewer.core.retrain.data import (FIRST_CASE_SUBJECT, check_data, combine_sources, export_reviewed_cells,
                                           reviewed_cases)
from training.datasets import CNMC_NAME, load_dataset


@pytest.fixture(scope="module")
def bccd_fields(shared_data):
    return sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:3]


def test_reviewed_cells_become_a_cnmc_style_data_set_with_the_case_as_subject(tmp_path, bccd_fields,
                                                                              make_reviewed_case):
    session, cells = make_reviewed_case(tmp_path / "case-A", bccd_fields)
    assert len(cells) >= 4
    plan = {cells[0].cell_id: "ALL", cells[1].cell_id: "HEM", cells[2].cell_id: "HEM",
            cells[3].cell_id: "UNCERTAIN"}
    for cell_id, label in plan.items():
        session.set_label(cell_id, label, suggested="ALL", reviewer="Dr. Test")
    never_reviewed = tmp_path / "case-B"
    never_reviewed.mkdir()

    export = export_reviewed_cells([session.folder, never_reviewed], tmp_path / "reviewed")
    assert export.per_class == {"ALL": 1, "HEM": 2} and export.uncertain_excluded == 1 and export.skipped == 0
    assert [c.folder for c in export.cases] == [str(session.folder)]  # a folder without a review is skipped
    assert any("UNCERTAIN" in note for note in export.notes())
    root = export.root
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert len(files) == 3 and sum(f.startswith("all/") for f in files) == 1
    for f in files:
        match = CNMC_NAME.match(f.split("/")[1][:-4])
        assert match and match.group("subject") == str(FIRST_CASE_SUBJECT) and match.group("label") == f[:3]
    assert json.loads((root / "subjects.json").read_text()) == {str(FIRST_CASE_SUBJECT): str(session.folder)}
    rows = list(csv.DictReader((root / "cells.csv").open()))
    assert {r["cell_id"]: r["reviewed_label"] for r in rows} == {k: v for k, v in plan.items() if v != "UNCERTAIN"}

    # Each crop is the reviewed cell on black, the size of its outline's box (plus the pipeline's margin).
    by_id = {c.cell_id: c for c in cells}
    for r in rows:
        crop = np.asarray(Image.open(root / r["file"]))
        w, h = by_id[r["cell_id"]].bbox[2:]
        assert crop.shape[0] == crop.shape[1] >= max(w, h)
        assert crop[0, 0].max() == 0 and crop[-1, -1].max() == 0 and crop.max() > 50

    # The training library reads it with the case as the subject.
    dataset = load_dataset(root)
    assert dataset.layout == "cnmc" and dataset.subjects() == [str(FIRST_CASE_SUBJECT)]
    assert dataset.summary()["per_class"] == {"HEM": 2, "ALL": 1}

    # Subject numbers are stable per case; a new case gets the next one; the export is replaced whole.
    other, other_cells = make_reviewed_case(tmp_path / "case-C", bccd_fields[:1])
    other.set_label(other_cells[0].cell_id, "ALL", "HEM", "Dr. Test")
    again = export_reviewed_cells([other.folder, session.folder], root)
    assert {c.folder: c.subject for c in again.cases} == {str(other.folder): str(FIRST_CASE_SUBJECT + 1),
                                                          str(session.folder): str(FIRST_CASE_SUBJECT)}
    assert again.per_class == {"ALL": 2, "HEM": 2} and len(list(root.rglob("*.png"))) == 4
    assert [r.folder for r in reviewed_cases([never_reviewed, session.folder, other.folder])] == [
        session.folder, other.folder]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".reviewed")]


def test_reviewed_cells_combine_with_a_cnmc_folder_keeping_subjects(tmp_path, cnmc_root):
    reviewed = tmp_path / "reviewed"
    for folder, label in (("all", "all"), ("hem", "hem")):
        (reviewed / folder).mkdir(parents=True)
        src = next((cnmc_root / "training_data" / "fold_1" / folder).glob("*.png"))
        shutil.copy(src, reviewed / folder / f"UID_{FIRST_CASE_SUBJECT}_1_1_{label}.png")
    combined = combine_sources(tmp_path / "combined", [cnmc_root, reviewed])
    dataset = load_dataset(combined)
    assert str(FIRST_CASE_SUBJECT) in dataset.subjects() and "H10" in dataset.subjects()
    assert dataset.duplicates_dropped == 2  # the copied crops are the same bytes as two C-NMC files

    pbc_like = tmp_path / "pbc"
    for c in ("neutrophil", "lymphocyte"):
        (pbc_like / c).mkdir(parents=True)
        shutil.copy(src, pbc_like / c / "x.png")
    with pytest.raises(ValueError, match="ALL/HEM"):
        combine_sources(tmp_path / "combined2", [pbc_like, reviewed])


def test_check_data_reads_like_training_and_explains_problems(tmp_path, cnmc_root):
    good = check_data(cnmc_root)
    assert good.ok and good.summary["images"] == 84 and good.summary["subjects"] == 14
    assert good.subjects_per_class == {"HEM": 3, "ALL": 11}
    assert any("only 18 image" in w for w in good.warnings)

    one_class = tmp_path / "one"
    shutil.copytree(cnmc_root / "training_data" / "fold_1" / "all", one_class / "all")
    check = check_data(one_class)
    assert not check.ok and "only one class" in check.errors[0]

    empty = tmp_path / "empty"
    (empty / "all").mkdir(parents=True)
    (empty / "hem").mkdir()
    assert "no images" in check_data(empty).errors[0]

    broken = tmp_path / "broken"
    shutil.copytree(cnmc_root, broken)
    victim = next(broken.rglob("*.png"))
    victim.write_bytes(b"not an image at all")
    check = check_data(broken)
    assert not check.ok and check.unreadable and victim.name in check.errors[0]
    assert check.usable_without_unreadable  # 83 readable images of two classes remain

    few = tmp_path / "few"
    for label, subject in (("all", 1), ("hem", 2)):
        (few / label).mkdir(parents=True)
        for i, src in enumerate(sorted((cnmc_root / "training_data" / "fold_1" / label).glob("*.png"))[:4]):
            shutil.copy(src, few / label / f"UID_{subject}_{i}_1_{label}.png")
    warnings = " ".join(check_data(few).warnings)
    assert "Too few subjects" in warnings and "only 4 image" in warnings


def test_subjects_per_class_count_a_subject_with_cells_of_both_classes_for_both(tmp_path, cnmc_root):
    """One reviewed case (one subject) with 3 HEM and 1 ALL cells: the warning says ALL 1, as the table does."""
    mixed = tmp_path / "mixed"
    for label, n in (("hem", 3), ("all", 1)):
        (mixed / label).mkdir(parents=True)
        for i, src in enumerate(sorted((cnmc_root / "training_data" / "fold_1" / label).glob("*.png"))[:n]):
            shutil.copy(src, mixed / label / f"UID_7_{i}_1_{label}.png")
    check = check_data(mixed, decode=False)
    assert check.summary["per_subject"] == {"7": {"HEM": 3, "ALL": 1}}
    assert check.subjects_per_class == {"HEM": 1, "ALL": 1}
    warnings = " ".join(check.warnings)
    assert "subjects with images of each class HEM 1, ALL 1" in warnings and "ALL 0" not in warnings
