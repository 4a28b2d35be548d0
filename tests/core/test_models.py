"""The model registry: the bundled model first and untouchable, verified adds, the active model and rollback."""
import json
import shutil

import pytest

from leukviewer.core.model.active import ResolvedModel, resolve_model
from leukviewer.core.model.registry import BUNDLED, ModelRegistry, RegistryError, app_model_folder, models_dir
from training.modelfolder import write_manifest


def variant(tiny_model_dir, dest, name, version, classes=None):
    """Another valid model folder: the tiny model's weights with its own name (its manifest rewritten, as
    ``python -m training manifest`` does)."""
    shutil.copytree(tiny_model_dir, dest)
    meta = json.loads((dest / "model.json").read_text())
    meta.update(name=name, version=version)
    if classes:
        meta["class_names"] = classes
    (dest / "model.json").write_text(json.dumps(meta))
    (dest / "MODEL_CARD.md").write_text(f"# Model card: {name} {version}\n")
    write_manifest(dest)
    return dest


@pytest.fixture
def registry(tiny_model_dir, tmp_path):
    bundled = tmp_path / "assets" / "leukviewer-b3"
    shutil.copytree(tiny_model_dir, bundled)
    return ModelRegistry(bundled=bundled)


def test_models_live_in_the_user_data_dir_and_the_bundled_model_is_listed_first(registry):
    assert registry.directory == models_dir()
    assert str(models_dir()).startswith(__import__("os").environ["LEUKVIEWER_DATA_DIR"])
    models = registry.models()
    assert [m.name for m in models] == [BUNDLED] and models[0].bundled and models[0].usable
    assert registry.active_name() == BUNDLED and app_model_folder(registry.active()) is None
    assert "Model card" in models[0].card_text()  # rendered from model.json when there is no MODEL_CARD.md


def test_add_activate_rollback_with_history_and_the_bundled_model_untouched(folder_digest, registry,
                                                                          tiny_model_dir, tmp_path):
    before = folder_digest(registry.bundled_folder)
    a = registry.add(variant(tiny_model_dir, tmp_path / "a", "lab-model", "1.0.0"))
    b = registry.add(variant(tiny_model_dir, tmp_path / "b", "lab-model", "1.1.0"), move=True)
    assert not (tmp_path / "b").exists() and (tmp_path / "a").is_dir()        # moved vs copied
    assert [m.name for m in registry.models()] == [BUNDLED, "lab-model-1.0.0", "lab-model-1.1.0"]
    assert a.folder.parent == registry.directory and a.card_text().startswith("# Model card: lab-model 1.0.0")
    assert registry.active_name() == BUNDLED  # adding never activates

    registry.activate(a.name)
    registry.activate(b.name)
    assert registry.active().folder == b.folder and app_model_folder(registry.active()) == b.folder
    record = json.loads(registry.active_file.read_text())
    assert record["active"] == b.name and record["previous"] == [BUNDLED, a.name]
    assert not [p for p in registry.directory.iterdir() if p.name.startswith(".")]  # atomic: no temp files

    assert registry.rollback().name == a.name
    assert registry.rollback().name == BUNDLED
    with pytest.raises(RegistryError, match="no previously active"):
        registry.rollback()
    assert [(h["action"], h["name"]) for h in registry.history()] == [
        ("add", a.name), ("add", b.name), ("activate", a.name), ("activate", b.name), ("rollback", a.name),
        ("rollback", BUNDLED)]
    # A second registry object (the app restarted) reads the same state.
    assert ModelRegistry(bundled=registry.bundled_folder).active_name() == BUNDLED

    with pytest.raises(RegistryError, match="cannot be removed"):
        registry.remove(BUNDLED)
    registry.activate(a.name)
    with pytest.raises(RegistryError, match="active model"):
        registry.remove(a.name)
    registry.remove(b.name)
    assert registry.names() == [BUNDLED, a.name]
    assert folder_digest(registry.bundled_folder) == before


def test_tampered_or_foreign_models_are_refused(registry, tiny_model_dir, tmp_path):
    bad = variant(tiny_model_dir, tmp_path / "bad", "bad", "1")
    weights = bad / "model.keras"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(RegistryError, match="SHA-256"):
        registry.add(bad)
    assert not registry.directory.exists() or not any(registry.directory.iterdir())

    pbc = registry.add(variant(tiny_model_dir, tmp_path / "pbc", "pbc", "1", classes=["neutrophil", "lymphocyte"]))
    with pytest.raises(RegistryError, match="ALL/HEM classifier"):
        registry.activate(pbc.name)
    assert registry.active_name() == BUNDLED


def test_a_damaged_or_dangling_active_record_falls_back_to_the_bundled_model(registry, tiny_model_dir, tmp_path):
    """... and says so: the window shows why the bundled model is used instead of the one the user chose."""
    a = registry.add(variant(tiny_model_dir, tmp_path / "a", "lab", "2"))
    registry.activate(a.name)
    assert registry.fallback_reason() is None
    assert resolve_model(registry=registry) == ResolvedModel(a.folder, "registry active", None)
    registry.active_file.write_text("{ not json")
    assert registry.active_name() == BUNDLED
    assert "is damaged" in registry.fallback_reason()
    resolved = resolve_model(registry=registry)
    assert resolved.bundled and resolved.folder == registry.bundled_folder
    assert "is damaged" in resolved.note and "bundled model is used" in resolved.note
    registry.activate(a.name)
    shutil.rmtree(a.folder)   # removed behind the app's back
    assert registry.active_name() == BUNDLED and registry.active().bundled
    assert "'lab-2' is no longer in" in registry.fallback_reason()


def test_a_missing_bundled_model_is_listed_with_the_reason(tmp_path):
    registry = ModelRegistry(bundled=tmp_path / "nowhere")
    bundled = registry.models()[0]
    assert bundled.bundled and not bundled.usable and "not installed" in bundled.error
