"""Multi-class (white-cell type) model folders in the app: classifier, results, reports, review.

The multi-class fixture is a real model folder from the training library (tiny network, one epoch on C-NMC and
PBC images sorted by cell type); its predictions are meaningless, the paths they take are the app's.
"""
import json
import shutil

import numpy as np
import pytest

from leukviewer.core.model.classifier import (LABEL_BLAST, LABEL_NORMAL, LABEL_UNCERTAIN, CellClassifier,
                                        blast_class_of, cell_type_for)
from leukviewer.core.analysis.imageio import read_image
from training.celltypes import CELL_TYPES
from training.modelfolder import ModelFolderError

MULTICLASS = ["basophil", "blast", "eosinophil", "erythroblast", "ig", "lymphoid", "monocyte", "neutrophil",
              "non_wbc"]


@pytest.fixture(scope="module")
def multiclass(multiclass_model_dir):
    return CellClassifier(multiclass_model_dir)


def pbc_cells(shared_data, per_class=1):
    return [p for d in sorted((shared_data / "pbc").iterdir()) if d.is_dir()
            for p in sorted(d.glob("*.jpg"))[:per_class]]


def test_training_a_folder_of_cell_types_writes_a_blast_positive_multiclass_model(multiclass_model_dir):
    meta = json.loads((multiclass_model_dir / "model.json").read_text())
    assert meta["class_names"] == MULTICLASS and meta["positive_class"] == "blast"


def test_multiclass_classifier_gives_every_class_probability_and_p_blast_is_the_flag(multiclass, shared_data):
    assert multiclass.info.cell_types == tuple(MULTICLASS)
    prepared = np.stack([multiclass.prepare(read_image(p)) for p in pbc_cells(shared_data)])
    probs = multiclass.class_probabilities(prepared)
    assert probs.shape == (len(prepared), len(MULTICLASS))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    p_blast = multiclass.blast_probabilities(prepared)
    np.testing.assert_allclose(p_blast, probs[:, MULTICLASS.index("blast")], atol=1e-6)
    for row, p in zip(probs, p_blast):
        types = multiclass.type_probabilities(row)
        assert list(types) == MULTICLASS and multiclass.blast_probability_of(row) == pytest.approx(p)
        label = multiclass.label_for(p)
        cell_type = cell_type_for(types, label)
        assert cell_type in CELL_TYPES and (cell_type == "blast") == (label == LABEL_BLAST)


def test_cell_type_agrees_with_the_label():
    probs = {"blast": 0.5, "lymphoid": 0.1, "neutrophil": 0.3, "non_wbc": 0.1}
    assert cell_type_for(probs, LABEL_BLAST) == "blast"
    # not flagged ALL: the most probable type other than blast, even where blast is the argmax
    assert cell_type_for(probs, LABEL_UNCERTAIN) == "neutrophil"
    assert cell_type_for(probs, LABEL_NORMAL) == "neutrophil"
    assert cell_type_for({"lymphoid": 0.2, "blast": 0.8}, LABEL_NORMAL) == "lymphoid"   # a legacy HEM/ALL model
    assert cell_type_for({"lymphoid": 0.9, "blast": 0.1}, LABEL_BLAST) == "blast"


def test_legacy_binary_folder_still_loads_and_types_its_cells(tiny_model_dir):
    legacy = CellClassifier(tiny_model_dir)
    assert legacy.info.class_names == ("HEM", "ALL") and legacy.info.cell_types == ("lymphoid", "blast")


def test_folders_without_a_blast_class_are_refused_with_the_reason(multiclass_model_dir, tmp_path):
    assert blast_class_of(["HEM", "ALL"]) == "ALL" and blast_class_of(MULTICLASS, "blast") == "blast"
    for names, positive, words in ((["lymphoid", "neutrophil"], None, "not a blast classifier"),
                                   (["cat", "dog"], None, "not a blast classifier"),
                                   (["blast", "lymphoid", "ALL"], None, "not a blast classifier"),
                                   (MULTICLASS, "neutrophil", "positive class is 'neutrophil'")):
        with pytest.raises(ModelFolderError, match=words):
            blast_class_of(names, positive)
    # a whole folder: nine classes, none of them blast
    folder = tmp_path / "no-blast"
    shutil.copytree(multiclass_model_dir, folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["class_names"] = [("monocyte" if c == "blast" else c) for c in meta["class_names"]]
    meta["positive_class"] = "monocyte"
    (folder / "model.json").write_text(json.dumps(meta))
    from training.modelfolder import write_manifest

    write_manifest(folder)   # a sealed folder, so the refusal is for its classes, not for an edited model.json
    with pytest.raises(ModelFolderError, match=r"no-blast is not a blast classifier .*HEM and ALL, or white-cell"):
        CellClassifier(folder)


# ------------------------------------------------------------------------------------------ results and outputs

PROBABILITY_COLUMNS = [f"p_{t}" for t in CELL_TYPES if t != "blast"]   # the fixture has every type


@pytest.fixture(scope="module")
def mixed_case(shared_data, tmp_path_factory):
    """Two PBC cells of every type, two C-NMC blasts and one BCCD smear field."""
    folder = tmp_path_factory.mktemp("mixed") / "case"
    folder.mkdir()
    for p in pbc_cells(shared_data, per_class=2):
        shutil.copy(p, folder / f"{p.parent.name}-{p.name}")
    for p in sorted((shared_data / "cnmc" / "training_data" / "fold_1" / "all").glob("*.png"))[:2]:
        shutil.copy(p, folder)
    shutil.copy(sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[0], folder)
    return folder


def read_csv(path):
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_batch_on_a_multiclass_model_writes_types_probabilities_and_white_cell_counts(mixed_case,
                                                                                      multiclass_model_dir,
                                                                                      tmp_path, capsys):
    from leukviewer.__main__ import main

    out = tmp_path / "out"
    assert main(["batch", str(mixed_case), "--out", str(out), "--model", str(multiclass_model_dir), "--quiet",
                 "--csv", "--geojson"]) == 0
    rows = read_csv(out / "cells.csv")
    assert len(rows) >= 19
    assert list(rows[0])[-11:] == ["cell_type", "reviewed_cell_type", "final_cell_type", *PROBABILITY_COLUMNS]
    for row in rows:
        probs = {t: float(row[f"p_{t}"]) for t in CELL_TYPES if t != "blast"} | {"blast": float(row["p_blast"])}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        label = row["label"]
        expected = "blast" if label == "ALL" else max((p, t) for t, p in probs.items() if t != "blast")[1]
        assert row["cell_type"] == row["final_cell_type"] == expected and row["reviewed_cell_type"] == ""
    summary = json.loads((out / "summary.json").read_text())
    case = summary["case"]
    counted = [r for r in rows if r["partial"] == "false"]   # cells cut by the border are listed, not counted
    white = [r for r in counted if r["cell_type"] != "non_wbc"]
    assert case["cells"] == len(counted) and case["white_cells"] == len(white)
    assert case["non_white_cells"] == len(counted) - len(white)
    assert case["cell_types"] == {t: n for t in CELL_TYPES if (n := sum(r["cell_type"] == t for r in counted))}
    assert case["blasts"] == sum(r["label"] == "ALL" for r in white) == case["cell_types"].get("blast", 0)
    assert case["blasts_per_100_white_cells"] == case["blast_percentage"] == round(
        100 * case["blasts"] / len(white), 2)
    assert "non_wbc" in case["white_cells_note"] and "excluded" in case["white_cells_note"]
    assert summary["model"]["cell_types"] == MULTICLASS
    images = read_csv(out / "images.csv")
    assert sum(int(r["non_white_cells"]) for r in images) == case["non_white_cells"]
    assert sum(int(r["white_cells"]) for r in images) == case["white_cells"]
    assert f"{case['white_cells']} white cells" in capsys.readouterr().out
    features = json.loads((out / "cells.geojson").read_text())["features"]
    by_name = {f["properties"]["name"]: f["properties"] for f in features}
    for row in rows:
        props = by_name[row["cell_id"].lstrip("'")]
        assert props["classification"]["name"] == row["label"]
        assert props["classification"]["cell_type"] == props["metadata"]["cell_type"] == row["cell_type"]
        assert props["measurements"]["P(non_wbc)"] == pytest.approx(float(row["p_non_wbc"]))


def test_cells_not_of_a_white_cell_type_are_left_out_of_white_cells_and_the_blast_percentage():
    from leukviewer.core.analysis.results import CaseSummary, Cell, ImageResult, count_cells

    def cell(n, label, cell_type):
        return Cell(f"f.jpg#{n}", "f.jpg", (0, 0, 9, 9), [], (4.5, 4.5), 60, 0.9 if label == "ALL" else 0.1, label,
                    False, "m", "1", "a" * 64, cell_type, {})

    cells = [cell(1, "ALL", "blast"), cell(2, "HEM", "neutrophil"), cell(3, "HEM", "non_wbc"),
             cell(4, "UNCERTAIN", "non_wbc"), cell(5, "UNCERTAIN", "lymphoid")]
    counts = count_cells((c.label, c.cell_type) for c in cells)
    assert counts == {"cells": 5, "white_cells": 3, "non_white_cells": 2, "blasts": 1, "uncertain": 1,
                      "normal": 1, "blast_percentage": 33.33,
                      # the uncertain non_wbc cell cannot be a blast: the range spans the one undecided white cell
                      "blast_percentage_min": 33.33, "blast_percentage_max": 66.67,
                      "cell_types": {"blast": 1, "lymphoid": 1, "neutrophil": 1, "non_wbc": 2}}
    summary = CaseSummary("x")
    summary.add(ImageResult("/x/f.jpg", "f.jpg", "ok", cells=cells))
    d = summary.to_dict()
    assert (d["white_cells"], d["non_white_cells"], d["blasts_per_100_white_cells"]) == (3, 2, 33.33)


def test_results_stored_before_cell_types_read_back_as_legacy_types():
    from leukviewer.core.analysis.results import Cell

    old = {"cell_id": "f.jpg#1", "image": "f.jpg", "bbox": [0, 0, 9, 9], "outline": [], "centroid": [4.5, 4.5],
           "area": 60, "blast_probability": 0.75, "label": "ALL", "partial": False, "model_name": "m",
           "model_version": "1", "model_sha256": "a" * 64}
    cell = Cell.from_dict(old)
    assert cell.cell_type == "blast" and cell.type_probabilities == {"lymphoid": 0.25, "blast": 0.75}
    assert Cell.from_dict(old | {"label": "UNCERTAIN"}).cell_type == "lymphoid"


def test_a_legacy_binary_model_keeps_its_outputs_and_adds_the_type(shared_data, tiny_model_dir, tmp_path):
    from leukviewer.__main__ import main
    from leukviewer.core.reports.tables import CELL_COLUMNS

    folder = tmp_path / "case"
    folder.mkdir()
    for p in sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:3]:
        shutil.copy(p, folder)
    out = tmp_path / "out"
    assert main(["batch", str(folder), "--out", str(out), "--model", str(tiny_model_dir), "--quiet"]) == 0
    rows = read_csv(out / "cells.csv")
    assert rows and list(rows[0]) == CELL_COLUMNS + ["cell_type", "reviewed_cell_type", "final_cell_type",
                                                     "p_lymphoid"]
    for row in rows:
        assert row["cell_type"] == {"ALL": "blast"}.get(row["label"], "lymphoid")
    case = json.loads((out / "summary.json").read_text())["case"]
    counted = [r for r in rows if r["partial"] == "false"]   # cells cut by the border are listed, not counted
    n = len(counted)
    assert case["white_cells"] == case["cells"] == n and case["non_white_cells"] == 0
    assert case["blasts"] + case["uncertain"] + case["normal"] == n
    assert case["blast_percentage"] == round(100 * sum(r["label"] == "ALL" for r in counted) / n, 2)
    assert set(case["cell_types"]) <= {"blast", "lymphoid"} and sum(case["cell_types"].values()) == n


# ------------------------------------------------------------------------------------------ review and the PDF

REVIEWER = "Dr. Ada Lovelace"


@pytest.fixture(scope="module")
def analysed(mixed_case, multiclass):
    from leukviewer.core.analysis.pipeline import analyze_folder

    return list(analyze_folder(mixed_case, multiclass))


def open_session(folder, info):
    from leukviewer.core.review.session import ReviewSession

    return ReviewSession.open(folder, {"name": info.name, "version": info.version, "sha256": info.sha256})


def test_reviewer_changes_a_cell_type_saved_audited_restored_and_counted(mixed_case, analysed, multiclass,
                                                                          tmp_path):
    from leukviewer.core.review.session import final_label, final_type, reviewed_counts

    cells = [c for r in analysed for c in r.cells if not c.partial]   # the counted cells
    debris, neutrophil, blast = cells[0], cells[1], cells[2]
    session = open_session(mixed_case, multiclass.info)
    session.set_type(debris.cell_id, "non_wbc", debris.label, REVIEWER)
    session.set_type(neutrophil.cell_id, "neutrophil", neutrophil.label, REVIEWER)
    session.set_type(blast.cell_id, "blast", blast.label, REVIEWER)
    with pytest.raises(ValueError, match="unknown cell type"):
        session.set_type(blast.cell_id, "platelet", blast.label, REVIEWER)

    reopened = open_session(mixed_case, multiclass.info)
    assert [final_type(c, reopened) for c in (debris, neutrophil, blast)] == ["non_wbc", "neutrophil", "blast"]
    assert [final_label(c, reopened) for c in (debris, neutrophil, blast)] == ["HEM", "HEM", "ALL"]
    audit = reopened.audit_entries()[-3:]
    assert [(e["cell_id"], e["new_type"], e["new"], e["action"], e["reviewer"]) for e in audit] == [
        (debris.cell_id, "non_wbc", "HEM", "type", REVIEWER), (neutrophil.cell_id, "neutrophil", "HEM", "type", REVIEWER),
        (blast.cell_id, "blast", "ALL", "type", REVIEWER)]

    before, after = reviewed_counts(cells, None), reviewed_counts(cells, reopened)
    assert after["white_cells"] == before["white_cells"] - 1 and after["non_white_cells"] == 1
    assert after["blasts"] == 1 and after["blast_percentage"] == round(100 / after["white_cells"], 2)
    assert after["cell_types"]["neutrophil"] == before["cell_types"].get("neutrophil", 0) + (
        neutrophil.cell_type != "neutrophil") - (debris.cell_type == "neutrophil") - (blast.cell_type == "neutrophil")
    assert after["reviewed"] == 3 and after["changed"] == 3

    # a label key after a type: ALL makes the cell a blast again, clearing the reviewer's contradicting type
    reopened.set_label(debris.cell_id, "ALL", debris.label, REVIEWER)
    assert (final_type(debris, reopened), reopened.reviewed_type(debris.cell_id)) == ("blast", None)
    # undo brings the reviewer's type back, redo takes it away again
    reopened.undo(REVIEWER)
    assert final_type(debris, reopened) == "non_wbc" and final_label(debris, reopened) == "HEM"
    reopened.redo(REVIEWER)
    assert final_type(debris, reopened) == "blast"
    # HEM on a cell the reviewer typed neutrophil keeps the type
    reopened.set_label(neutrophil.cell_id, "HEM", neutrophil.label, REVIEWER)
    assert final_type(neutrophil, reopened) == "neutrophil"


def test_pdf_has_a_differential_table_before_and_after_review(mixed_case, analysed, multiclass,
                                                              multiclass_model_dir, tmp_path):
    from pypdf import PdfReader

    from leukviewer.core.reports.export import export_case
    from leukviewer.core.review.session import reviewed_counts

    cells = [c for r in analysed for c in r.cells if not c.partial]   # the counted cells
    session = open_session(tmp_path / "review", multiclass.info)   # a fresh review of the same results
    session.set_type(cells[0].cell_id, "non_wbc", cells[0].label, REVIEWER)
    session.set_type(cells[1].cell_id, "basophil", cells[1].label, REVIEWER)
    export_case(analysed, session, multiclass.info, tmp_path / "out", formats={"pdf", "csv"}, folder=mixed_case,
                model_dir=multiclass_model_dir)
    text = " ".join(" ".join(page.extract_text().split()) for page in PdfReader(str(tmp_path / "out" / "report.pdf")).pages)
    assert "Differential count (white-cell types)" in text
    assert "Decision threshold P(blast) ≥ 0.500" in text and "Cell types Blast, Lymphocyte / normal lymphoid," in text
    s, r = reviewed_counts(cells, None), reviewed_counts(cells, session)

    def pct(counts, t):
        return f"{100 * counts['cell_types'].get(t, 0) / counts['white_cells']:.1f} %"

    for t, words in CELL_TYPES.items():   # every class of the model has a row
        if t == "non_wbc":
            row = f"{words} {s['cell_types'].get(t, 0)} not counted {r['cell_types'][t]} not counted"
        else:
            row = f"{words} {s['cell_types'].get(t, 0)} {pct(s, t)} {r['cell_types'].get(t, 0)} {pct(r, t)}"
        assert row in text
    assert f"White cells {s['white_cells']} 100.0 % {r['white_cells']} 100.0 %" in text
    assert "Blasts per 100 white cells" in text and "not white cells" in text
    assert "excluded from white_cells" in text
    # nobody reviewed (the batch PDF): the model's columns only
    export_case(analysed, None, multiclass.info, tmp_path / "unreviewed", formats={"pdf"}, folder=mixed_case,
                model_dir=multiclass_model_dir)
    text = " ".join(" ".join(page.extract_text().split())
                    for page in PdfReader(str(tmp_path / "unreviewed" / "report.pdf")).pages)
    assert "Cell type Suggested % of white cells Blast" in text and "After review" not in text
    assert f"White cells {s['white_cells']} 100.0 % " in text
    rows = read_csv(tmp_path / "out" / "cells.csv")
    by_id = {row["cell_id"].lstrip("'"): row for row in rows}
    assert (by_id[cells[0].cell_id]["reviewed_cell_type"], by_id[cells[0].cell_id]["final_cell_type"]) == (
        "non_wbc", "non_wbc")
    assert by_id[cells[1].cell_id]["final_cell_type"] == "basophil" and by_id[cells[1].cell_id]["final_label"] == "HEM"
