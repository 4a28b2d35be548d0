"""Each image's physical scale: where it comes from, and that an untrusted one is flagged."""
import numpy as np
import pytest
from PIL import Image

from leukviewer.core.analysis.imageio import read_image
from leukviewer.core.analysis.scale import (SCALE_ASSUMED, SCALE_CNMC, SCALE_METADATA, SCALE_RED_CELLS, SCALE_USER,
                                   image_scale, metadata_um_per_px)


@pytest.fixture(scope="module")
def field_path(shared_data):
    return sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[0]


def test_a_smear_field_is_measured_by_its_red_cells(field_path):
    scale = image_scale(read_image(field_path), "smear_field", field_path)
    # BCCD red cells are ~80 px across: 7.5 µm / 80 px
    assert scale.source == SCALE_RED_CELLS and scale.trusted
    assert 0.07 < scale.um_per_px < 0.12


def test_red_cells_packed_edge_to_edge_are_measured_not_the_bright_dots_inside_them(shared_data):
    # BCCD 00043: a higher magnification than the other BCCD fields, red cells ~100 px across and pressed together,
    # so the usual preview finds too few outlines; a far larger preview found the ~25-px refractile dots inside the
    # cells instead (a scale 4x too coarse: every white cell looked 4x too big to the model and the localiser)
    from leukviewer.core.analysis.localize import estimate_rbc_diameter

    rgb = read_image(shared_data / "bccd" / "JPEGImages" / "BloodImage_00043.jpg")
    assert 80 < estimate_rbc_diameter(rgb) < 120


def test_the_users_setting_wins_and_crops_on_black_use_the_cnmc_calibration(field_path, cnmc_root):
    rgb = read_image(field_path)
    assert image_scale(rgb, "smear_field", field_path, user_um_per_px=0.2) == \
        image_scale(rgb, "smear_field", None, 0.2)
    assert image_scale(rgb, "smear_field", field_path, user_um_per_px=0.2).source == SCALE_USER
    crop = sorted((cnmc_root / "training_data" / "fold_1" / "hem").glob("*.png"))[0]
    assert image_scale(read_image(crop), "single_cell", crop).source == SCALE_CNMC


def test_tiff_resolution_is_read_and_screen_dpi_ignored(field_path, tmp_path):
    rgb = read_image(field_path)
    tif = tmp_path / "field.tif"
    # 40,000 pixels per centimetre = 0.25 µm per pixel
    Image.fromarray(rgb).save(tif, tiffinfo={282: 40000.0, 283: 40000.0, 296: 3})
    assert metadata_um_per_px(tif) == pytest.approx(0.25)
    scale = image_scale(rgb, "smear_field", tif)
    assert scale.source == SCALE_METADATA and scale.um_per_px == pytest.approx(0.25)
    jpg = tmp_path / "field.jpg"
    Image.fromarray(rgb).save(jpg, dpi=(96, 96))
    assert metadata_um_per_px(jpg) is None
    screen = tmp_path / "screen.tif"
    Image.fromarray(rgb).save(screen, dpi=(72, 72))  # 72 dpi = 353 µm per pixel: not a microscope
    assert metadata_um_per_px(screen) is None


def test_a_field_without_measurable_red_cells_is_flagged(tmp_path):
    blank = np.full((300, 400, 3), 235, np.uint8)
    scale = image_scale(blank, "smear_field")
    assert scale.source == SCALE_ASSUMED and not scale.trusted
