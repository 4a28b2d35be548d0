"""The model folder: the single source of truth for inference.

A folder holds ``model.keras`` (the network, logits head) and ``model.json`` (class names, input size,
preprocessing parameters, temperature, decision threshold and uncertainty band, training data summary,
protocol and metrics, version, creation date and the SHA-256 of ``model.keras``) and ``manifest.sha256``: the
SHA-256 of every other file in the folder (``sha256sum`` format), so anything that changes a result (the weights,
the decision threshold and band, the temperature, the preprocessing, the class names) is covered. Only the
documentation (``MODEL_CARD.md`` and the training's evaluation plots in ``figures/``, which inference never
reads) and hidden files (``.DS_Store``...) are left out. The SHA-256 of the
manifest itself identifies the folder as a whole in reports and keys the LiteRT cache.

Loading verifies the manifest (an edited or added file is refused, naming it) and the weight hash, and loads
with Keras ``safe_mode`` so no code from the file runs. A folder without a manifest (written before manifests
existed) still loads with its weights verified, but with a warning that its model.json is not; ``python -m
training manifest DIR`` seals such a folder.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .preprocess import PreprocessConfig, preprocess_cell

FORMAT = "leukviewer-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.keras"
META_FILE = "model.json"
MANIFEST_FILE = "manifest.sha256"
CARD_FILE = "MODEL_CARD.md"
DOC_DIR = "figures"        # evaluation plots written beside the model: documentation, not in the manifest


class ModelFolderError(ValueError):
    """A model folder that cannot be used (missing, tampered, unreadable), with a clear reason."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in ``directory`` durable: without this, a power cut right after ``os.replace`` can bring
    back the old directory entry (or none) on ext4/XFS although the file's data was synced. A no-op where a
    directory cannot be opened for syncing (Windows, where the rename itself is journalled)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(str(directory), os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems (network mounts) refuse fsync on a directory: nothing more to do
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that a reader (or a crash, or a full disk) sees either the old or the new content, never
    half of it: a temporary file beside it, synced, renamed over it, and the directory synced."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file (UTF-8) atomically and durably; see :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def replace_folder(staging: Path, dest: Path) -> None:
    """Put a fully written folder in place of ``dest`` (which may exist), never leaving a half-made one."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(staging, dest)
        fsync_dir(dest.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, dest)
        fsync_dir(dest.parent)


def _manifest_members(folder: Path) -> list[str]:
    """The files a manifest covers: every file under ``folder`` except the documentation, hidden files and itself."""
    names = []
    for p in sorted(folder.rglob("*")):
        parts = p.relative_to(folder).parts
        rel = p.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in parts) or rel in (MANIFEST_FILE, CARD_FILE) or parts[0] == DOC_DIR:
            continue
        if p.is_file():
            names.append(rel)
    return names


def write_manifest(folder: str | Path) -> str:
    """(Re)write ``manifest.sha256`` over the folder's files as they are now; returns the manifest's SHA-256."""
    folder = Path(folder)
    read_meta(folder)  # only a model folder gets a manifest
    text = "".join(f"{sha256_file(folder / name)}  {name}\n" for name in _manifest_members(folder))
    atomic_write_text(folder / MANIFEST_FILE, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def manifest_sha256(folder: str | Path) -> str | None:
    """SHA-256 of the folder's manifest (what reports print and the LiteRT cache is keyed by); None if it has none."""
    path = Path(folder) / MANIFEST_FILE
    return sha256_file(path) if path.is_file() else None


def legacy_warning(folder: Path) -> str:
    return (f"the model folder {folder} has no {MANIFEST_FILE} (it was written before manifests): its weights are "
            f"verified but its model.json (threshold, temperature, preprocessing) is not; seal it with "
            f"`python -m training manifest {folder}` once you trust it")


def verify_manifest(folder: str | Path) -> str | None:
    """Check every file against ``manifest.sha256``; returns the manifest's SHA-256 (None: the folder has none).

    Raises ModelFolderError naming the first file that was edited, removed or added since the manifest was written.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        raw = path.read_bytes()
        listed = {}
        for number, line in enumerate(raw.decode("utf-8").splitlines(), 1):
            digest, sep, name = line.partition("  ")
            if not sep or len(digest) != 64 or not name:
                raise ValueError(f"line {number} is not '<sha256>  <file>'")
            listed[name] = digest
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ModelFolderError(f"{path} cannot be read ({e}); refusing to load the model") from None
    for required in (META_FILE,):
        if required not in listed:
            raise ModelFolderError(f"{path} does not cover {required}; refusing to load the model")
    for name, digest in listed.items():
        target = folder / name
        if not target.is_file():
            raise ModelFolderError(f"{name} is missing from {folder} (listed in {MANIFEST_FILE}); refusing to load it")
        actual = sha256_file(target)
        if actual != digest:
            raise ModelFolderError(
                f"{name} in {folder} was changed after the model was saved: it does not match its SHA-256 in "
                f"{MANIFEST_FILE} (expected {digest[:12]}…, found {actual[:12]}…); refusing to load it")
    extra = [n for n in _manifest_members(folder) if n not in listed]
    if extra:
        raise ModelFolderError(f"{folder} holds {', '.join(extra)}, which its {MANIFEST_FILE} does not list (added "
                               "after the model was saved); refusing to load it")
    return hashlib.sha256(raw).hexdigest()


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def save_model_folder(model, folder: str | Path, meta: dict, overwrite: bool = False) -> Path:
    """Write ``model`` and ``meta`` as a model folder, atomically (a half-written folder never appears).

    ``meta`` must hold at least ``class_names`` and ``preprocessing``; format, creation date and the weight
    hash are filled in here.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise ModelFolderError(f"{folder} already exists; choose another name or allow overwriting")
    for key in ("class_names", "preprocessing"):
        if key not in meta:
            raise ModelFolderError(f"model metadata lacks {key!r}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.parent))
    try:
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a model folder is meant to be shared
        weights = staging / WEIGHTS_FILE
        _without_optimizer(model).save(weights)
        meta = dict(meta)
        meta.update({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": meta.get("created") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "weights": {"file": WEIGHTS_FILE, "sha256": sha256_file(weights),
                        "bytes": weights.stat().st_size},
        })
        meta.setdefault("name", folder.name)
        meta.setdefault("version", "0.0.0")
        meta.setdefault("input_size", [int(meta["preprocessing"]["size"])] * 2)
        meta.setdefault("temperature", 1.0)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False, default=jsonable),
                                         encoding="utf-8")
        write_manifest(staging)
        replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _without_optimizer(model):
    """The network alone: a compiled model would carry its optimizer's state (AdamW: twice the weights) into the
    file that ships, and inference never needs it."""
    if getattr(model, "optimizer", None) is None:
        return model
    clone = type(model).from_config(model.get_config())   # uncompiled (keras' clone_model compiles it too)
    clone.set_weights(model.get_weights())
    return clone


def jsonable(o):
    """What ``json.dumps`` cannot write itself (numpy numbers and arrays, paths), as JSON values."""
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_meta(folder: str | Path) -> dict:
    """model.json of a folder, checked for the fields inference needs (no TensorFlow needed)."""
    folder = Path(folder)
    meta_path = folder / META_FILE
    if not folder.is_dir():
        raise ModelFolderError(f"model folder not found: {folder}")
    if not meta_path.is_file():
        raise ModelFolderError(f"{folder} is not a model folder: {META_FILE} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFolderError(f"{meta_path} cannot be read: {e}") from None
    if meta.get("format") != FORMAT:
        raise ModelFolderError(f"{meta_path} is not a leukviewer model description")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFolderError(f"{folder} was written by a newer leukviewer (format {meta['format_version']})")
    for key in ("class_names", "preprocessing", "weights", "temperature"):
        if key not in meta:
            raise ModelFolderError(f"{meta_path} lacks {key!r}")
    decision_rule(meta, meta_path)
    tta_views(meta, meta_path)
    return meta


def tta_views(meta: dict, where: str | Path = META_FILE) -> int:
    """How many flips/rotations of each cell the model averages (``test_time_augmentation.views``: 1, 2, 4 or 8;
    1 when absent). Its temperature and threshold were fitted on outputs averaged that way, so every consumer (the
    app's engine, evaluation) must average the same views; a value it cannot honour is refused, never ignored."""
    tta = meta.get("test_time_augmentation")
    if tta is None:
        return 1
    from .augment import TTA_VIEWS

    views = tta.get("views") if isinstance(tta, dict) else None
    if not isinstance(views, int) or isinstance(views, bool) or views not in TTA_VIEWS:
        raise ModelFolderError(f"{where} has test_time_augmentation {tta!r}; its views must be one of "
                               f"{', '.join(map(str, TTA_VIEWS))}")
    return views


def tta_description(views: int) -> dict:
    """model.json's ``test_time_augmentation`` for a model whose calibration was fitted on ``views`` views."""
    return {"views": int(views), "combine": "mean of the logits",
            "transforms": "training.augment.DIHEDRAL: identity, left-right flip, half turn, its flip, quarter turns "
                          "and their flips (the first N)"}


def decision_rule(meta: dict, where: str | Path = META_FILE) -> tuple[float, tuple[float, float]]:
    """The model's decision threshold and uncertainty band (the threshold twice when it has no band).

    A model.json without a usable threshold raises ModelFolderError: every cell's ALL/HEM call rests on it, so it
    is never guessed."""
    decision = meta.get("decision")
    try:
        threshold = float(decision["threshold"])
        band = decision.get("uncertainty_band") or (threshold, threshold)
        band = (float(band[0]), float(band[1]))
    except (TypeError, KeyError, ValueError, IndexError):
        raise ModelFolderError(f"{where} has no usable decision threshold (decision.threshold); refusing to "
                               "guess one") from None
    if not (0.0 <= threshold <= 1.0 and 0.0 <= band[0] <= band[1] <= 1.0):
        raise ModelFolderError(f"{where} has a decision threshold {threshold} or uncertainty band {list(band)} "
                               "outside 0..1")
    return threshold, band


def verify(folder: str | Path) -> dict:
    """Check the folder against its manifest and the weight file against its recorded hash; returns the metadata."""
    return verify_folder(folder)[0]


def verify_folder(folder: str | Path) -> tuple[dict, str | None]:
    """:func:`verify`, also returning the manifest's SHA-256 (None for a folder without a manifest)."""
    folder = Path(folder)
    meta = read_meta(folder)
    weights = folder / meta["weights"]["file"]
    if not weights.is_file():
        raise ModelFolderError(f"weight file missing: {weights}")
    actual = sha256_file(weights)
    if actual != meta["weights"]["sha256"]:
        raise ModelFolderError(
            f"the weight file {weights.name} in {folder} does not match its recorded SHA-256 "
            f"(expected {meta['weights']['sha256'][:12]}…, found {actual[:12]}…): it was modified or damaged; "
            "refusing to load it")
    return meta, verify_manifest(folder)


@dataclass
class LoadedModel:
    """A verified model folder ready for inference; everything about the model comes from its folder.

    ``network`` is the Keras network. A folder opened with ``load_model_folder(..., network="lazy")`` loads it
    (and imports TensorFlow, several seconds) only when first used, so a LiteRT engine starts without TensorFlow.
    """
    folder: Path
    meta: dict
    _network: object = None
    manifest_sha256: str | None = None   # SHA-256 of manifest.sha256 (covers model.json too); None: legacy folder
    _network_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def network(self):
        with self._network_lock:
            if self._network is None:
                self._network = _load_network(self.folder, self.meta)
            return self._network

    @property
    def network_loaded(self) -> bool:
        return self._network is not None

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def preprocessing(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.meta["preprocessing"])

    @property
    def temperature(self) -> float:
        return float(self.meta.get("temperature", 1.0))

    @property
    def tta_views(self) -> int:
        """Views averaged per cell (test-time augmentation; 1 = none), as the calibration was fitted."""
        return tta_views(self.meta, self.folder / META_FILE)

    @property
    def positive_index(self) -> int:
        return self.class_names.index(self.meta.get("positive_class", self.class_names[-1]))

    @property
    def threshold(self) -> float:
        return decision_rule(self.meta, self.folder / META_FILE)[0]

    @property
    def uncertainty_band(self) -> tuple[float, float]:
        return decision_rule(self.meta, self.folder / META_FILE)[1]

    @property
    def sha256(self) -> str:
        return self.meta["weights"]["sha256"]

    @property
    def integrity_warning(self) -> str | None:
        """What the user must be told about a folder loaded without a manifest; None when it has one."""
        return None if self.manifest_sha256 else legacy_warning(self.folder)

    def preprocess(self, rgb: np.ndarray, um_per_px: float | None = None) -> np.ndarray:
        """A cell crop -> the network's input; ``um_per_px`` is the image's scale (needed by physical-scale
        models, ignored by the others)."""
        return preprocess_cell(rgb, self.preprocessing, um_per_px)

    def logits(self, batch: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Raw logits for preprocessed cells (N, size, size, 3) uint8."""
        batch = np.asarray(batch)
        if batch.ndim != 4:
            raise ValueError("expected a batch of images (N, H, W, 3)")
        outs = []
        for i in range(0, len(batch), batch_size):
            x = batch[i:i + batch_size].astype("float32")
            outs.append(np.asarray(self.network(x, training=False)))
        if not outs:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.concatenate(outs, axis=0)

    def mean_logits(self, batch: np.ndarray, views: int, batch_size: int = 32) -> np.ndarray:
        """Logits averaged over the first ``views`` flips/rotations of each cell (``training.augment.DIHEDRAL``)."""
        if views == 1:
            return self.logits(batch, batch_size)
        from .augment import dihedral_views

        return np.mean([self.logits(v, batch_size) for v in dihedral_views(np.asarray(batch), views)], axis=0)

    def predict_proba(self, batch: np.ndarray, batch_size: int = 32, tta: bool | int | None = None) -> np.ndarray:
        """Calibrated class probabilities (N, n_classes) for preprocessed cells. ``tta``: None = the folder's own
        test-time augmentation (what its calibration was fitted on), True = 8 views, False = none, or a number."""
        from .augment import tta_view_count

        views = self.tta_views if tta is None else tta_view_count(tta)
        return softmax(self.mean_logits(batch, views, batch_size), self.temperature)


def _load_network(folder: Path, meta: dict):
    from .model import os as _  # noqa: F401  (sets the Keras backend before keras is imported)
    import keras

    try:
        return keras.saving.load_model(folder / meta["weights"]["file"], compile=False, safe_mode=True)
    except Exception as e:  # a Keras file that verifies but will not load is still the user's problem to see
        raise ModelFolderError(f"the network in {folder} could not be loaded: {e}") from None


def load_model_folder(folder: str | Path, network: str = "eager") -> LoadedModel:
    """Verify and load a model folder. Raises ModelFolderError with a clear reason on any problem.

    ``network="lazy"``: everything is verified now (weights' and manifest's SHA-256), the Keras network is loaded
    when first used (a LiteRT engine never needs it; Grad-CAM and TensorFlow inference do)."""
    if network not in ("eager", "lazy"):
        raise ValueError("network must be 'eager' or 'lazy'")
    folder = Path(folder)
    meta, manifest = verify_folder(folder)
    model = LoadedModel(folder, meta, None, manifest)
    if network == "eager":
        model.network   # noqa: B018  (loads it now: a network that will not load is reported here)
    return model
