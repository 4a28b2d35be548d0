import numpy as np
import pytest

from leukviewer.core.model.classifier import CellClassifier
from leukviewer.core.model.gradcam import GradCam, cell_heatmap, map_to_crop
from leukviewer.core.analysis.imageio import read_image
from leukviewer.core.analysis.pipeline import locate
from training.preprocess import PreprocessConfig


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return CellClassifier(tiny_model_dir)


def test_gradcam_of_real_cells_is_a_finite_non_constant_map_the_size_of_the_crop(classifier, shared_data):
    image = sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[0]
    _, regions, crops = locate(read_image(image))
    assert crops
    cam = GradCam(classifier.model.network)
    for crop in crops:
        maps = [cell_heatmap(classifier, crop, label, cam=cam) for label in ("ALL", "HEM")]
        for heat in maps:
            assert heat.shape == crop.shape[:2] and heat.dtype == np.float32
            assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
        # Grad-CAM keeps only positive evidence, so one class's map may be empty; not both (the tiny test
        # network's evidence for ALL alone can be all negative).
        assert any(heat.max() > heat.min() for heat in maps)
    # Per-class maps differ: the map explains the chosen class.
    prepared = classifier.prepare(crops[0])
    assert cam(prepared, 0).shape == prepared.shape[:2]
    assert not np.allclose(cam(prepared, 0), cam(prepared, 1))


def test_map_follows_the_cell_not_the_black_frame():
    crop = np.zeros((100, 60, 3), np.uint8)
    crop[20:80, 10:50] = 200           # the cell; everything else is frame
    heat = map_to_crop(np.ones((32, 32), np.float32), crop, PreprocessConfig(size=32, crop_margin=0))
    assert heat.shape == (100, 60)
    assert heat[20:80, 10:50].min() > 0.9 and heat[:20].max() == 0 and heat[:, :10].max() == 0


def test_network_without_backbone_is_a_clear_error():
    import keras

    from leukviewer.core.model.gradcam import GradCamError

    inp = keras.Input((8, 8, 3))
    net = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))
    with pytest.raises(GradCamError, match="backbone"):
        GradCam(net)
