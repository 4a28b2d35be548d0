"""The user's models: the bundled one (read-only) plus every model folder accepted from retraining.

Added models live in ``<user data dir>/models/<name>/`` (``LEUKVIEWER_DATA_DIR`` overrides the user data dir).
Which one the app uses is recorded in ``models/active.json`` (written atomically) together with the models that
were active before it, so ``rollback()`` returns to the previous one, and a history of every change. The
bundled model is listed first and is never modified, moved or deleted. No TensorFlow: only ``model.json`` and
the weight hash are read.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from training.card import render_card
from training.modelfolder import META_FILE, ModelFolderError, verify

from .classifier import LABEL_BLAST, LABEL_NORMAL, bundled_model_dir
from .descriptor import ModelDescriptor
from ..atomic import atomic_write_text
from ..paths import user_data_dir

BUNDLED = "bundled"                 # the registry name of the bundled model (never a folder name here)
ACTIVE_FILE = "active.json"
ACTIVE_FORMAT = "leukviewer-active-model"
CARD_FILE = "MODEL_CARD.md"
MAX_HISTORY = 200


class RegistryError(ValueError):
    """A registry operation that cannot be done, with the reason a user can act on."""


def models_dir() -> Path:
    """``<user data dir>/models``: where accepted models are kept."""
    return user_data_dir() / "models"


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def safe_name(text: str) -> str:
    """A folder name from a model's name and version (letters, digits, ``.-_`` only)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    return name[:80] or "model"


@dataclass
class RegisteredModel:
    """One model the app can use: the registry's facts about it (its registry name, folder, whether it is the
    bundled one) and its :class:`ModelDescriptor`; ``error`` says why it cannot be used when its folder is
    damaged (then there is no descriptor)."""
    name: str                 # registry name: BUNDLED or the folder name under models/
    folder: Path
    bundled: bool
    descriptor: ModelDescriptor | None = None
    error: str | None = None

    @property
    def meta(self) -> dict | None:
        """The folder's model.json (None when it cannot be read)."""
        return self.descriptor.meta if self.descriptor else None

    @property
    def usable(self) -> bool:
        return self.descriptor is not None and self.error is None

    @property
    def display_name(self) -> str:
        return self.descriptor.display_name if self.descriptor else self.folder.name

    @property
    def version(self) -> str:
        return self.descriptor.version if self.descriptor else ""

    @property
    def created(self) -> str:
        return str((self.meta or {}).get("created", ""))

    @property
    def sha256(self) -> str:
        return self.descriptor.sha256 if self.descriptor else ""

    @property
    def class_names(self) -> list[str]:
        return list(self.descriptor.class_names) if self.descriptor else []

    @property
    def parent_model(self) -> str | None:
        return (self.meta or {}).get("training", {}).get("parent_model")

    @property
    def test_metrics(self) -> dict:
        """The metrics measured on the model's own held-out test part ({} when there are none)."""
        return ((self.meta or {}).get("metrics") or {}).get("test") or {}

    @property
    def is_blast_classifier(self) -> bool:
        return sorted(self.class_names) == sorted([LABEL_BLAST, LABEL_NORMAL])

    def card_text(self) -> str:
        """MODEL_CARD.md of the folder; rendered from model.json when the folder has none."""
        card = self.folder / CARD_FILE
        if card.is_file():
            try:
                return card.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                return f"# {self.display_name}\n\nThe model card could not be read: {e}\n"
        if self.meta:
            return render_card(self.meta)
        return f"# {self.folder.name}\n\nThis model cannot be used: {self.error}\n"


def _describe(name: str, folder: Path, bundled: bool) -> RegisteredModel:
    try:
        return RegisteredModel(name, folder, bundled, ModelDescriptor.from_folder(folder))
    except (ModelFolderError, KeyError, TypeError) as e:
        reason = str(e) if isinstance(e, ModelFolderError) else f"its model.json is incomplete ({e!r})"
        if bundled and not folder.exists():
            reason = f"the bundled model is not installed ({folder})"
        return RegisteredModel(name, folder, bundled, None, reason)


class ModelRegistry:
    """The models directory and the active-model record; see the module docstring."""

    def __init__(self, directory: str | Path | None = None, bundled: str | Path | None = None):
        self.directory = Path(directory) if directory else models_dir()
        self.bundled_folder = Path(bundled) if bundled else bundled_model_dir()

    @property
    def active_file(self) -> Path:
        return self.directory / ACTIVE_FILE

    # ---------------------------------------------------------------- listing

    def models(self) -> list[RegisteredModel]:
        """The bundled model first, then the added ones, oldest first."""
        added = []
        if self.directory.is_dir():
            for folder in self.directory.iterdir():
                if folder.is_dir() and not folder.name.startswith(".") and (folder / META_FILE).is_file():
                    added.append(_describe(folder.name, folder, False))
        added.sort(key=lambda m: (m.created, m.name))
        return [self.bundled()] + added

    def bundled(self) -> RegisteredModel:
        return _describe(BUNDLED, self.bundled_folder, True)

    def get(self, name: str) -> RegisteredModel:
        if name == BUNDLED:
            return self.bundled()
        folder = self.directory / name
        if name != safe_name(name) or not (folder / META_FILE).is_file():
            raise RegistryError(f"there is no model {name!r} in {self.directory}")
        return _describe(name, folder, False)

    def names(self) -> list[str]:
        return [m.name for m in self.models()]

    # ---------------------------------------------------------------- adding

    def add(self, folder: str | Path, move: bool = False, name: str | None = None) -> RegisteredModel:
        """Verify a model folder and put it into the models directory (copied, or moved with ``move``).

        The folder appears complete or not at all (it is assembled under a hidden name, then renamed). Returns
        the registered model; it is not made active (see :meth:`activate`).
        """
        source = Path(folder)
        try:
            meta = verify(source)
        except ModelFolderError as e:
            raise RegistryError(f"not added: {e}") from None
        try:
            if source.resolve().is_relative_to(self.directory.resolve()):
                raise RegistryError(f"{source} is already in the models directory")
        except OSError:
            pass
        base = safe_name(name or f"{meta.get('name', source.name)}-{meta.get('version', '')}")
        if base == BUNDLED:
            base = f"{base}-copy"
        self.directory.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{base}.adding-", dir=self.directory))
        try:
            os.chmod(staging, 0o755)
            target_in_staging = staging / "model"
            if move:
                try:
                    os.replace(source, target_in_staging)
                except OSError:  # another file system: copy, then remove the source once the copy verifies
                    shutil.copytree(source, target_in_staging)
            else:
                shutil.copytree(source, target_in_staging)
            verify(target_in_staging)  # the copy is exactly the model that was verified
            final = self._free_name(base)
            os.replace(target_in_staging, self.directory / final)
        except BaseException:
            if move and (staging / "model").is_dir() and not source.exists():
                os.replace(staging / "model", source)  # give the caller its folder back
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(staging, ignore_errors=True)
        if move and source.exists():
            shutil.rmtree(source, ignore_errors=True)
        model = self.get(final)
        self._record({"action": "add", "name": final, "sha256": model.sha256})
        return model

    def _free_name(self, base: str) -> str:
        name, n = base, 2
        while (self.directory / name).exists():
            name, n = f"{base}-{n}", n + 1
        return name

    def remove(self, name: str) -> None:
        """Delete an added model that is not active (the bundled one can never be removed)."""
        if name == BUNDLED:
            raise RegistryError("the bundled model is part of the application and cannot be removed")
        model = self.get(name)
        if name == self.active_name():
            raise RegistryError(f"{model.display_name} is the active model; activate another one first")
        trash = self.directory / f".{name}.removing-{os.getpid()}"
        os.replace(model.folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        state = self._state()
        state["previous"] = [p for p in state["previous"] if p != name]
        self._write_state(state, {"action": "remove", "name": name, "sha256": model.sha256})

    # ---------------------------------------------------------------- the active model

    def _load_state(self) -> tuple[dict, str | None]:
        """The record of the active model, and why it could not be read (None when it could, or there is none)."""
        default = {"format": ACTIVE_FORMAT, "active": BUNDLED, "previous": [], "history": []}
        if not self.active_file.is_file():
            return default, None
        try:
            data = json.loads(self.active_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            return default, f"it cannot be read ({e})"
        if not isinstance(data, dict) or data.get("format") != ACTIVE_FORMAT:
            return default, "it is not a leukviewer model record"
        return {"format": ACTIVE_FORMAT, "active": str(data.get("active") or BUNDLED),
                "previous": [str(p) for p in data.get("previous", []) if isinstance(p, str)],
                "history": [h for h in data.get("history", []) if isinstance(h, dict)]}, None

    def _state(self) -> dict:
        return self._load_state()[0]   # a damaged record reads as the bundled model; the next change rewrites it

    def fallback_reason(self) -> str | None:
        """Why the bundled model stands in for the active model the user chose (a damaged record, a model removed
        behind the app's back), in words for the window; None when the record is read as it is."""
        state, problem = self._load_state()
        if problem:
            return (f"The record of the active model ({self.active_file}) is damaged: {problem}. The bundled model "
                    "is used until you choose one in Models → Manage models.")
        name = state["active"]
        if name != BUNDLED and not (self.directory / name / META_FILE).is_file():
            return (f"The active model {name!r} is no longer in {self.directory}. The bundled model is used until "
                    "you choose one in Models → Manage models.")
        return None

    def _write_state(self, state: dict, event: dict | None = None) -> None:
        if event:
            state["history"] = (state["history"] + [{"time": _now(), **event}])[-MAX_HISTORY:]
        state["updated"] = _now()
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.active_file, json.dumps(state, indent=1, ensure_ascii=False))

    def _record(self, event: dict) -> None:
        self._write_state(self._state(), event)

    def active_name(self) -> str:
        """The recorded active model; the bundled one when the record names a model that is gone."""
        name = self._state()["active"]
        if name != BUNDLED and not (self.directory / name / META_FILE).is_file():
            return BUNDLED
        return name

    def active(self) -> RegisteredModel:
        return self.get(self.active_name())

    def history(self) -> list[dict]:
        """Every add, activation, rollback and removal, oldest first."""
        return list(self._state()["history"])

    def previous(self) -> list[str]:
        """The models that were active before the current one, most recent first (those still present)."""
        present = set(self.names())
        return [p for p in reversed(self._state()["previous"]) if p in present]

    def activate(self, name: str) -> RegisteredModel:
        """Make ``name`` the active model (the one before it is remembered for :meth:`rollback`)."""
        model = self.get(name)
        if not model.usable:
            raise RegistryError(f"{model.display_name} cannot be used: {model.error}")
        if not model.is_blast_classifier:
            raise RegistryError(f"{model.display_name} classifies {', '.join(model.class_names)}; the review "
                                f"station needs a {LABEL_BLAST}/{LABEL_NORMAL} classifier")
        try:
            verify(model.folder)
        except ModelFolderError as e:
            raise RegistryError(str(e)) from None
        state = self._state()
        current = self.active_name()
        if current == name:
            return model
        state["previous"] = ([p for p in state["previous"] if p != name] + [current])[-MAX_HISTORY:]
        state["active"] = name
        self._write_state(state, {"action": "activate", "name": name, "previous": current,
                                  "sha256": model.sha256})
        return model

    def rollback(self) -> RegisteredModel:
        """Make the previously active model active again (models removed since are skipped)."""
        state = self._state()
        present = set(self.names())
        current = self.active_name()
        while state["previous"]:
            name = state["previous"].pop()
            if name in present and name != current:
                model = self.get(name)
                state["active"] = name
                self._write_state(state, {"action": "rollback", "name": name, "previous": current,
                                          "sha256": model.sha256})
                return model
        raise RegistryError("there is no previously active model to roll back to")


def app_model_folder(model: RegisteredModel) -> Path | None:
    """What the review window's ``set_model_folder`` takes: None for the bundled model, else the folder."""
    return None if model.bundled else model.folder
