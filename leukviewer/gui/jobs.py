"""The work the window hands to workers (see ``worker.py``): loading the model, analysing a case, decoding an
image for display, cutting gallery thumbnails, Grad-CAM. Everything here runs off the GUI thread; it calls
``leukviewer.core`` and builds only ``QImage`` (which, unlike ``QPixmap``, may be made in any thread)."""
from __future__ import annotations

import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtGui import QImage

from ..core.model.classifier import CellClassifier, bundled_model_dir
from ..core.model.descriptor import ModelDescriptor
from ..core.analysis.imageio import UnreadableImage, list_images, read_image, read_image_scaled
from ..core.analysis.results import Cell, ImageResult
from ..core.analysis.store import ResultsStore

THUMBNAIL_SIZE = 72
GUI_BATCH_SIZE = 8        # cells per network call; a smear field rarely holds more white cells
DISPLAY_MAX_SIDE = 4096   # larger fields are shown downscaled; outlines stay in file pixels


# ---------------------------------------------------------------- the model

def resolve_model_dir(model_dir: str | Path | None) -> Path:
    """The window's model folder: None is the bundled model (the window resolved its model at start with
    ``core.model.active.resolve_model``; choosing the bundled one later sets None)."""
    return Path(model_dir) if model_dir else bundled_model_dir()


def describe(model_dir: str | Path | None) -> ModelDescriptor | None:
    """The model's description from its folder, without TensorFlow; None when the folder is unusable (the loader
    will explain why)."""
    return ModelDescriptor.read(resolve_model_dir(model_dir))


@dataclass
class LoadedModel:
    """The loaded model at run time: its classifier, where it runs and the folder it was loaded for; what the
    model is comes from :attr:`descriptor` (the classifier's), never from here."""
    classifier: CellClassifier
    device: str                 # "GPU (...)" or "CPU (...)"
    folder: Path
    _gradcam: object = None
    _gradcam_lock: threading.Lock = field(default_factory=threading.Lock)
    # One network, one user at a time: Grad-CAM traces a graph through the same Keras layers the analysis runs,
    # and doing both at once from two threads has crashed TensorFlow (a segfault while tracing).
    network_lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def descriptor(self) -> ModelDescriptor:
        return self.classifier.info

    def serialised(self) -> "_SerialisedClassifier":
        """The classifier, its network calls taken under ``network_lock`` (for the analysis worker)."""
        return _SerialisedClassifier(self.classifier, self.network_lock)

    def gradcam(self):
        from ..core.model.gradcam import GradCam

        with self._gradcam_lock:
            if self._gradcam is None:
                self._gradcam = GradCam(self.classifier.model.network)
            return self._gradcam


class _SerialisedClassifier:
    """A CellClassifier whose batches wait while Grad-CAM uses the same network (everything else passes through)."""

    def __init__(self, classifier: CellClassifier, lock):
        self._classifier, self._lock = classifier, lock

    def blast_probabilities(self, prepared):
        with self._lock:
            return self._classifier.blast_probabilities(prepared)

    def class_probabilities(self, prepared):
        with self._lock:
            return self._classifier.class_probabilities(prepared)

    def __getattr__(self, name):
        return getattr(self._classifier, name)


_models: dict[tuple, LoadedModel] = {}
_models_lock = threading.Lock()


def _model_key(folder: Path) -> tuple:
    meta = folder / "model.json"
    try:
        return str(folder.resolve()), meta.stat().st_mtime_ns
    except OSError:
        return str(folder.resolve()), None


def import_tensorflow_here() -> None:
    """Import TensorFlow on the calling (GUI) thread, before any worker uses it.

    Imported first inside a worker thread, TensorFlow's runtime crashed the app (segmentation fault in the first
    inferences of a case) in 12 of 14 runs of ``benchmarks/soak.py`` (30 fields, 2 cores); imported on the GUI
    thread first, in none of 9. It costs the import time once, before the window appears.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow  # noqa: F401


def load_model(model_dir: str | Path | None) -> LoadedModel:
    """The classifier of a model folder, loaded once per process (TensorFlow is imported here, in a worker).

    Raises ModelFolderError with the reason when the folder is missing, damaged or not a blast classifier.
    """
    folder = resolve_model_dir(model_dir)
    key = _model_key(folder)
    with _models_lock:  # a second caller waits for the first load instead of loading twice
        if key not in _models:
            # Results are shown image by image, so batches hold one field's cells: a small fixed batch shape
            # avoids padding every field to 32 cells. Warm-up traces it here, not on the first image.
            classifier = CellClassifier(model_dir, batch_size=GUI_BATCH_SIZE, warm_up=True)
            _models[key] = LoadedModel(classifier, _device(classifier), folder)
        return _models[key]


def _device(classifier: CellClassifier) -> str:
    """Where inference runs, in words: "GPU (...)" when TensorFlow sees one, else "CPU (...)"."""
    device = getattr(classifier, "device", None)
    if device:
        return device
    import tensorflow as tf

    return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"


# ---------------------------------------------------------------- the faster engine, converted in the background

BACKGROUND_CONVERSION_ENV = "LEUKVIEWER_BACKGROUND_CONVERSION"   # "0": never (the test suite's windows)
_converting: set[str] = set()
_converting_lock = threading.Lock()


def wants_engine_conversion(model: LoadedModel) -> bool:
    """The loaded model runs on TensorFlow on a CPU only because it has no LiteRT conversion yet (a retrained or
    newly chosen model): the window converts it in the background."""
    engine = model.classifier.engine
    return (os.environ.get(BACKGROUND_CONVERSION_ENV, "1") != "0" and engine.backend == "tf"
            and not model.classifier.device.startswith("GPU"))


def prepare_engine_command(folder: Path) -> list[str]:
    """``leukviewer --prepare-engine --model FOLDER``, from a checkout or from the frozen bundle."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--prepare-engine", "--model", str(folder)]
    return [sys.executable, "-m", "leukviewer", "--prepare-engine", "--model", str(folder)]


def convert_engine(model: LoadedModel, worker=None) -> bool:
    """Convert the model folder to LiteRT in a child process at low priority (its TensorFlow never shares a thread
    or the network with the analysis running here), then switch the loaded engine to it. True when switched;
    a cancel (the window closing) ends the child and leaves nothing half-written (the engine writes atomically)."""
    should_stop = worker.is_cancelled if worker is not None else (lambda: False)
    key = str(model.folder.resolve())
    with _converting_lock:
        if key in _converting:    # another window of this process is converting it already
            return False
        _converting.add(key)
    try:
        import subprocess
        import tempfile

        kwargs = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.BELOW_NORMAL_PRIORITY_CLASS | subprocess.CREATE_NO_WINDOW
        with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as said:   # a pipe could fill up, stalling it
            child = subprocess.Popen(prepare_engine_command(model.folder), stdin=subprocess.DEVNULL, stdout=said,
                                     stderr=subprocess.STDOUT, **kwargs)
            if hasattr(os, "setpriority"):   # below the window and the analysis (before TensorFlow starts threads)
                try:
                    os.setpriority(os.PRIO_PROCESS, child.pid, 15)
                except OSError:
                    pass
            while child.poll() is None:
                if should_stop():
                    child.kill()
                    child.wait()
                    return False
                time.sleep(0.2)
            said.seek(0)
            lines = said.read().strip().splitlines()
        if child.returncode != 0:
            raise RuntimeError(f"the LiteRT conversion failed: {lines[-1] if lines else child.returncode}")
        switched = model.classifier.engine.adopt_litert()
        if switched:
            model.device = model.classifier.device
        return switched
    finally:
        with _converting_lock:
            _converting.discard(key)


# ---------------------------------------------------------------- analysing a case

@dataclass
class CaseListing:
    """First event of a case: every image of the folder, in order, and the files that are not images;
    when the folder alone holds no image, how many its sub-folders hold (0 when they were included)."""
    images: list[str]
    skipped: list[str]
    in_subfolders: int = 0


@dataclass
class ImageDone:
    """An image finished (analysed now, or read back from the results store)."""
    result: ImageResult
    thumbnails: dict[str, QImage]
    cached: bool
    done: int
    total: int


def analyse_case(folder: Path, model_dir: str | Path | None, store_dir: Path | None, worker=None,
                 recursive: bool = False):
    """Events of a case for the window: a CaseListing, then one ImageDone per image (``recursive``: with the
    images of the sub-folders, named by their path relative to the folder, as ``leukviewer batch --recursive``).

    Images whose results are in the store (same file, same model) are not analysed again. The model is loaded
    only when some image needs it, so a fully cached case opens without TensorFlow.
    """
    from ..core.paths import review_dirs
    from ..core.analysis.pipeline import analyze_images, image_name

    should_stop = worker.is_cancelled if worker is not None else (lambda: False)
    root = Path(folder)
    images, skipped = list_images(root, recursive=recursive)
    names = [image_name(p, root) for p in images]
    below = len(list_images(root, recursive=True)[0]) if not images and not recursive else 0
    yield CaseListing(names, [image_name(p, root) for p in skipped], below)
    described = describe(model_dir)
    store = ResultsStore(store_dir, described.sha256, read_also=review_dirs(root)) \
        if store_dir and described and described.sha256 else None
    total, done, todo = len(images), 0, []
    for path, name in zip(images, names):
        if should_stop():
            return
        cached = store.get(path, name) if store else None
        if cached is None:
            todo.append(path)
            continue
        cached.path = str(path)  # the folder may have moved since
        done += 1
        yield ImageDone(cached, cell_thumbnails(path, cached.cells), True, done, total)
    if not todo or should_stop():
        return
    classifier = load_model(model_dir).serialised()
    from ..core.model.engine import cpu_threads

    # images are read, localised and prepared in threads as by the batch CLI (results identical to one by one), one
    # core left to the window and the classifier: on 2 cores two readers made the GUI stall (soak, 1,000 fields:
    # 124 ms, five stalls over 100 ms, against 44-92 ms with one)
    for result in analyze_images(todo, root, classifier, should_stop=should_stop, max_pending_images=1,
                                 readers=max(1, cpu_threads() - 1)):
        if store is not None and result.ok:
            try:
                store.put(result)
            except OSError:  # a full or read-only disk costs a re-analysis next time, nothing more
                pass
        done += 1
        yield ImageDone(result, cell_thumbnails(Path(result.path), result.cells), False, done, total)


# ---------------------------------------------------------------- images for display

def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    if rgb.ndim == 3 and rgb.shape[2] == 4:
        return QImage(rgb.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


@dataclass
class DisplayImage:
    image: str
    qimage: QImage
    scale: float                # displayed pixels per file pixel
    width: int                  # file pixels
    height: int


def load_display_image(path: Path, image: str, max_side: int = DISPLAY_MAX_SIDE) -> DisplayImage:
    rgb, scale = read_image_scaled(path, max_side)
    return DisplayImage(image, rgb_to_qimage(rgb), scale, round(rgb.shape[1] / scale), round(rgb.shape[0] / scale))


def cell_thumbnails(path: Path, cells: list[Cell], size: int = THUMBNAIL_SIZE) -> dict[str, QImage]:
    """A square thumbnail per cell (the cell and a little of its surroundings) for the gallery."""
    if not cells:
        return {}
    import cv2

    try:
        rgb = read_image(path)
    except (UnreadableImage, OSError):
        return {}
    height, width = rgb.shape[:2]
    out = {}
    for cell in cells:
        x, y, w, h = cell.bbox
        side = max(w, h) * 1.15
        cx, cy = x + w / 2, y + h / 2
        x0, y0 = int(math.floor(cx - side / 2)), int(math.floor(cy - side / 2))
        s = max(1, int(math.ceil(side)))
        patch = np.full((s, s, 3), 255, np.uint8)   # outside the field: white, like the slide background
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(width, x0 + s), min(height, y0 + s)
        if sx1 > sx0 and sy1 > sy0:
            patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
        patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_LINEAR)
        out[cell.cell_id] = rgb_to_qimage(patch)
    return out


def cut_thumbnails(cells_by_path: dict[Path, list[Cell]], size: int = THUMBNAIL_SIZE) -> dict[str, QImage]:
    """Thumbnails again for cells whose thumbnail the gallery's bounded cache dropped (one read per image)."""
    out: dict[str, QImage] = {}
    for path, cells in cells_by_path.items():
        out.update(cell_thumbnails(Path(path), cells, size))
    return out


# ---------------------------------------------------------------- Grad-CAM

@dataclass
class CellHeatmap:
    cell_id: str
    qimage: QImage              # RGBA, the heat map on the application's colour scale, transparent where it is low
    left: int                   # where the crop's top-left corner lies in the image (file pixels)
    top: int
    seconds: float
    class_name: str = ""        # the class the map explains (the one the decision rests on)
    empty: bool = False         # no region raised that class's score: nothing to draw


def warm_up_gradcam(model_dir: str | Path | None, worker=None) -> float:
    """Build the model's Grad-CAM and run it once (seconds taken), so the reviewer's first map comes quickly."""
    from ..core.model.gradcam import warm_up

    should_stop = worker.is_cancelled if worker is not None else (lambda: False)
    t0 = time.perf_counter()
    model = load_model(model_dir)
    if should_stop():
        return 0.0
    with model.network_lock:
        warm_up(model.classifier, model.gradcam(), should_stop)
    return time.perf_counter() - t0


def cell_gradcam(model_dir: str | Path | None, image_path: Path, cell: Cell, label: str | None = None
                 ) -> CellHeatmap:
    """Grad-CAM of one cell, as a transparent overlay positioned in image pixels. ``label`` None: the class the
    decision rests on (ALL at or above the model's threshold, else HEM), so a normal cell's map is not blank."""
    from ..core.model.gradcam import cell_heatmap, heat_rgba, is_empty, on_cell_only
    from ..core.analysis.localize import CellRegion, crop_cell

    t0 = time.perf_counter()
    model = load_model(model_dir)
    label = label or model.classifier.decided_class(cell.blast_probability)
    rgb = read_image(image_path)
    region = CellRegion(bbox=tuple(cell.bbox), outline=np.asarray(cell.outline, np.int32), centroid=cell.centroid,
                        area=cell.area, nucleus_area=0, partial=cell.partial)
    crop = crop_cell(rgb, region, mask_background=True)
    um_per_px = None
    if model.classifier.needs_scale:  # the image's scale, found as the analysis found it
        from ..core.analysis.localize import classify_image_kind
        from ..core.analysis.scale import image_scale

        um_per_px = image_scale(rgb, classify_image_kind(rgb), image_path).um_per_px
    with model.network_lock:
        heat = cell_heatmap(model.classifier, crop, label, cam=model.gradcam(), um_per_px=um_per_px)
    heat = on_cell_only(heat, crop, model.classifier.model.preprocessing.black_threshold)
    # The same square crop_cell cut: its corner in image pixels.
    x, y, w, h = cell.bbox
    side = crop.shape[0]
    left, top = int(math.floor(x + w / 2 - side / 2)), int(math.floor(y + h / 2 - side / 2))
    return CellHeatmap(cell.cell_id, rgb_to_qimage(heat_rgba(heat)), left, top, time.perf_counter() - t0,
                       label, is_empty(heat))
