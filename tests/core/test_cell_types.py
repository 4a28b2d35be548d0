"""Multi-class (white-cell type) model folders in the app: classifier, results, reports, review.

The multi-class fixture is a real model folder from the training library (tiny network, one epoch on C-NMC and
PBC images sorted by cell type); its predictions are meaningless, the paths they take are the app's.
"""
import json
import shutil

import numpy as np
import pytest

from leukviewer.core.classifier import (LABEL_BLAST, LABEL_NORMAL, LABEL_UNCERTAIN, CellClassifier,
                                        blast_class_of, cell_type_for)
from leukviewer.core.imageio import read_image
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
    with pytest.raises(ModelFolderError, match=r"no-blast is not a blast classifier .*HEM and ALL, or white-cell"):
        CellClassifier(folder)
