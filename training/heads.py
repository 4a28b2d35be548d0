"""A white-cell-type head on a trained backbone: features once, many cheap fits, one model folder.

The multi-class model keeps a trained EfficientNet backbone (the bundled B3: PBC pre-training, then C-NMC
fine-tuning) and learns a new head over every source (``training.sources``). Pooled backbone features of each cell
are computed once, for the original view and for augmented views (flips, rotations, scale, brightness/contrast and
stain jitter), so cross-validation and leave-one-source-out runs cost seconds each on a CPU. The head is a Keras
model (optionally one hidden layer) and is joined to the backbone into one network that the model folder, the
engine and LiteRT run like any other.
"""
from __future__ import annotations

import numpy as np

from .augment import AugmentConfig, augment

#: the classes of the multi-class model, in output order (names from training.celltypes)
WBC_CLASSES = ("blast", "lymphoid", "neutrophil", "monocyte", "eosinophil", "basophil", "ig", "erythroblast",
               "non_wbc")

FEATURE_AUGMENT = AugmentConfig(flips=True, rot90=True, max_rotation_deg=15.0, scale_range=(0.9, 1.1),
                                brightness=0.15, contrast=0.2, stain_sigma=0.15, stain_bias=0.05)


def feature_extractor(network):
    """The part of a leukviewer classifier network up to its pooled features (input cells -> (N, D))."""
    import keras

    return keras.Model(network.input, network.get_layer("pool").output, name="features")


IMAGENET_B4_LAYERS = ("block6a_project_bn", "block7a_project_bn", "top_activation")


def imagenet_b4_extractor(weights: str, input_size: int = 128, layers=IMAGENET_B4_LAYERS):
    """An ImageNet EfficientNet-B4 (weights from ``../shared/tools/imagenet-b4``) -> the named layers, each pooled,
    concatenated in order. Takes cells as 0-255 RGB, like every leukviewer network (B4 rescales inside)."""
    import keras

    net = keras.applications.EfficientNetB4(include_top=False, weights=str(weights),
                                            input_shape=(input_size, input_size, 3))
    pooled = [keras.layers.GlobalAveragePooling2D(name=f"pool_{name}")(net.get_layer(name).output) for name in layers]
    out = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="pooled_layers")(pooled)
    return keras.Model(net.input, out, name="imagenet_b4_features")


def backbone_features(network, cells: np.ndarray, views: int = 1, config: AugmentConfig = FEATURE_AUGMENT,
                      seed: int = 0, batch_size: int = 64, progress=None, extractor=None) -> np.ndarray:
    """(views, N, D) float32 pooled features: view 0 is the cell as is, the others augmented.

    ``extractor`` (cells -> (N, D)) replaces the leukviewer network's own pooled features (``network`` then unused).
    """
    import tensorflow as tf

    extractor = extractor if extractor is not None else feature_extractor(network)
    run = tf.function(lambda b: extractor(b, training=False))
    rng = np.random.default_rng(seed)
    out = []
    for v in range(views):
        parts = []
        for i in range(0, len(cells), batch_size):
            batch = cells[i:i + batch_size]
            if v > 0:
                batch = np.stack([augment(c, rng, config) for c in batch])
            parts.append(np.asarray(run(tf.constant(batch.astype("float32")))))
            if progress:
                progress(v, i + len(batch), len(cells))
        out.append(np.concatenate(parts).astype(np.float32))
    return np.stack(out)


def class_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-sample weights that give every class present the same total weight."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    per_class = np.where(counts > 0, len(y) / (np.maximum(counts, 1) * max(1, (counts > 0).sum())), 0.0)
    return per_class[y]


def fit_head(features: np.ndarray, y: np.ndarray, n_classes: int, hidden: int = 0, epochs: int = 40,
             l2: float = 1e-4, dropout: float = 0.2, lr: float = 2e-3, sample_weight: np.ndarray | None = None,
             seed: int = 0):
    """A Keras head (D features -> n_classes logits) fitted with class-balanced weights.

    The features' mean and spread are folded into a Normalization layer, so the head takes raw pooled features.
    """
    import keras

    keras.utils.set_random_seed(seed)
    features = np.asarray(features, np.float32)
    y = np.asarray(y, int)
    weights = class_weights(y, n_classes) if sample_weight is None else sample_weight
    inp = keras.Input((features.shape[1],), name="features")
    norm = keras.layers.Normalization(name="feature_norm")
    norm.adapt(features)
    x = norm(inp)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", kernel_regularizer=keras.regularizers.l2(l2),
                               name="head_hidden")(x)
        x = keras.layers.Dropout(dropout, name="head_hidden_dropout")(x)
    out = keras.layers.Dense(n_classes, kernel_regularizer=keras.regularizers.l2(l2), name="logits")(x)
    head = keras.Model(inp, out, name="cell_type_head")
    steps = max(1, len(y) // 256) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps)
    head.compile(optimizer=keras.optimizers.Adam(schedule),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    head.fit(features, y, sample_weight=weights, batch_size=256, epochs=epochs, shuffle=True, verbose=0)
    return head


def head_logits(head, features: np.ndarray) -> np.ndarray:
    return np.asarray(head.predict(np.asarray(features, np.float32), batch_size=1024, verbose=0))


def join(network, head):
    """One network, laid out like ``training.model.build_classifier`` (cell -> backbone -> pool -> head layers ->
    logits), from the backbone of ``network`` and the layers of ``head``: Grad-CAM and the engine see the usual
    shape."""
    import keras

    inp = keras.Input(network.input.shape[1:], name="cell")
    x = network.get_layer("backbone")(inp)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    for layer in head.layers[1:]:
        x = layer(x)
    return keras.Model(inp, x, name="leukviewer_wbc_types")


def export_wbc_model(parent_folder, head, out, *, name: str, version: str, temperature: float, threshold: float,
                     band: tuple[float, float], preprocessing: dict, training: dict, metrics: dict,
                     class_names=WBC_CLASSES, overwrite: bool = False):
    """Write the joined network (parent backbone + fitted head) as a self-describing model folder."""
    from .modelfolder import load_model_folder, save_model_folder

    parent = load_model_folder(parent_folder)
    network = join(parent.network, head)
    arch = dict(parent.meta.get("architecture", {}))
    arch["head"] = ("pooled backbone features -> normalisation -> dropout -> "
                    + ("dense ReLU -> dropout -> " if any(l.name == "head_hidden" for l in head.layers) else "")
                    + "dense logits over the white-cell types; p = softmax(logits / temperature)")
    arch["backbone_from"] = f"{parent.meta.get('name')} {parent.meta.get('version')} (weights SHA-256 {parent.sha256})"
    meta = {
        "name": name, "version": version,
        "intended_use": "For Research Use Only. Not for use in diagnostic procedures.",
        "class_names": list(class_names), "positive_class": "blast",
        "architecture": arch, "preprocessing": preprocessing,
        "temperature": float(temperature),
        "calibration": {"temperature": float(temperature),
                        "fitted_on": "out-of-fold logits of C-NMC subjects the backbone never saw (subject CV)"},
        "decision": {"threshold": float(threshold), "uncertainty_band": [float(band[0]), float(band[1])],
                     "applies_to": "calibrated P(blast)",
                     "chosen_by": "threshold maximises balanced accuracy blast vs normal lymphoid on out-of-fold "
                                  "C-NMC subjects; the band is the narrowest around it outside which that accuracy "
                                  "is >= 0.95"},
        "training": training, "metrics": metrics,
    }
    return save_model_folder(network, out, meta, overwrite=overwrite)
