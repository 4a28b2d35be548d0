"""Building the classifier: an EfficientNet backbone + pooling + dropout + a logits head.

The head outputs logits; probabilities are softmax(logits / temperature) with the temperature fitted on
held-out subjects and stored in the model folder. Nothing here ever downloads weights.
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

IMAGENET_FILES = {
    "EfficientNetB0": "efficientnetb0_notop.h5",
    "EfficientNetB1": "efficientnetb1_notop.h5",
    "EfficientNetB2": "efficientnetb2_notop.h5",
    "EfficientNetB3": "efficientnetb3_notop.h5",
}
BACKBONES = tuple(IMAGENET_FILES) + ("tiny",)


class WeightsError(ValueError):
    """Initial weights that cannot be used, with what to do about it."""


def find_imagenet_weights(backbone: str, explicit: str | None = None) -> Path:
    """The local ImageNet weight file for ``backbone``: the given path, else the Keras cache. Never downloads."""
    fname = IMAGENET_FILES.get(backbone)
    if fname is None:
        raise WeightsError(f"no ImageNet weights exist for backbone {backbone!r}")
    candidates = []
    if explicit:
        candidates.append(Path(explicit).expanduser())
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    candidates.append(keras_home / "models" / fname)
    for c in candidates:
        if c.is_file():
            return c
    raise WeightsError(
        f"ImageNet weights for {backbone} were asked for, but no local file was found (looked at: "
        f"{', '.join(str(c) for c in candidates)}). This software never downloads weights: copy "
        f"{fname} there (or pass its path with --imagenet-weights), or start from scratch or from a model folder.")


def _tiny_backbone(input_shape, keras):
    """A small conv net with the same interface, for fast tests only."""
    inp = keras.Input(input_shape)
    x = keras.layers.Rescaling(1.0 / 255.0)(inp)
    for filters in (8, 16, 32):
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.Activation("relu")(x)
    return keras.Model(inp, x, name="backbone")


def build_backbone(backbone: str, size: int, imagenet_file: Path | None = None):
    import keras

    shape = (size, size, 3)
    if backbone == "tiny":
        return _tiny_backbone(shape, keras)
    if backbone not in IMAGENET_FILES:
        raise WeightsError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    ctor = getattr(keras.applications, backbone)
    weights = str(imagenet_file) if imagenet_file else None
    net = ctor(include_top=False, weights=weights, input_shape=shape)
    net.name = "backbone"
    return net


def build_classifier(backbone: str, size: int, n_classes: int, dropout: float = 0.3,
                     imagenet_file: Path | None = None, seed: int = 0):
    """backbone -> global average pooling -> dropout -> Dense(n_classes) logits."""
    import keras

    keras.utils.set_random_seed(seed)
    base = build_backbone(backbone, size, imagenet_file)
    inp = keras.Input((size, size, 3), name="cell")
    x = base(inp)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    out = keras.layers.Dense(n_classes, name="logits")(x)
    return keras.Model(inp, out, name=f"leukviewer_{backbone.lower()}")


def get_backbone(model):
    return model.get_layer("backbone")


def transfer_backbone(source_model, target_model) -> None:
    """Copy the backbone weights of a trained model (e.g. pre-trained on PBC) into a new classifier."""
    src, dst = get_backbone(source_model), get_backbone(target_model)
    if len(src.weights) != len(dst.weights) or any(
            a.shape != b.shape for a, b in zip(src.weights, dst.weights)):
        raise WeightsError("the parent model's backbone does not match (different architecture or input size)")
    dst.set_weights(src.get_weights())


def set_trainable(model, mode: str, freeze_batchnorm: bool = False) -> None:
    """mode: 'head' (backbone frozen), 'all', or 'top:N' (the last N blocks of an EfficientNet unfrozen).

    With ``freeze_batchnorm`` (fine-tuning pre-trained weights) the backbone's BatchNormalization layers
    keep the statistics of the larger pre-training data; from scratch they must learn.
    """
    import keras

    backbone = get_backbone(model)
    if mode == "head":
        backbone.trainable = False
        return
    backbone.trainable = True
    blocks = None
    if mode.startswith("top:"):
        n = int(mode.split(":", 1)[1])
        names = sorted({l.name.split("_")[0] for l in backbone.layers if l.name.startswith("block")})
        blocks = set(names[-n:]) if n > 0 else set()
    for layer in backbone.layers:
        if blocks is not None:
            prefix = layer.name.split("_")[0]
            top_layer = layer.name.startswith("top")
            layer.trainable = top_layer or prefix in blocks
        if freeze_batchnorm and isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
