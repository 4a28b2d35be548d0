"""leukviewer's training library: data sets, subject-disjoint splits, the paper's preprocessing, EfficientNet
models, the training loop, evaluation and the self-describing model folder.

Library first (``from training import train, TrainConfig``), CLI second (``python -m training --help``).
TensorFlow is imported only when a function needs it.
"""
import os as _os

_os.environ.setdefault("KERAS_BACKEND", "tensorflow")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

__all__ = ["train", "TrainConfig", "ProgressEvent", "TrainResult", "cross_validate", "evaluate_folder",
           "export_run", "load_dataset", "load_model_folder", "__version__"]


def __getattr__(name):
    if name in ("train", "TrainConfig", "ProgressEvent", "TrainResult", "export_run"):
        from . import loop as _train_module
        return getattr(_train_module, name)
    if name in ("cross_validate", "evaluate_folder"):
        from . import evaluate as _evaluate
        return getattr(_evaluate, name)
    if name == "load_dataset":
        from .datasets import load_dataset
        return load_dataset
    if name == "load_model_folder":
        from .modelfolder import load_model_folder
        return load_model_folder
    raise AttributeError(name)
