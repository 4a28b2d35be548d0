"""Accepting a retrained model: the candidate folder moves into the model registry (its files verified) and,
if asked, becomes the active model; the retraining's checkpoints go. Going back is the registry's
``rollback``/``activate`` (the model manager). No Qt."""
from __future__ import annotations

from ..models import ModelRegistry, RegisteredModel
from .session import RetrainSession


def accept_candidate(registry: ModelRegistry, session: RetrainSession, activate: bool) -> RegisteredModel:
    """Move the session's candidate into ``registry`` (verifying its files), make it active if asked, and remove
    the session (the model folder holds its figures; the checkpoints are not needed any more). Slow: off the GUI
    thread."""
    model = registry.add(session.candidate, move=True)
    if activate:
        registry.activate(model.name)
    session.discard()
    return model
