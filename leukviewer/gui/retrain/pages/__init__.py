"""The retraining wizard's pages, one module each: data, settings, train, evaluate, accept."""
from .accept import AcceptPage
from .data import DataPage
from .evaluate import EvaluatePage
from .settings import SettingsPage
from .train import TrainPage

__all__ = ["DataPage", "SettingsPage", "TrainPage", "EvaluatePage", "AcceptPage"]
