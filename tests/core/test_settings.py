import json
import os

from leukviewer.core.settings import MAX_RECENT_FOLDERS, SCHEMA_VERSION, Settings, default_settings_path


def test_settings_live_in_the_redirected_config_dir_and_round_trip(tmp_path):
    assert str(default_settings_path()).startswith(os.environ["LEUKVIEWER_CONFIG_DIR"])
    s = Settings.load()
    assert s.reviewer == "" and s.overlays.outlines and not s.overlays.gradcam
    s.reviewer = "Dr. Ada"
    s.overlays.gradcam = True
    s.last_model_folder = str(tmp_path / "model")
    s.add_recent_folder(tmp_path)
    path = s.save()
    assert path == default_settings_path()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".part")]  # atomic: no leftovers
    back = Settings.load()
    assert (back.reviewer, back.overlays.gradcam, back.last_model_folder) == ("Dr. Ada", True, str(tmp_path / "model"))
    assert back.recent_folders == [str(tmp_path.resolve())]
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


def test_recent_folders_are_unique_most_recent_first_and_bounded(tmp_path):
    s = Settings()
    for n in range(MAX_RECENT_FOLDERS + 3):
        s.add_recent_folder(tmp_path / f"case{n}")
    s.add_recent_folder(tmp_path / "case5")
    assert len(s.recent_folders) == MAX_RECENT_FOLDERS
    assert s.recent_folders[0].endswith("case5") and sum(f.endswith("case5") for f in s.recent_folders) == 1


def test_damaged_or_foreign_settings_fall_back_to_defaults_and_keep_the_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    s = Settings.load(path)
    assert s.reviewer == "" and s.path == path
    assert (tmp_path / "settings.json.damaged").read_text() == "{not json"
    # A newer or older schema: known keys are read, unknown ones dropped.
    path.write_text(json.dumps({"schema_version": 99, "reviewer": " Dr. B ", "future_key": 1,
                                "overlays": {"outlines": False, "sparkles": True}}))
    s = Settings.load(path)
    assert s.reviewer == "Dr. B" and not s.overlays.outlines and s.schema_version == SCHEMA_VERSION
