"""Which model folder the app uses: the one place that decides it, for the window, ``leukviewer batch``,
``leukviewer report``, ``leukviewer retrain``, ``--prepare-engine``, the self-test and the archive.

Precedence, first that applies wins:

1. ``--model FOLDER`` (``explicit``)
2. ``$LEUKVIEWER_MODEL``
3. the folder the window remembers (``remembered``: the settings' last model folder; only the window passes it)
4. the registry's active model (Models → Manage models, ``leukviewer retrain`` accepting a model)
5. the bundled model

A damaged or dangling registry record, or a registry that cannot be read, falls back to the bundled model and
says why (``ResolvedModel.note``). No TensorFlow, no model loaded: only paths and the registry's record.

For Research Use Only. Not for use in diagnostic procedures.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MODEL_ENV = "LEUKVIEWER_MODEL"

EXPLICIT = "--model"
ENVIRONMENT = "$" + MODEL_ENV
REMEMBERED = "settings"
REGISTRY = "registry active"
BUNDLED = "bundled"
SOURCES = (EXPLICIT, ENVIRONMENT, REMEMBERED, REGISTRY, BUNDLED)


@dataclass(frozen=True)
class ResolvedModel:
    """The model folder to use, what chose it (one of ``SOURCES``) and, when the registry's choice could not be
    followed, why (in words for the window and the CLI)."""
    folder: Path
    source: str
    note: str | None = None

    @property
    def bundled(self) -> bool:
        return self.source == BUNDLED


def resolve_model(explicit: str | Path | None = None, remembered: str | Path | None = None,
                  registry: "bool | object" = True) -> ResolvedModel:
    """The model folder to use (see the module docstring for the precedence).

    ``registry``: True reads the user's registry (``ModelRegistry()``), a ``ModelRegistry`` is read instead, False
    skips it (the self-test checks the installation, not the user's choice)."""
    from .classifier import bundled_model_dir

    if explicit:
        return ResolvedModel(Path(explicit), EXPLICIT)
    env = os.environ.get(MODEL_ENV)
    if env:
        return ResolvedModel(Path(env), ENVIRONMENT)
    if remembered:
        return ResolvedModel(Path(remembered), REMEMBERED)
    if registry is False:
        return ResolvedModel(bundled_model_dir(), BUNDLED)
    from .registry import ModelRegistry

    try:
        records = ModelRegistry() if registry is True else registry
        active = records.active()
        note = records.fallback_reason()
    except (OSError, ValueError) as e:   # RegistryError and ModelFolderError are ValueErrors
        return ResolvedModel(bundled_model_dir(), BUNDLED,
                             f"The model registry cannot be read ({e}). The bundled model is used.")
    if active.bundled:
        return ResolvedModel(active.folder, BUNDLED, note)
    return ResolvedModel(active.folder, REGISTRY, note)
