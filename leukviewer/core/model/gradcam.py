"""Grad-CAM: where in a cell the classifier looked when it scored it (Selvaraju et al., 2017).

The gradient of the chosen class's logit with respect to the last convolutional feature map of the nested
``backbone`` sub-model weighs that map's channels; the ReLU of the weighted sum, normalised to [0, 1], is the
heat map. TensorFlow is imported only when a map is asked for. No Qt here.
"""
from __future__ import annotations

import gc

import numpy as np

from training.preprocess import PreprocessConfig, nonblack_bbox

BACKBONE_LAYER = "backbone"


class GradCamError(ValueError):
    """The network has no structure Grad-CAM can use (no backbone, no convolutional feature map)."""


def _last_feature_layer(backbone):
    """The last layer of the backbone with a 4-D (N, H, W, C) output: its last conv block's activation."""
    for layer in reversed(backbone.layers):
        output = getattr(layer, "output", None)
        if type(layer).__name__ != "InputLayer" and len(getattr(output, "shape", ())) == 4:
            return layer
    raise GradCamError("the backbone has no convolutional feature map")


class GradCam:
    """Grad-CAM for a classifier network ``input -> backbone -> head layers -> logits`` (Keras 3)."""

    def __init__(self, network):
        import keras  # late: TensorFlow-backed Keras

        try:
            backbone = network.get_layer(BACKBONE_LAYER)
        except ValueError:
            raise GradCamError(f"the network has no {BACKBONE_LAYER!r} layer") from None
        feature_layer = _last_feature_layer(backbone)
        # One pass gives both the feature map and the backbone output computed from it, so the tape links them.
        self._features = keras.Model(backbone.inputs, [feature_layer.output, backbone.output])
        # The head: every layer of the outer model after the backbone, applied in order.
        layers = network.layers
        self._head = layers[layers.index(backbone) + 1:]
        self.network = network
        self._compiled = None

    def _weighted_map(self, x, class_index):
        """The ReLU of the gradient-weighted feature map for one input (1, S, S, 3) and class; None: no gradient."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            features, backbone_output = self._features(x, training=False)
            tape.watch(features)
            logits = self._logits(backbone_output)
            score = tf.gather(logits, class_index, axis=1)
        grads = tape.gradient(score, features)
        if grads is None:
            return None
        weights = tf.reduce_mean(grads, axis=(1, 2))                       # (1, C)
        return tf.nn.relu(tf.reduce_sum(features * weights[:, None, None, :], axis=-1))[0]

    def _graph(self):
        """The map as one compiled TensorFlow graph: eager gradients through a B3 take seconds per cell on a
        CPU, the traced graph a fraction of that (it is traced once, by :func:`warm_up` or the first map)."""
        if self._compiled is None:
            import tensorflow as tf

            self._compiled = tf.function(self._weighted_map, reduce_retracing=True)
        return self._compiled

    def _logits(self, backbone_output):
        x = backbone_output
        for layer in self._head:
            x = layer(x, training=False)
        return x

    def __call__(self, prepared: np.ndarray, class_index: int) -> np.ndarray:
        """Heat map (float32, [0, 1]) the size of ``prepared`` (S, S, 3 uint8-valued) for ``class_index``."""
        import tensorflow as tf

        x = tf.convert_to_tensor(np.asarray(prepared, dtype=np.float32)[None])
        first = self._compiled is None
        if first:
            # Tracing builds a graph through the network's layers; a garbage collection started meanwhile by
            # another thread (freeing TensorFlow objects) has crashed the process, so none runs until it is built.
            gc.disable()
        try:
            cam = self._graph()(x, tf.constant(int(class_index), tf.int32))
        finally:
            if first:
                gc.enable()
        if cam is None:  # decided when the graph was traced: the head does not depend on the feature map
            raise GradCamError("no gradient flows from the logits to the feature map")
        cam = cam.numpy()
        size = prepared.shape[1], prepared.shape[0]
        import cv2

        cam = cv2.resize(cam.astype(np.float32), size, interpolation=cv2.INTER_CUBIC)
        return _normalise(cam)


def _normalise(cam: np.ndarray) -> np.ndarray:
    cam = np.nan_to_num(np.maximum(cam, 0.0), nan=0.0, posinf=0.0)
    top = float(cam.max())
    if top <= 1e-12:
        return np.zeros_like(cam, dtype=np.float32)
    return (cam / top).astype(np.float32)


def map_to_crop(cam: np.ndarray, crop: np.ndarray, config: PreprocessConfig,
                um_per_px: float | None = None) -> np.ndarray:
    """Undo the geometry of the preprocessing: a map on the network input -> a map over the crop's pixels.

    The preprocessing crops the black frame (with a margin), pads to a square (or a fixed canvas) and resizes; the
    map is resized to the padded square, un-padded and placed where the frame crop was. Pixels outside that stay 0.
    """
    import cv2

    height, width = crop.shape[:2]
    x0, y0, x1, y1 = 0, 0, width, height
    if "crop_nonblack" in config.steps:
        box = nonblack_bbox(crop, config.black_threshold)
        if box is not None:
            bx, by, bw, bh = box
            m = config.crop_margin
            x0, y0 = max(0, bx - m), max(0, by - m)
            x1, y1 = min(width, bx + bw + m), min(height, by + bh + m)
    w, h = x1 - x0, y1 - y0
    if "pad_square" in config.steps:
        side = max(w, h)
    elif "pad_canvas" in config.steps:
        side = max(w, h, config.canvas_px)
    elif "pad_canvas_um" in config.steps and um_per_px:
        side = max(w, h, int(round(config.canvas_um / float(um_per_px))))
    else:
        side = None
    out = np.zeros((height, width), np.float32)
    if side is None:
        out[y0:y1, x0:x1] = cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR)
        return out
    square = cv2.resize(cam, (side, side), interpolation=cv2.INTER_LINEAR)
    py, px = (side - h) // 2, (side - w) // 2
    out[y0:y1, x0:x1] = square[py:py + h, px:px + w]
    return np.clip(out, 0.0, 1.0)


def cell_heatmap(classifier, crop: np.ndarray, label: str = "ALL", cam: GradCam | None = None,
                 um_per_px: float | None = None) -> np.ndarray:
    """Grad-CAM of one cell crop (RGB uint8, as the pipeline cuts it) for ``label``, the size of the crop.

    ``classifier`` is a :class:`leukviewer.core.model.classifier.CellClassifier`; pass ``cam`` to reuse the split
    network across cells (building it costs more than one map). ``um_per_px`` is the image's scale (needed by
    models that keep physical cell size).
    """
    cam = cam or GradCam(classifier.model.network)
    prepared = classifier.prepare(crop, um_per_px)
    with classifier.engine.lock:   # the analysis worker may be running the same network in another thread
        heat = cam(prepared, classifier.info.class_names.index(label))
    return map_to_crop(heat, crop, classifier.model.preprocessing, um_per_px)


# The colour scale of every heat map the application draws (overlay and legend alike): low attention blue,
# high red (OpenCV's JET, as most Grad-CAM figures use).
COLOUR_SCALE = "jet"
EMPTY_MAP_LEVEL = 1e-6      # a map whose maximum is below this is "empty": no region raised the class's score
ALPHA_FLOOR = 0.1           # heat below this is transparent, so the morphology shows wherever the model did not look
ALPHA_FULL = 0.6            # heat above this is drawn at the full (slider-set) opacity


def is_empty(heat: np.ndarray) -> bool:
    """True when Grad-CAM found no positive evidence for the class anywhere (the map is all zeros)."""
    return heat.size == 0 or float(np.max(heat)) < EMPTY_MAP_LEVEL


def colour_scale(values: np.ndarray) -> np.ndarray:
    """RGB uint8 colours of heat values in [0, 1] (any shape -> shape + (3,)) on the application's colour scale."""
    import cv2

    values = np.asarray(values, np.float32)
    levels = np.uint8(np.round(np.clip(values, 0.0, 1.0) * 255)).reshape(-1, 1)
    rgb = cv2.applyColorMap(levels, cv2.COLORMAP_JET)[:, 0, ::-1]
    return np.ascontiguousarray(rgb.reshape(values.shape + (3,)))


def heat_rgba(heat: np.ndarray) -> np.ndarray:
    """The heat map as RGBA uint8 for drawing over the cell: coloured by :func:`colour_scale`, its alpha rising
    from 0 at ALPHA_FLOOR to opaque at ALPHA_FULL (the viewer's opacity setting scales the whole layer)."""
    heat = np.clip(np.asarray(heat, np.float32), 0.0, 1.0)
    alpha = np.clip((heat - ALPHA_FLOOR) / (ALPHA_FULL - ALPHA_FLOOR), 0.0, 1.0)
    return np.dstack([colour_scale(heat), np.uint8(np.round(alpha * 255))])


def on_cell_only(heat: np.ndarray, crop: np.ndarray, black_threshold: int = 12, margin_px: int = 4) -> np.ndarray:
    """The map where the network saw the cell: the crop's background is masked black before classification, so
    heat there (drawn over the real surroundings) would point at nothing the model saw. A few pixels around the
    outline are kept, where the cell's edge is."""
    import cv2

    seen = (np.asarray(crop).max(axis=2) > black_threshold).astype(np.uint8)
    if margin_px > 0:
        seen = cv2.dilate(seen, np.ones((2 * margin_px + 1, 2 * margin_px + 1), np.uint8))
    return (np.asarray(heat, np.float32) * seen).astype(np.float32)


def warm_up(classifier, cam: GradCam | None = None, should_stop=lambda: False) -> GradCam | None:
    """Build Grad-CAM for ``classifier`` and run it once on a blank input, so the first map a reviewer asks for
    does not pay for building the split network and tracing the gradient. None when stopped before the end."""
    cam = cam or GradCam(classifier.model.network)
    if should_stop():
        return None
    size = classifier.input_size
    cam(np.zeros((size, size, 3), np.float32), 0)
    return cam
