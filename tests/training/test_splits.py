import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.datasets import load_dataset
from training.splits import (LEAK_WARNING, LeakError, check_subject_disjoint, cross_validation_splits,
                             image_split, subject_folds, subject_split)


@pytest.fixture(scope="module")
def cnmc(cnmc_root):
    return load_dataset(cnmc_root)


def subjects_of(ds, idx):
    return {ds.samples[i].subject for i in idx}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_subject_split_never_shares_a_patient(cnmc, seed):
    split = subject_split(cnmc, 0.15, 0.15, seed)
    parts = [subjects_of(cnmc, p) for p in (split.train, split.val, split.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sorted(split.train + split.val + split.test) == list(range(len(cnmc.samples)))
    # every part has a healthy and a leukemic patient (there are 3 healthy subjects)
    for p in (split.train, split.val, split.test):
        assert {cnmc.samples[i].label for i in p} == {"ALL", "HEM"}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_leave_subjects_out_folds_hold_one_healthy_subject_each(cnmc, seed):
    folds = subject_folds(cnmc, 3, seed)
    assert sorted(i for f in folds for i in f) == list(range(len(cnmc.samples)))
    for f in folds:
        subjects = subjects_of(cnmc, f)
        assert len([s for s in subjects if s.startswith("H")]) == 1
        assert 3 <= len([s for s in subjects if not s.startswith("H")]) <= 4
    for split in cross_validation_splits(cnmc, 3, seed):
        check_subject_disjoint(cnmc, split.parts())


def test_a_split_that_shares_a_patient_is_refused(cnmc):
    split = subject_split(cnmc, seed=1)
    with pytest.raises(LeakError, match="subject"):
        check_subject_disjoint(cnmc, {"train": split.train + split.test[:1], "test": split.test})


def test_image_level_split_needs_the_flag_and_is_marked_leaky(cnmc):
    with pytest.raises(LeakError, match="allow_subject_leak"):
        image_split(cnmc)
    split = image_split(cnmc, allow_subject_leak=True)
    assert split.leaks_subjects
    desc = split.describe(cnmc)
    assert desc["warning"] == LEAK_WARNING and "overstate" in desc["warning"]
    assert subjects_of(cnmc, split.train) & subjects_of(cnmc, split.test)  # it really leaks
    assert abs(len(split.test) / len(cnmc.samples) - 0.20) < 0.03
