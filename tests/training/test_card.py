"""The model card says when its 'for contrast' figure comes from another recipe than its cross-validation."""
from training.card import render_card

META = {"name": "m", "version": "1", "class_names": ["ALL", "HEM"], "positive_class": "ALL"}
CV_CONFIG = {"backbone": "EfficientNetB3", "init": "model", "parent_model": "/models/pbc", "epochs": 1,
             "lowres_epochs": 5, "split": "cv", "cv_fold": 2}
CV = {"config": CV_CONFIG, "folds": [], "mean": {"weighted_f1": 0.8}, "sd": {"weighted_f1": 0.03}}
PAPER = {"weighted_f1": 0.82, "roc_auc": 0.86}


def test_card_flags_an_image_split_run_of_another_recipe():
    other = {**CV_CONFIG, "init": "scratch", "parent_model": None, "lowres_epochs": 10, "split": "image",
             "cv_fold": 0}
    card = render_card(META, cv_summary=CV, paper_protocol=PAPER, paper_config=other)
    assert "Not like for like" in card
    assert "init: 'scratch' vs 'model'" in card and "lowres_epochs: 10 vs 5" in card
    line = card.split("Not like for like")[1].split("\n")[0]
    assert "cv_fold" not in line and "split: " not in line        # how the data are split is not the recipe


def test_card_is_quiet_when_the_image_split_run_used_the_same_recipe():
    same = {**CV_CONFIG, "split": "image", "cv_fold": 0}
    card = render_card(META, cv_summary=CV, paper_protocol=PAPER, paper_config=same)
    assert "For contrast" in card and "Not like for like" not in card
