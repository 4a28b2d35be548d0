"""Odd images: 16-bit and 8-bit greyscale, a blank field, a tiny field, a field with no white cell. Each is
analysed or refused with its reason; an image without cells always says why it may be so."""
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from leukviewer.core.analysis.imageio import read_image
from leukviewer.core.analysis.pipeline import analyze_images
from leukviewer.core.analysis.results import STATUS_NO_CELLS, STATUS_UNREADABLE


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    from leukviewer.core.model.classifier import CellClassifier

    return CellClassifier(tiny_model_dir, backend="tf")


@pytest.fixture(scope="module")
def field(shared_data):
    path = sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[0]
    return path, read_image(path)


def analyse(classifier, folder, *names):
    results = list(analyze_images([folder / n for n in names], folder, classifier))
    return {r.image: r for r in results}


def test_16_bit_greyscale_is_scaled_by_its_real_range_and_refused_with_the_reason(classifier, field, tmp_path):
    _, rgb = field
    grey12 = (rgb.astype(np.float32).mean(axis=2) * (4095 / 255)).astype(np.uint16)   # a 12-bit camera in 16 bits
    Image.fromarray(grey12).save(tmp_path / "grey16.tif")
    Image.fromarray(rgb.mean(axis=2).astype(np.uint8)).save(tmp_path / "grey8.png")
    seen = read_image(tmp_path / "grey16.tif")           # scaled by the 12 bits used, not the 16 possible
    assert abs(float(seen.mean()) - float(rgb.mean(axis=2).mean())) < 2, seen.mean()
    results = analyse(classifier, tmp_path, "grey16.tif", "grey8.png")
    for name in ("grey16.tif", "grey8.png"):
        status = results[name].status
        assert status.startswith(f"{STATUS_UNREADABLE}: the image is greyscale"), status
        assert "scan or export the slide in colour" in status and not results[name].cells


def test_every_image_without_a_cell_says_why(classifier, field, shared_data, tmp_path):
    path, rgb = field
    Image.fromarray(np.full((480, 640, 3), (228, 200, 214), np.uint8)).save(tmp_path / "blank.png")
    Image.fromarray(np.full((480, 640, 3), (18, 10, 14), np.uint8)).save(tmp_path / "dark.png")   # lamp off
    # a field away from its white cell (the BCCD box), cut to 100 px: too small to find one
    box = ET.parse(str(path).replace("JPEGImages", "Annotations").replace(".jpg", ".xml")).find(
        ".//object[name='WBC']/bndbox")
    xmin = int(box.find("xmin").text)
    xmax = int(box.find("xmax").text)
    x0 = 0 if xmin > 110 else min(rgb.shape[1] - 100, xmax + 10)
    Image.fromarray(np.ascontiguousarray(rgb[:100, x0:x0 + 100])).save(tmp_path / "tiny.png")
    results = analyse(classifier, tmp_path, "blank.png", "dark.png", "tiny.png")
    reasons = {}
    for name, result in results.items():
        assert not result.cells, name
        assert result.status.startswith(f"{STATUS_NO_CELLS}: "), result.status
        reasons[name] = result.status[len(STATUS_NO_CELLS) + 2:]
    assert reasons["blank.png"].startswith("the image is nearly uniform")
    assert reasons["dark.png"].startswith("the image is very dark")
    assert reasons["tiny.png"].startswith("the image is only 100 x 100 pixels")


def test_a_colour_field_is_not_mistaken_for_greyscale(classifier, field, tmp_path):
    path, rgb = field
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    result = analyse(classifier, tmp_path, "colour.png")["colour.png"]
    assert result.status == "ok" and result.cells


def test_a_field_too_large_to_analyse_whole_is_tiled_with_cells_found_once(shared_data, monkeypatch):
    """A 4x4 mosaic of real fields, analysed whole and then as if it were too large for that (tiles with seams
    across cells): the same white cells, none twice."""
    import leukviewer.core.analysis.localize as localize

    fields = [read_image(p) for p in sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:16]]
    mosaic = np.ascontiguousarray(np.concatenate(
        [np.concatenate(fields[i * 4:(i + 1) * 4], axis=1) for i in range(4)], axis=0))
    whole = localize.find_white_cells(mosaic)
    monkeypatch.setattr(localize, "MAX_WORK_PIXELS", 200_000)     # as if the mosaic were a 100+ MP field
    monkeypatch.setattr(localize, "TILE_WORK_SIDE", 300)          # ... cut into 12 overlapping tiles
    tiled = localize.find_white_cells(mosaic)
    assert len(whole) >= 16 and abs(len(tiled) - len(whole)) <= 1
    a, b = np.array([r.centroid for r in whole]), np.array([r.centroid for r in tiled])
    distance = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    assert (distance.min(axis=1) < 5).mean() >= 0.9                # the same cells, at the same places
    pairs = np.sqrt(((b[:, None] - b[None]) ** 2).sum(-1)) + np.eye(len(b)) * 1e9
    assert pairs.min() > 30                                         # no cell found twice across a seam
    assert sum(r.partial for r in tiled) == sum(r.partial for r in whole)   # seams do not make cells "partial"


def test_the_red_cells_of_a_huge_field_are_measured_at_full_resolution(shared_data, monkeypatch):
    """A field too large for a whole-image preview (here: the preview limit lowered so a 5 MP mosaic counts as
    huge) is measured on full-resolution windows: the red-cell diameter of its fields, not of a blurred preview
    (which made a real 177 MP field read as having no measurable red cells, hence no white cells at all)."""
    import cv2

    import leukviewer.core.analysis.localize as localize
    import leukviewer.core.analysis.localize_stain as localize_stain

    fields = [cv2.resize(read_image(p), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
              for p in sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))]
    truth = float(np.median([d for d in map(localize.estimate_rbc_diameter, fields[:10]) if d]))
    mosaic = np.ascontiguousarray(np.concatenate(
        [np.concatenate([fields[(i * 8 + j) % len(fields)] for j in range(8)], axis=1) for i in range(8)], axis=0))
    monkeypatch.setattr(localize_stain, "MAX_PREVIEW_PIXELS", 1_000_000)
    measured = localize.estimate_rbc_diameter(mosaic)
    assert measured is not None and abs(measured / truth - 1) < 0.05, (measured, truth)
