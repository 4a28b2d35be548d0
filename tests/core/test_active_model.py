"""One answer to "which model?" (core/model/active.py) and one description of a model (core/model/descriptor.py),
read alike by the classifier, the registry, the reports and the CLI."""
import json
import shutil

import pytest

from leukviewer.core.model.active import SOURCES, ResolvedModel, resolve_model
from leukviewer.core.model.descriptor import ModelDescriptor
from leukviewer.core.model.registry import ModelRegistry
from training.modelfolder import write_manifest


def variant(tiny_model_dir, dest, name, version):
    """The tiny model under another name and version, sealed again, with a model card of its own."""
    shutil.copytree(tiny_model_dir, dest)
    meta = json.loads((dest / "model.json").read_text())
    meta.update(name=name, version=version)
    (dest / "model.json").write_text(json.dumps(meta))
    (dest / "MODEL_CARD.md").write_text(f"# Model card: {name} {version}\n")
    write_manifest(dest)
    return dest


@pytest.fixture
def setup(tiny_model_dir, tmp_path, monkeypatch):
    """A bundled model, an added model made active in the registry, two folders to name explicitly."""
    monkeypatch.delenv("LEUKVIEWER_MODEL", raising=False)
    shutil.copytree(tiny_model_dir, tmp_path / "assets" / "models" / "leukviewer-b3")
    monkeypatch.setattr("leukviewer.core.model.classifier.assets_dir", lambda: tmp_path / "assets")
    registry = ModelRegistry()
    lab = registry.add(variant(tiny_model_dir, tmp_path / "lab", "lab", "2"))
    registry.activate(lab.name)
    return registry, lab.folder, tmp_path / "given", tmp_path / "from-env", tmp_path / "remembered"


# (--model given, $LEUKVIEWER_MODEL set, the window's remembered folder, the registry read) -> what decides
PRECEDENCE = [
    (True, True, True, True, "--model"),
    (False, True, True, True, "$LEUKVIEWER_MODEL"),
    (False, False, True, True, "settings"),
    (False, False, False, True, "registry active"),
    (False, False, False, False, "bundled"),
]


@pytest.mark.parametrize("explicit, env, remembered, use_registry, source", PRECEDENCE)
def test_the_model_used_follows_one_precedence(setup, monkeypatch, explicit, env, remembered, use_registry, source):
    registry, lab, given, from_env, kept = setup
    if env:
        monkeypatch.setenv("LEUKVIEWER_MODEL", str(from_env))
    resolved = resolve_model(given if explicit else None, kept if remembered else None,
                             registry if use_registry else False)
    expected = {"--model": given, "$LEUKVIEWER_MODEL": from_env, "settings": kept, "registry active": lab,
                "bundled": registry.bundled_folder}[source]
    assert resolved == ResolvedModel(expected, source, None) and source in SOURCES


def test_a_broken_registry_falls_back_to_the_bundled_model_and_says_why(setup):
    registry, *_ = setup
    registry.active_file.write_text("{ not json")
    resolved = resolve_model(registry=registry)
    assert resolved.bundled and resolved.folder == registry.bundled_folder and "is damaged" in resolved.note

    class Unreadable:
        def active(self):
            raise PermissionError("models/active.json: permission denied")

    resolved = resolve_model(registry=Unreadable())
    assert resolved.bundled and "cannot be read" in resolved.note and "permission denied" in resolved.note


def test_without_a_folder_the_report_uses_the_registry_active_model(setup, cnmc_root, tmp_path):
    """``leukviewer report FOLDER`` (``load_case``) without --model reports with the model the window uses."""
    from leukviewer.core.reports.export import load_case

    registry, lab, *_ = setup
    case_folder = tmp_path / "case"
    case_folder.mkdir()
    for image in sorted((cnmc_root / "training_data" / "fold_1" / "all").glob("*.png"))[:2]:
        shutil.copy(image, case_folder / image.name)
    case = load_case(case_folder)
    assert (case.model.name, case.model.version, case.model.folder) == ("lab", "2", str(lab))
    assert {c.model_name for c in case.cells()} == {"lab"}


def test_classifier_registry_and_report_describe_a_model_with_the_same_descriptor(setup):
    from leukviewer.core.model.classifier import CellClassifier
    from leukviewer.core.reports.export import make_case

    registry, lab, *_ = setup
    described = ModelDescriptor.from_folder(lab)
    classifier = CellClassifier(lab)
    assert classifier.info == described == registry.active().descriptor
    assert (described.name, described.version, described.folder) == ("lab", "2", str(lab))
    assert described.class_names == tuple(classifier.model.class_names) and described.cell_types
    assert described.manifest_sha256 and described.integrity_warning is None
    assert described.card.startswith("# Model card: lab 2")
    assert make_case([], None, classifier.info, folder=lab).model == described
    assert ModelDescriptor.of(described.identity(), lab) == described   # a name and hash, completed from the folder


def test_batch_without_model_analyses_with_the_registry_active_model(setup, cnmc_root, tmp_path, capsys):
    """``leukviewer batch`` and the window agree on the model: summary.json names the active model."""
    from leukviewer.__main__ import main

    registry, lab, *_ = setup
    case_folder = tmp_path / "case"
    case_folder.mkdir()
    image = sorted((cnmc_root / "training_data" / "fold_1" / "hem").glob("*.png"))[0]
    shutil.copy(image, case_folder / image.name)
    assert main(["batch", str(case_folder), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    model = json.loads((tmp_path / "out" / "summary.json").read_text())["model"]
    assert (model["name"], model["version"]) == ("lab", "2")
    assert model["manifest_sha256"] == ModelDescriptor.from_folder(lab).manifest_sha256
