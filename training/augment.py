"""On-the-fly, seeded augmentation of preprocessed cells (uint8 RGB, cell on black).

Flips, 90-degree turns, small rotations, scaling, brightness/contrast and stain jitter in
haematoxylin-eosin optical-density space. Every transform keeps the background black, as in C-NMC.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

# Ruifrok & Johnston H&E(+residual) stain vectors (RGB optical density), as in scikit-image's rgb2hed.
_HED_FROM_RGB = np.linalg.inv(np.array([[0.65, 0.70, 0.29],
                                        [0.07, 0.99, 0.11],
                                        [0.27, 0.57, 0.78]], dtype=np.float64))
_RGB_FROM_HED = np.linalg.inv(_HED_FROM_RGB)


@dataclass(frozen=True)
class AugmentConfig:
    flips: bool = True
    rot90: bool = True
    max_rotation_deg: float = 15.0
    scale_range: tuple = (0.9, 1.1)
    brightness: float = 0.10     # +- fraction of full range
    contrast: float = 0.10       # +- fraction
    stain_sigma: float = 0.05    # multiplicative jitter of each stain's optical density
    stain_bias: float = 0.02     # additive jitter of each stain's optical density

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scale_range"] = list(self.scale_range)
        return d

    @classmethod
    def from_dict(cls, d: dict | None) -> "AugmentConfig":
        if d is None:
            return cls()
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "scale_range" in known:
            known["scale_range"] = tuple(known["scale_range"])
        return cls(**known)

    @classmethod
    def off(cls) -> "AugmentConfig":
        return cls(False, False, 0.0, (1.0, 1.0), 0.0, 0.0, 0.0, 0.0)


def stain_jitter(rgb: np.ndarray, rng: np.random.Generator, sigma: float, bias: float,
                 background: np.ndarray) -> np.ndarray:
    """Scale and shift each stain's optical density (Tellez et al. 2018 style H&E augmentation)."""
    od = -np.log((rgb.astype(np.float64) + 1.0) / 256.0)
    hed = od.reshape(-1, 3) @ _HED_FROM_RGB
    alpha = rng.uniform(1 - sigma, 1 + sigma, size=3)
    beta = rng.uniform(-bias, bias, size=3)
    hed = hed * alpha + beta
    od2 = hed @ _RGB_FROM_HED
    out = np.clip(256.0 * np.exp(-od2) - 1.0, 0, 255).reshape(rgb.shape).astype(np.uint8)
    out[background] = 0
    return out


def augment(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Return a randomly transformed copy of one preprocessed cell."""
    out = image
    if config.flips and rng.random() < 0.5:
        out = out[:, ::-1]
    if config.rot90:
        out = np.rot90(out, int(rng.integers(0, 4)))
    out = np.ascontiguousarray(out)
    angle = rng.uniform(-config.max_rotation_deg, config.max_rotation_deg) if config.max_rotation_deg else 0.0
    scale = rng.uniform(*config.scale_range) if config.scale_range != (1.0, 1.0) else 1.0
    if angle or scale != 1.0:
        h, w = out.shape[:2]
        m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        out = cv2.warpAffine(out, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=(0, 0, 0))
    background = out.max(axis=2) <= 2
    if config.stain_sigma or config.stain_bias:
        out = stain_jitter(out, rng, config.stain_sigma, config.stain_bias, background)
    if config.brightness or config.contrast:
        c = 1.0 + rng.uniform(-config.contrast, config.contrast)
        b = 255.0 * rng.uniform(-config.brightness, config.brightness)
        mean = out[~background].mean() if (~background).any() else 0.0
        f = (out.astype(np.float32) - mean) * c + mean + b
        out = np.clip(f, 0, 255).astype(np.uint8)
        out[background] = 0
    return out


#: the 8 symmetries of a square (quarter turns, then a left-right flip), in the order whose first 1, 2, 4 or 8 are
#: each a group: the identity; + the flip; + the half turn and its flip; + the quarter turns and their flips. So a
#: model that averages N of them (``test_time_augmentation`` in model.json) gives a cell and its mirror image, or a
#: cell and its half turn, the same call whenever N allows it.
DIHEDRAL = ((0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True))
TTA_VIEWS = (1, 2, 4, 8)


def tta_view_count(tta: bool | int | None) -> int:
    """A ``tta`` setting as a number of views: False/None/0 -> 1, True -> 8, else the number."""
    return 8 if tta is True else 1 if not tta else int(tta)


def dihedral_views(batch: np.ndarray, n: int = 8) -> list[np.ndarray]:
    """The first ``n`` (1, 2, 4 or 8) flips/rotations of a batch (N, H, W, C), for test-time augmentation."""
    if n not in TTA_VIEWS:
        raise ValueError(f"test-time augmentation takes 1, 2, 4 or 8 views, not {n}")
    views = []
    for turns, flip in DIHEDRAL[:n]:
        b = batch[:, :, ::-1] if flip else batch
        views.append(np.ascontiguousarray(np.rot90(b, turns, axes=(1, 2))))
    return views
