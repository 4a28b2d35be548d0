"""The training steps that need the app's own image code, run by the app (``leukviewer evaluate``, ``leukviewer
cells``): the training library never imports the app, so its own commands refuse these cases with a pointer."""
import json

import numpy as np
import pytest

from leukviewer.__main__ import main as leukviewer_main
from training.cli import main as training_main


@pytest.fixture(scope="module")
def physical_scale_model(tiny_model_dir, tmp_path_factory):
    """The tiny model folder, preprocessing on the 23 µm canvas of the white-cell-type models (needs each image's
    scale)."""
    from training.modelfolder import load_model_folder, read_meta, save_model_folder
    from training.preprocess import PreprocessConfig

    meta = {k: v for k, v in read_meta(tiny_model_dir).items() if k not in ("weights", "format", "format_version")}
    meta["preprocessing"] = PreprocessConfig.physical_scale(32, 23.0).to_dict()
    return save_model_folder(load_model_folder(tiny_model_dir).network,
                             tmp_path_factory.mktemp("physical") / "model", meta)


@pytest.fixture(scope="module")
def fields_and_crops(shared_data, tmp_path_factory):
    """One folder per class: PBC fields (red cells around the cell) as HEM, C-NMC crops on black as ALL."""
    root = tmp_path_factory.mktemp("labelled")
    for label, folder, pattern in (("HEM", "pbc/lymphocyte", "*.jpg"),
                                   ("ALL", "cnmc/training_data/fold_1/all", "*.png")):
        (root / label).mkdir()
        for image in sorted((shared_data / folder).glob(pattern))[:3]:
            (root / label / image.name).symlink_to(image)
    return root


def test_the_app_measures_each_image_scale_as_it_does_when_it_analyses(shared_data):
    from leukviewer.core.analysis.imageio import read_image
    from leukviewer.core.analysis.localize import estimate_rbc_diameter
    from leukviewer.core.analysis.scale import measured_um_per_px
    from training.scale import CNMC_UM_PER_PX, um_per_px_from_rbc

    field = read_image(next((shared_data / "pbc" / "lymphocyte").glob("*.jpg")))
    crop = read_image(next((shared_data / "cnmc" / "training_data" / "fold_1" / "hem").glob("*.png")))
    assert measured_um_per_px(field) == pytest.approx(um_per_px_from_rbc(estimate_rbc_diameter(field)))
    assert measured_um_per_px(crop) == CNMC_UM_PER_PX


def test_a_physical_scale_model_is_evaluated_by_the_app_and_refused_by_training_alone(
        physical_scale_model, fields_and_crops, tmp_path, capsys):
    options = ["--model", str(physical_scale_model), "--data", str(fields_and_crops), "--out", str(tmp_path / "e")]
    assert training_main(["evaluate", *options]) == 2
    assert "python -m leukviewer evaluate" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()

    assert leukviewer_main(["evaluate", *options]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == 6 and metrics["data"]["per_class"] == {"ALL": 3, "HEM": 3}


def test_the_cell_table_is_built_by_the_app_in_worker_processes(shared_data, tmp_path, capsys):
    root = tmp_path / "staged"
    for folder, pattern, n in (("cnmc/training_data/fold_1/all", "*.png", 1),
                               ("cnmc/training_data/fold_1/hem", "*.png", 1), ("pbc/lymphocyte", "*.jpg", 2),
                               ("bccd/JPEGImages", "BloodImage_00010.jpg", 1),
                               ("bccd/Annotations", "BloodImage_00010.xml", 1)):
        (root / folder).mkdir(parents=True)
        for source in sorted((shared_data / folder).glob(pattern))[:n]:
            (root / folder / source.name).symlink_to(source)
    out = tmp_path / "cells.npz"
    options = ["--data", str(root), "--out", str(out), "--input-size", "32", "--workers", "2"]
    assert training_main(["wbc", "cells", *options]) == 2
    assert "python -m leukviewer cells" in capsys.readouterr().err and not out.exists()

    assert leukviewer_main(["cells", *options]) == 0
    table = np.load(out)
    summary = json.loads(str(table["summary"]))
    assert summary["errors"] == [] and summary["images"] == 5
    assert summary["per_source"]["cnmc"] == {"blast": 1, "lymphoid": 1}
    assert summary["per_source"]["pbc"] == {"lymphoid": 2}
    assert summary["per_source"]["bccd"]["wbc"] >= 1 and summary["per_source"]["bccd"]["non_wbc"] >= 2
    assert table["x"].shape[1:] == (32, 32, 3)
    assert set(zip(table["source"], table["scale_source"])) == {
        ("cnmc", "cnmc_calibration"), ("pbc", "red_cells"), ("bccd", "red_cells")}
