import shutil

import pytest

from training.datasets import DatasetError, load_dataset, subject_from_name
from training.preprocess import read_rgb

FIXTURE_SUBJECTS = {"16", "2", "23", "30", "32", "33", "34", "38", "44", "46", "51", "H10", "H14", "H22"}


def test_cnmc_fixtures_read_with_subjects_and_labels(cnmc_root):
    ds = load_dataset(cnmc_root)
    assert ds.layout == "cnmc"
    assert len(ds.samples) == 84
    assert set(ds.subjects()) == FIXTURE_SUBJECTS
    assert ds.class_names == ("HEM", "ALL")
    for s in ds.samples:
        assert s.label == ("HEM" if s.subject.startswith("H") else "ALL")
        assert s.path.parent.name == s.label.lower()
    assert ds.summary()["per_class"] == {"HEM": 18, "ALL": 66}


def test_subject_ids_from_cnmc_names():
    assert subject_from_name("UID_45_3_2_all") == "45"
    assert subject_from_name("UID_H10_100_1_hem") == "H10"
    assert subject_from_name("UID_h3_12_1_hem") == "H3"  # spelled in lower case upstream
    assert subject_from_name("cell_0001") is None


def test_original_bmps_read(shared_data):
    bmps = sorted((shared_data / "cnmc" / "original-bmp").glob("*.bmp"))
    assert len(bmps) == 2
    for p in bmps:
        img = read_rgb(p)
        assert img.shape == (450, 450, 3) and img.dtype.name == "uint8"
        assert img.max() > 100  # a stained cell, not an empty frame


def test_flat_all_hem_layout(tmp_path, cnmc_root):
    for cls in ("all", "hem"):
        (tmp_path / cls).mkdir()
        for p in sorted((cnmc_root / "training_data" / "fold_1" / cls).glob("*.png"))[:6]:
            shutil.copy(p, tmp_path / cls)
    ds = load_dataset(tmp_path)
    assert ds.layout == "cnmc" and len(ds.samples) == 12 and ds.subjects_known


def test_folder_per_class_layout_without_subjects_warns(shared_data):
    ds = load_dataset(shared_data / "pbc")
    assert ds.layout == "folder_per_class"
    assert len(ds.class_names) == 8 and "neutrophil" in ds.class_names
    assert not ds.subjects_known
    assert any("own subject" in n for n in ds.notes)


def test_byte_identical_duplicates_dropped_before_split(tmp_path, cnmc_root):
    src = cnmc_root / "training_data" / "fold_1"
    for cls in ("all", "hem"):
        shutil.copytree(src / cls, tmp_path / cls)
    first = sorted((tmp_path / "all").glob("*.png"))[0]
    shutil.copy(first, tmp_path / "all" / "UID_16_999_1_all.png")
    shutil.copy(first, tmp_path / "all" / "UID_16_998_1_all.png")
    ds = load_dataset(tmp_path)
    assert ds.duplicates_dropped == 2 and len(ds.samples) == 84
    assert "2 byte-identical" in ds.summary()["notes"][0]


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        load_dataset(tmp_path)


def test_one_class_only_is_a_clear_error(tmp_path, cnmc_root):
    shutil.copytree(cnmc_root / "training_data" / "fold_1" / "all", tmp_path / "all")
    with pytest.raises(DatasetError, match="only one class"):
        load_dataset(tmp_path)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope")
