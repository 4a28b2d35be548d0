"""The inference engine behind a model folder: fixed-shape compiled calls, optional LiteRT (TFLite/XNNPACK).

* TensorFlow path: one ``tf.function`` per fixed batch shape, the powers of two up to ``batch_size``; a partial
  batch is padded to the next of them, so a field with 3 cells costs 4, not 32, and each graph is traced once
  and never again. Runs on a GPU when TensorFlow sees one.
* LiteRT path (``backend="tflite"``): the network converted once and keyed by the folder's manifest SHA-256 (the
  weights' SHA-256 for a folder without a manifest), so a changed model can never reuse a stale conversion. The
  conversion's own SHA-256 is recorded beside it (``.sha256``) and checked before every use: a file that was
  altered or damaged is converted again, never run. XNNPACK runs it on the CPU, with one interpreter per batch
  shape (the same power-of-two shapes). Where a conversion is looked for (:func:`conversion_places`): beside the
  model folder (``<folder>.litert/``, what the installer ships for the bundled model) and the user's cache (what
  ``leukviewer --prepare-engine``, ``scripts/bootstrap.sh`` and the window's background conversion write).

* ``backend="auto"`` (the app's and the CLI's default): LiteRT when a verified conversion of this folder exists
  (about 1.6-2x TensorFlow's cells/s on 2 cores) and no GPU is seen, else TensorFlow for now, so no one waits
  for the conversion (~35-70 s for B3) in the middle of a case; the window converts in the background and
  switches (:meth:`InferenceEngine.adopt_litert`), the CLI says so in one line.

Both return logits; probabilities are ``softmax(logits / temperature)`` with the folder's temperature.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
from pathlib import Path

import numpy as np

from training.augment import dihedral_views
from training.modelfolder import LoadedModel, atomic_write_bytes, atomic_write_text, sha256_file, softmax

log = logging.getLogger(__name__)

BACKENDS = ("tf", "tflite", "auto")


def cache_dir() -> Path:
    from ..paths import user_dir

    return user_dir("cache")


SHIPPED_SUFFIX = ".litert"   # <model folder>.litert/: the conversion shipped beside a model folder


def conversion_name(key: str, size: int) -> str:
    """The file name of a conversion: the folder's key (manifest SHA-256, else weights' SHA-256) and input size.
    One conversion serves every batch size: each interpreter resizes the input to its own batch."""
    return f"{key[:32]}-s{int(size)}.tflite"


def conversion_places(folder: str | Path, name: str) -> list[Path]:
    """Where a conversion is looked for, in order: shipped beside the model folder, then the user's cache."""
    folder = Path(folder)
    return [folder.parent / (folder.name + SHIPPED_SUFFIX) / name, cache_dir() / "tflite" / name]


def conversion_verified(path: Path) -> bool:
    """The file exists and matches the SHA-256 recorded beside it (``<file>.sha256``)."""
    record = path.with_name(path.name + ".sha256")
    try:
        return path.is_file() and record.read_text(encoding="utf-8").strip() == sha256_file(path)
    except OSError:
        return False


def folder_conversion_name(folder: str | Path) -> str:
    """:func:`conversion_name` of a model folder, read without TensorFlow (model.json and the manifest only)."""
    from training.modelfolder import manifest_sha256, read_meta
    from training.preprocess import PreprocessConfig

    meta = read_meta(folder)
    key = manifest_sha256(folder) or meta["weights"]["sha256"]
    return conversion_name(key, PreprocessConfig.from_dict(meta["preprocessing"]).size)


def find_conversion(folder: str | Path, name: str | None = None) -> Path | None:
    """A verified LiteRT conversion of this model folder (shipped or cached), or None: cheap, no TensorFlow."""
    name = name or folder_conversion_name(folder)
    return next((p for p in conversion_places(folder, name) if conversion_verified(p)), None)


THREADS_ENV = "LEUKVIEWER_THREADS"


def cpu_threads() -> int:
    """Threads for inference and for reading images: ``$LEUKVIEWER_THREADS`` when set (e.g. by a cluster worker
    that owns one CPU slot of a shared machine), else every core the process may use."""
    try:
        wanted = int(os.environ.get(THREADS_ENV, "0"))
    except ValueError:
        wanted = 0
    if wanted > 0:
        return wanted
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _a_gpu_may_be_present() -> bool:
    """False when TensorFlow cannot see a GPU here, found without importing it (several seconds): TensorFlow
    uses only NVIDIA GPUs, through the Linux driver's device files (native Windows and macOS builds have none)."""
    if not sys.platform.startswith("linux"):
        return False
    return Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def _tensorflow_sees_a_gpu() -> bool:
    if not _a_gpu_may_be_present():
        return False
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


#: Cells per network call when the caller leaves it to the engine. LiteRT on a CPU: 8, the cheapest per cell (B3
#: at 128 px on a 2-core Xeon, one thread: 9.7 ms of CPU a cell in batches of 8, 10.4 in batches of 32; the
#: weights and activations of a small batch stay in cache) and fewer shapes to prepare at start. TensorFlow (a GPU,
#: or the CPU before the LiteRT file exists): 32.
LITERT_BATCH_SIZE = 8
TF_BATCH_SIZE = 32


class InferenceEngine:
    def __init__(self, model: LoadedModel, backend: str = "tf", batch_size: int | None = None,
                 threads: int | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}")
        self.model = model
        self.threads = threads or cpu_threads()
        self.size = model.preprocessing.size
        if backend == "auto":
            backend = "tflite" if self.tflite_cached() and not _tensorflow_sees_a_gpu() else "tf"
        self.backend = backend
        self.batch_size = int(batch_size or (LITERT_BATCH_SIZE if backend == "tflite" else TF_BATCH_SIZE))
        self._lock = threading.Lock()   # the GUI's worker and a Grad-CAM job may share one engine
        if backend == "tf":
            self._init_tf()
        else:
            self._init_tflite()

    # ------------------------------------------------------------------ TensorFlow

    def _init_tf(self):
        import tensorflow as tf

        network = self.model.network
        self._tf_fns = {}
        for b in self.buckets():
            spec = tf.TensorSpec((b, self.size, self.size, 3), tf.float32)
            self._tf_fns[b] = tf.function(lambda x: network(x, training=False), input_signature=[spec],
                                          jit_compile=False)
        gpus = tf.config.list_physical_devices("GPU")
        self.device = f"GPU ({gpus[0].name})" if gpus else f"CPU ({self.threads} threads)"

    def buckets(self) -> list[int]:
        """The batch shapes the engine uses: 1, 2, 4, ... up to batch_size (which is always one)."""
        sizes, b = [], 1
        while b < self.batch_size:
            sizes.append(b)
            b *= 2
        return sizes + [self.batch_size]

    def _run_tf(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        b = next(size for size in self.buckets() if size >= n)
        if b > n:
            x = np.concatenate([x, np.zeros((b - n,) + x.shape[1:], np.float32)])
        return np.asarray(self._tf_fns[b](x))[:n]

    # ------------------------------------------------------------------ LiteRT / TFLite

    @property
    def lock(self) -> threading.Lock:
        """Held while the network runs; anything else that calls the network (Grad-CAM) takes it too."""
        return self._lock

    def conversion_name(self) -> str:
        return conversion_name(self.model.manifest_sha256 or self.model.sha256, self.size)

    def tflite_path(self) -> Path:
        """Where this engine's conversion is: the verified one found (shipped or cached), else where the cache
        puts a new one."""
        found = find_conversion(self.model.folder, self.conversion_name())
        return found or conversion_places(self.model.folder, self.conversion_name())[-1]

    def tflite_cached(self) -> bool:
        """A conversion of exactly this model folder exists and is intact (its recorded SHA-256 matches)."""
        return find_conversion(self.model.folder, self.conversion_name()) is not None

    def _convert(self, path: Path) -> None:
        """Keras -> SavedModel -> LiteRT flatbuffer (the SavedModel route; a direct concrete-function
        conversion of a Keras 3 model produced NaNs here)."""
        import shutil
        import tempfile

        import tensorflow as tf

        path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=path.parent))
        try:
            self.model.network.export(str(work / "saved_model"), format="tf_saved_model", verbose=False)
            flat = tf.lite.TFLiteConverter.from_saved_model(str(work / "saved_model")).convert()
            atomic_write_bytes(path, flat)
            atomic_write_text(path.with_name(path.name + ".sha256"), hashlib.sha256(flat).hexdigest() + "\n")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        log.info("converted %s to LiteRT: %s (%.1f MB)", self.model.folder, path, len(flat) / 1e6)

    def _init_tflite(self):
        path = find_conversion(self.model.folder, self.conversion_name())
        if path is None:
            for place in conversion_places(self.model.folder, self.conversion_name()):
                if place.is_file() and place.with_name(place.name + ".sha256").is_file():
                    log.warning("the LiteRT conversion %s does not match its recorded SHA-256 (altered or "
                                "damaged): converting the model again", place)
            path = conversion_places(self.model.folder, self.conversion_name())[-1]
            self._convert(path)
            if not conversion_verified(path):
                raise RuntimeError(f"the LiteRT conversion {path} changed while it was being written")
        self._load_tflite(path)

    def _load_tflite(self, path: Path) -> None:
        try:  # the LiteRT package where installed (no TensorFlow import); TensorFlow's own interpreter otherwise
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            import tensorflow as tf

            Interpreter = tf.lite.Interpreter
        self._tflite_file = str(path)
        self._Interpreter = Interpreter
        self._interpreters = {}   # one per batch shape, made on first use (weights are mapped from one file)
        self.device = f"CPU, LiteRT/XNNPACK ({self.threads} threads)"

    def _interpreter(self, batch: int):
        import warnings

        if batch not in self._interpreters:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tf.lite.Interpreter announces its move to LiteRT
                interp = self._Interpreter(model_path=self._tflite_file, num_threads=self.threads)
            inp = interp.get_input_details()[0]["index"]
            interp.resize_tensor_input(inp, [batch, self.size, self.size, 3], strict=False)
            interp.allocate_tensors()
            self._interpreters[batch] = (interp, inp, interp.get_output_details()[0]["index"])
        return self._interpreters[batch]

    def _run_tflite(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        b = next(size for size in self.buckets() if size >= n)
        if b > n:
            x = np.concatenate([x, np.zeros((b - n,) + x.shape[1:], x.dtype)])
        interp, inp, out = self._interpreter(b)
        interp.set_tensor(inp, x)
        interp.invoke()
        return interp.get_tensor(out)[:n].copy()

    def adopt_litert(self) -> bool:
        """Switch a TensorFlow engine to LiteRT now that a verified conversion of its folder exists (the window's
        background conversion); the next batch runs on it. False (nothing changes) when there is none, or a GPU."""
        if self.backend == "tflite":
            return True
        path = find_conversion(self.model.folder, self.conversion_name())
        if path is None or _tensorflow_sees_a_gpu():
            return False
        with self._lock:   # never between the chunks of a batch
            self._load_tflite(path)
            self.backend = "tflite"
        self.warm_up()
        log.info("switched to the LiteRT engine: %s", path)
        return True

    # ------------------------------------------------------------------ public

    @property
    def views(self) -> int:
        """Flips/rotations averaged per cell (the model folder's test-time augmentation; 1 = none)."""
        return self.model.tta_views

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits for prepared cells (N, size, size, 3), any N, in fixed-shape chunks. A model folder with test-time
        augmentation gets the mean of its views' logits, every view of a chunk of cells in one network batch."""
        batch = np.asarray(batch)
        if len(batch) == 0:
            return np.zeros((0, len(self.model.class_names)), np.float32)
        if batch.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"expected cells of {self.size}x{self.size}x3, got {batch.shape[1:]}")
        views = self.views
        cells_per_run = max(1, self.batch_size // views)
        outs = []
        with self._lock:
            for i in range(0, len(batch), cells_per_run):
                cells = batch[i:i + cells_per_run]
                chunk = (np.concatenate(dihedral_views(cells, views)) if views > 1 else cells).astype(np.float32)
                out = np.concatenate([self._run_tf(part) if self.backend == "tf" else self._run_tflite(part)
                                      for part in np.array_split(chunk, -(-len(chunk) // self.batch_size))])
                outs.append(out.reshape(views, len(cells), -1).mean(0) if views > 1 else out)
        return np.concatenate(outs)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return softmax(self.logits(batch), self.model.temperature)

    def warm_up(self) -> None:
        """Prepare batch shapes now, so the first cells do not wait for them. On LiteRT every shape: each is an
        interpreter whose ``allocate_tensors`` holds the GIL for 50-160 ms (B3, XNNPACK packing its weights), which
        made during an analysis froze the window that long; made here, at load, the analysis never pays it. On
        TensorFlow the single-cell and the full-batch shape (each costs seconds of tracing for B3); the shapes
        between are prepared on first use."""
        zeros = np.zeros((self.batch_size, self.size, self.size, 3), np.uint8)
        shapes = self.buckets() if self.backend == "tflite" else sorted({1, self.batch_size})
        for b in shapes:
            self.logits(zeros[:b])
