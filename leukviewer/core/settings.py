"""The user's settings: one typed object, saved as JSON in the platform's config location.

The location is ``$LEUKVIEWER_CONFIG_DIR/settings.json`` when that variable is set (tests always set it), else
``platformdirs.user_config_dir("leukviewer")``. Saving is atomic (temporary file, then rename). A damaged file
never stops the application: it is moved aside to ``settings.json.damaged`` and the defaults are used.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

SCHEMA_VERSION = 1
SETTINGS_FILE = "settings.json"
MAX_RECENT_FOLDERS = 10


def config_dir() -> Path:
    from .paths import user_dir

    return user_dir("config")


def default_settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


@dataclass
class OverlaySettings:
    """What is drawn over the image."""
    outlines: bool = True        # cell outlines coloured by label
    gradcam: bool = False        # Grad-CAM heat map of the selected cell
    gradcam_opacity: float = 0.6  # how strongly the heat map covers the cell, 0..1


def _overlay_value(key: str, value):
    """A saved overlay setting as its field's type (the opacity a number in 0..1, the switches booleans)."""
    if key == "gradcam_opacity":
        return min(1.0, max(0.0, float(value)))
    return bool(value)


@dataclass
class Settings:
    schema_version: int = SCHEMA_VERSION
    reviewer: str = ""                                       # name recorded with every review
    recent_folders: list[str] = field(default_factory=list)  # most recent first
    last_model_folder: str = ""                              # "" = the bundled model
    include_subfolders: bool = False                         # open a folder with the images of its sub-folders
    auto_advance: bool = True                                # after a label, select the next cell
    overlays: OverlaySettings = field(default_factory=OverlaySettings)
    path: Path | None = field(default=None, repr=False, compare=False)  # where it was loaded from / saves to

    # ---------------------------------------------------------------- load / save

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Settings":
        """The settings at ``path`` (default location if None); defaults when there is no usable file."""
        path = Path(path) if path else default_settings_path()
        if not path.is_file():
            return cls(path=path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            settings = cls.from_dict(data)
        except (OSError, ValueError, TypeError, UnicodeDecodeError):
            try:  # keep the damaged file for inspection, start from defaults
                os.replace(path, path.with_name(path.name + ".damaged"))
            except OSError:
                pass
            return cls(path=path)
        settings.path = path
        return settings

    @classmethod
    def from_dict(cls, data: dict) -> "Settings":
        """Settings from a saved dict; unknown keys are ignored, missing keys take their defaults."""
        # Older and newer schema versions alike: the keys this version knows are read, the rest dropped.
        overlays = data.get("overlays", {})
        overlay_known = {f.name for f in fields(OverlaySettings)}
        reviewer = data.get("reviewer", "")
        recent = data.get("recent_folders", [])
        if not isinstance(reviewer, str) or not isinstance(recent, list) or not isinstance(overlays, dict):
            raise TypeError("settings have the wrong types")
        return cls(
            schema_version=SCHEMA_VERSION,
            reviewer=reviewer.strip(),
            recent_folders=[str(f) for f in recent if isinstance(f, str)][:MAX_RECENT_FOLDERS],
            last_model_folder=str(data.get("last_model_folder", "") or ""),
            include_subfolders=bool(data.get("include_subfolders", False)),
            auto_advance=bool(data.get("auto_advance", True)),
            overlays=OverlaySettings(**{k: _overlay_value(k, v) for k, v in overlays.items() if k in overlay_known}),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("path", None)
        return d

    def save(self, path: str | Path | None = None) -> Path:
        """Write atomically; returns the file written."""
        path = Path(path) if path else (self.path or default_settings_path())
        from .atomic import atomic_write_json

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, self.to_dict())
        self.path = path
        return path

    # ---------------------------------------------------------------- changes

    def add_recent_folder(self, folder: str | Path) -> None:
        """Put a folder first in the recent list (no duplicates, at most MAX_RECENT_FOLDERS)."""
        text = str(Path(folder).resolve())
        self.recent_folders = [text] + [f for f in self.recent_folders if f != text]
        del self.recent_folders[MAX_RECENT_FOLDERS:]
