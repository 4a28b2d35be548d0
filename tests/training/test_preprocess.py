import numpy as np
import pytest

from training.augment import AugmentConfig, augment, dihedral_views
from training.preprocess import PreprocessConfig, crop_to_cell, nonblack_bbox, preprocess_cell, read_rgb


@pytest.fixture(scope="module")
def cells(cnmc_root):
    paths = sorted((cnmc_root / "training_data" / "fold_1").glob("*/*.png"))
    return [read_rgb(p) for p in paths[::7]]


def test_crop_keeps_the_whole_cell_and_removes_the_black_frame(cells):
    for img in cells:
        x, y, w, h = nonblack_bbox(img)
        crop = crop_to_cell(img, margin=0)
        assert crop.shape[:2] == (h, w)
        cell_pixels = (img.max(axis=2) > 12)
        inside = cell_pixels[y:y + h, x:x + w].sum()
        assert inside >= 0.99 * cell_pixels.sum()      # the cell (largest region) is all kept
        assert crop.shape[0] * crop.shape[1] < 0.6 * img.shape[0] * img.shape[1]  # the frame is gone


def test_preprocess_gives_the_network_input(cells):
    cfg = PreprocessConfig(size=128)
    for img in cells:
        out = preprocess_cell(img, cfg)
        assert out.shape == (128, 128, 3) and out.dtype == np.uint8
        assert out[0, 0].max() <= 12 or out.max(axis=2).min() > 12   # corners stay background
        # contrast is stretched over the cell
        assert out.max() >= 240
    assert np.array_equal(preprocess_cell(cells[0], cfg), preprocess_cell(cells[0], cfg))


def test_preprocess_parameters_round_trip():
    cfg = PreprocessConfig(size=96, low_percentile=2.0)
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg


def test_augmentation_is_seeded_and_keeps_background_black(cells):
    x = preprocess_cell(cells[1], PreprocessConfig(size=64))
    cfg = AugmentConfig()
    a = augment(x, np.random.default_rng(5), cfg)
    b = augment(x, np.random.default_rng(5), cfg)
    c = augment(x, np.random.default_rng(6), cfg)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == x.shape and a.dtype == np.uint8
    assert a[0, 0].max() == 0 and a[-1, -1].max() == 0


def test_dihedral_views_are_the_eight_symmetries(cells):
    batch = np.stack([preprocess_cell(c, PreprocessConfig(size=32)) for c in cells[:2]])
    views = dihedral_views(batch)
    assert len(views) == 8
    assert len({v.tobytes() for v in views}) == 8


def test_fixed_canvas_keeps_cell_size_where_the_paper_crop_hides_it():
    from training.preprocess import PreprocessConfig, preprocess_cell

    def disc(radius):
        import cv2
        img = np.zeros((450, 450, 3), np.uint8)
        cv2.circle(img, (225, 225), radius, (150, 60, 170), -1)
        img[225, 225] = (90, 20, 120)          # some contrast for the normalisation
        return img

    def width(out):
        cols = np.where((out.max(axis=2) > 12).any(axis=0))[0]
        return cols[-1] - cols[0] + 1

    fixed = PreprocessConfig.fixed_scale(128, 352)
    small, large = preprocess_cell(disc(60), fixed), preprocess_cell(disc(120), fixed)
    assert small.shape == large.shape == (128, 128, 3)
    assert abs(width(large) / width(small) - 2.0) < 0.1          # twice as wide stays twice as wide
    fill = PreprocessConfig(size=128)
    assert abs(width(preprocess_cell(disc(120), fill)) - width(preprocess_cell(disc(60), fill))) <= 6   # only the 4 px margin differs
    huge = preprocess_cell(disc(220), fixed)                       # larger than the canvas: shrinks to fit
    assert width(huge) <= 128
    assert PreprocessConfig.from_dict(fixed.to_dict()) == fixed


def test_physical_scale_gives_one_cell_one_size_whatever_the_camera(cells):
    """The same cell photographed at half the magnification (half the pixels per µm) reaches the network at the
    same size when each image's scale is given; the pixel canvas of the 1.x models shrinks it by half."""
    import cv2

    from training.scale import CNMC_UM_PER_PX

    um_cfg = PreprocessConfig.physical_scale(128, 23.0)
    px_cfg = PreprocessConfig.fixed_scale(128, 352)
    for img in cells[:4]:
        half = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
        full_um = preprocess_cell(img, um_cfg, CNMC_UM_PER_PX)
        half_um = preprocess_cell(half, um_cfg, 2 * CNMC_UM_PER_PX)
        cell_full, cell_half = (full_um.max(axis=2) > 12).sum(), (half_um.max(axis=2) > 12).sum()
        assert abs(cell_half / cell_full - 1.0) < 0.05
        full_px, half_px = preprocess_cell(img, px_cfg), preprocess_cell(half, px_cfg)
        assert (half_px.max(axis=2) > 12).sum() / (full_px.max(axis=2) > 12).sum() < 0.35
    # at the C-NMC calibration the physical canvas is the 1.x models' 352-pixel canvas
    assert abs(23.0 / CNMC_UM_PER_PX - 352) < 2


def test_physical_scale_needs_the_images_scale(cells):
    cfg = PreprocessConfig.physical_scale(128, 23.0)
    assert cfg.needs_scale and abs(cfg.model_um_per_px - 23.0 / 128) < 1e-9
    assert PreprocessConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="micrometres per pixel"):
        preprocess_cell(cells[0], cfg)
