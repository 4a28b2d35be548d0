"""Reading ahead in threads (the batch CLI's default) gives exactly the results of reading one image after another,
on real crops and smear fields mixed, smear fields localised in parallel included, and stops as promptly."""
import threading

import pytest
from PIL import Image

from leukviewer.core.analysis.imageio import read_image
from leukviewer.core.model.classifier import CellClassifier
from leukviewer.core.analysis.pipeline import analyze_images


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return CellClassifier(tiny_model_dir, backend="tf", batch_size=16)


def cells_of(results):
    return [(r.image, r.status, r.kind, r.um_per_px, r.scale_source,
             [(c.bbox, c.area, c.blast_probability, c.label, c.cell_type) for c in r.cells]) for r in results]


def test_reading_ahead_in_threads_gives_the_same_cells_in_the_same_order(classifier, shared_data, tmp_path):
    crops = sorted(shared_data.glob("cnmc/training_data/fold_1/*/*.png"))[::3]
    fields = sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:3]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    images = crops[:14] + fields[:2] + [broken] + crops[14:] + fields[2:]
    one_by_one = list(analyze_images(images, shared_data, classifier))
    ahead = list(analyze_images(images, shared_data, classifier, readers=3))
    assert cells_of(ahead) == cells_of(one_by_one)
    assert sum(len(r.cells) for r in ahead if r.kind == "single_cell") == len(crops)
    assert any(r.kind == "smear_field" and r.cells for r in ahead) and "unreadable" in ahead[16].status


def test_smear_fields_localised_in_parallel_keep_the_folders_red_cell_check_in_file_order(classifier, shared_data,
                                                                                         tmp_path):
    """Fields are localised several at once, but each field's red-cell measure is still checked against the
    median of the fields before it: the fifth, a 240-px corner of a field, holds too few red cells to measure
    them, and takes the folder's."""
    bccd = shared_data / "bccd" / "JPEGImages"
    names = ["00010", "00020", "00031", "00034", "00043", "00001", "00002", "00003"]
    fields = []
    for n in names:
        if not (bccd / f"BloodImage_{n}.jpg").exists():
            continue
        fields.append(tmp_path / f"BloodImage_{n}.png")
        if n == "00043":   # the corner with its lymphocyte, saved losslessly
            Image.fromarray(read_image(bccd / f"BloodImage_{n}.jpg")[240:480, 400:640]).save(fields[-1])
        else:
            fields[-1] = fields[-1].with_suffix(".jpg")
            fields[-1].symlink_to(bccd / f"BloodImage_{n}.jpg")
    one_by_one = list(analyze_images(fields, tmp_path, classifier))
    ahead = list(analyze_images(fields, tmp_path, classifier, readers=3))
    assert cells_of(ahead) == cells_of(one_by_one)
    assert [r.scale_source for r in ahead][:5] == ["red_cells"] * 4 + ["folder_red_cells"]
    own = sorted(r.um_per_px for r in ahead[:4])
    assert ahead[4].cells and own[1] <= ahead[4].um_per_px <= own[2]   # the median of the four before it
    assert sum(len(r.cells) for r in ahead) >= len(fields) - 1


def test_reading_ahead_stops_after_the_images_in_flight(classifier, shared_data):
    crops = sorted(shared_data.glob("cnmc/training_data/fold_1/*/*.png"))
    seen = []
    results = list(analyze_images(crops, shared_data, classifier, readers=2, max_pending_images=1,
                                  on_progress=lambda n, total, r: seen.append(n), should_stop=lambda: len(seen) >= 5))
    assert 5 <= len(results) < 12
    assert not [t for t in threading.enumerate() if t.name.startswith("leukviewer-read")]
