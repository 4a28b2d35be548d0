"""Accepting a retrained model: the model folder goes into the model registry (its files verified) and, if asked,
becomes the active model. Going back is the registry's ``rollback``/``activate`` (the model manager). No Qt."""
from __future__ import annotations

from pathlib import Path

from ..model.registry import ModelRegistry, RegisteredModel
from .session import RetrainSession


def add_to_registry(registry: ModelRegistry, folder: Path, activate: bool, move: bool = False) -> RegisteredModel:
    """Put the model folder into ``registry`` (moved or copied, its files verified); make it active if asked."""
    model = registry.add(folder, move=move)
    if activate:
        registry.activate(model.name)
    return model


def accept_candidate(registry: ModelRegistry, session: RetrainSession, activate: bool) -> RegisteredModel:
    """Move the session's candidate into ``registry``, make it active if asked, and remove the session (the model
    folder holds its figures; the checkpoints are not needed any more). Slow: off the GUI thread."""
    model = add_to_registry(registry, session.candidate, activate, move=True)
    session.discard()
    return model
