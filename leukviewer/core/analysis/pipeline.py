"""From a folder of smear images to localised, classified, counted white cells.

``analyze_folder`` is a generator: it yields one ``ImageResult`` at a time in file order, reports progress
through a plain callback, stops cooperatively between images when ``should_stop()`` is true, and keeps memory
flat: at most one batch of cells is held, however many images there are.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model.classifier import CellClassifier, cell_type_for
from .imageio import UnreadableImage, greyscale_reason, list_images, read_image
from .localize import (classify_image_kind, crop_cell, estimate_rbc_diameter, find_single_cell, find_white_cells,
                       no_cell_reason)
from .results import STATUS_FAILED, STATUS_NO_CELLS, STATUS_OK, STATUS_UNREADABLE, CaseSummary, Cell, ImageResult
from .scale import SCALE_FOLDER_RED_CELLS, SCALE_RED_CELLS, ImageScale, image_scale

log = logging.getLogger(__name__)

KINDS = ("auto", "single_cell", "smear_field")

ProgressCallback = Callable[[int, int, ImageResult], None]


def image_name(path: Path, root: Path) -> str:
    """The image's name as results, reviews and reports record it: its path relative to the case folder."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def locate(rgb: np.ndarray, kind: str = "auto", rbc_diameter: float | None = None):
    """(kind, regions, crops) for one image: crops are cells on black, ready for the classifier.

    ``rbc_diameter``: the field's red-cell diameter in pixels when already measured (it is measured otherwise).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = classify_image_kind(rgb)
    if kind == "single_cell":
        region = find_single_cell(rgb)
        regions = [] if region is None else [region]
        # The whole C-NMC crop is what the model was trained on; its preprocessing removes the frame.
        crops = [rgb for _ in regions]
    else:
        regions = find_white_cells(rgb, rbc_diameter=rbc_diameter)
        crops = [crop_cell(rgb, r, mask_background=True) for r in regions]
    return kind, regions, crops


class FolderRedCells:
    """The red-cell diameters measured so far in one folder (one microscope): a field whose own measure is far
    from theirs (a clump or a thick area fooled it) takes the folder's median instead, and says so."""

    #: an estimate off by more than this factor from the folder's median is not trusted
    TOLERANCE = 1.5
    MIN_FIELDS = 3

    def __init__(self):
        self._diameters: list[float] = []

    def check(self, measured: float | None) -> tuple[float | None, bool]:
        """(diameter to use, whether it is the folder's median instead of the field's own measure)."""
        median = float(np.median(self._diameters)) if len(self._diameters) >= self.MIN_FIELDS else None
        if measured and (median is None or 1 / self.TOLERANCE <= measured / median <= self.TOLERANCE):
            self._diameters.append(float(measured))
            return measured, False
        return (median, True) if median else (measured, False)


@dataclass
class _Started:
    """An image decoded and its kind detected (or failed: ``rgb`` None, the reason in ``result.status``).

    ``rbc`` is the smear field's own red-cell measure once taken (``measured`` true); the folder's check of it
    (:class:`FolderRedCells`) is made in file order, after it."""
    result: ImageResult
    rgb: np.ndarray | None
    kind: str
    t0: float
    rbc: float | None = None
    measured: bool = False


def _failed(result: ImageResult, error: BaseException, path: Path) -> None:
    if isinstance(error, UnreadableImage):
        result.status = f"{STATUS_UNREADABLE}: {error.reason}"
    elif isinstance(error, MemoryError):
        result.status = f"{STATUS_UNREADABLE}: not enough memory to process an image this large"
    else:  # a bug in one image's analysis must not end the case, nor pass for a bad image
        log.exception("analysis of %s failed", path)   # called inside the except block that caught it
        result.status = (f"{STATUS_FAILED}: {type(error).__name__}: {error} (a fault in leukviewer, not in the "
                         "image; please report it)")


def _start_image(path: Path, root: Path, kind: str) -> _Started:
    """Decode one image and detect its kind (any thread; depends on no other image). Never raises for bad input."""
    t0 = time.perf_counter()
    result = ImageResult(path=str(path), image=image_name(path, root), status=STATUS_OK)
    try:
        rgb = read_image(path)
        result.height, result.width = rgb.shape[:2]
        grey = greyscale_reason(rgb)
        if grey:
            raise UnreadableImage(grey, path)
        return _Started(result, rgb, classify_image_kind(rgb) if kind == "auto" else kind, t0)
    except Exception as e:
        _failed(result, e, path)
        return _Started(result, None, kind, t0)


def _measure_red_cells(started: _Started, path: Path, um_per_px: float | None) -> _Started:
    """Take a smear field's own red-cell measure (any thread; depends on no other image). Never raises."""
    if started.rgb is not None and started.kind == "smear_field" and not um_per_px and not started.measured:
        try:
            started.rbc = estimate_rbc_diameter(started.rgb)
        except Exception as e:
            _failed(started.result, e, path)
            started.rgb = None
        started.measured = True
    return started


def _decide_red_cells(started: _Started, path: Path, um_per_px: float | None,
                      folder_red_cells: FolderRedCells | None) -> tuple[float | None, bool]:
    """(red-cell diameter the field is analysed with, whether it is the folder's instead of its own). Called in
    file order: the folder's median is of the fields before this one."""
    _measure_red_cells(started, path, um_per_px)
    if started.rgb is None or started.kind != "smear_field" or um_per_px:
        return None, False
    if folder_red_cells is None:
        return started.rbc, False
    return folder_red_cells.check(started.rbc)


def _finish_image(started: _Started, path: Path, classifier: CellClassifier, um_per_px: float | None = None,
                  red_cells: tuple[float | None, bool] = (None, False)):
    """Localise and prepare the cells of a started image whose red cells are decided (``_decide_red_cells``) ->
    (ImageResult without cells yet, [(region, prepared cell)]). Any thread."""
    result, rgb, image_kind = started.result, started.rgb, started.kind
    cells = []
    if rgb is not None:
        try:
            rbc, from_folder = red_cells
            scale = image_scale(rgb, image_kind, path, um_per_px, rbc)
            if from_folder and scale.source == SCALE_RED_CELLS:
                scale = ImageScale(scale.um_per_px, SCALE_FOLDER_RED_CELLS, rbc)
            result.um_per_px, result.scale_source = round(scale.um_per_px, 5), scale.source
            result.kind, regions, crops = locate(rgb, image_kind, rbc)
            cells = [(region, classifier.prepare(crop, scale.um_per_px)) for region, crop in zip(regions, crops)]
            if not cells:
                result.status = f"{STATUS_NO_CELLS}: {no_cell_reason(rgb, result.kind)}"
        except Exception as e:
            _failed(result, e, path)
            cells = []
    result.seconds = time.perf_counter() - started.t0
    return result, cells


def _read_and_locate(path: Path, root: Path, classifier: CellClassifier, kind: str,
                     um_per_px: float | None = None, folder_red_cells: FolderRedCells | None = None):
    """One image -> (ImageResult without cells yet, [(region, prepared cell)]). Never raises for bad input.

    ``um_per_px``: the user's scale for every image (else metadata, red cells or the C-NMC calibration).
    """
    started = _start_image(path, root, kind)
    return _finish_image(started, path, classifier, um_per_px,
                         _decide_red_cells(started, path, um_per_px, folder_red_cells))


#: Decoded pixels the read-ahead keeps in flight at most (beyond the one image always allowed): bounds memory on
#: folders of huge fields (a 2592x1944 field is 5 MP; a whole-slide tile can be 150 MP).
READ_AHEAD_PIXELS = 40_000_000


def _read_ahead(images: list[Path], root: Path, classifier: CellClassifier, kind: str, um_per_px: float | None,
                folder_red_cells: FolderRedCells, readers: int, stopped: Callable[[], bool]):
    """(result, cells) per image in file order, ``readers`` images at a time in a thread pool (decoding, numpy and
    OpenCV release the GIL). Two stages: each image is decoded, its kind detected and, for a smear field, its red
    cells measured in a thread; then, in file order, the folder's check of that measure (:class:`FolderRedCells`)
    decides the field's scale, and its localisation and cell preparation go back to a thread. The results are
    exactly those of reading one image after another."""
    from concurrent.futures import Future, ThreadPoolExecutor

    def start(path):
        started = _start_image(path, root, kind)
        if started.rgb is not None and started.kind == "single_cell":
            return _finish_image(started, path, classifier, um_per_px)
        return _measure_red_cells(started, path, um_per_px)

    def pixels(item) -> int:
        rgb = item.rgb if isinstance(item, _Started) else None
        return 0 if rgb is None else int(rgb.shape[0]) * int(rgb.shape[1])

    window = 2 * readers     # images in flight: bounds memory
    paths = iter(images)
    started_q: deque = deque()     # (path, future of start)
    finished_q: deque = deque()    # (future of the finished (result, cells), pixels held)
    with ThreadPoolExecutor(max_workers=readers, thread_name_prefix="leukviewer-read") as pool:
        def held() -> int:
            return sum(n for _, n in finished_q) + sum(pixels(f.result()) for _, f in started_q if f.done())

        def refill():
            while len(started_q) + len(finished_q) < window and not stopped():   # once stopped, nothing opened
                if (started_q or finished_q) and held() > READ_AHEAD_PIXELS:
                    return
                path = next(paths, None)
                if path is None:
                    return
                started_q.append((path, pool.submit(start, path)))

        try:
            refill()
            while started_q or finished_q:
                # keep every reader busy: hand the started images on, in file order, while few are finishing
                while started_q and (len(finished_q) < readers or not finished_q):
                    path, future = started_q.popleft()
                    item = future.result()
                    if isinstance(item, _Started):
                        decided = _decide_red_cells(item, path, um_per_px, folder_red_cells)
                        finished_q.append((pool.submit(_finish_image, item, path, classifier, um_per_px, decided),
                                           pixels(item)))
                    else:
                        done: Future = Future()
                        done.set_result(item)
                        finished_q.append((done, 0))
                    refill()
                future, _ = finished_q.popleft()
                item = future.result()
                refill()             # the threads read on while this image is handed over
                yield item
        finally:
            for future, _ in finished_q:
                future.cancel()
            for _, future in started_q:
                future.cancel()


def _read_one_by_one(images: list[Path], root: Path, classifier: CellClassifier, kind: str,
                     um_per_px: float | None, folder_red_cells: FolderRedCells, stopped: Callable[[], bool]):
    for path in images:
        if stopped():
            return
        yield _read_and_locate(path, root, classifier, kind, um_per_px, folder_red_cells)


_DONE = object()


def analyze_images(images: list[Path], root: Path, classifier: CellClassifier, kind: str = "auto",
                   on_progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None,
                   max_pending_images: int = 8, prefetch: int = 2,
                   um_per_px: float | None = None, readers: int = 1) -> Iterator[ImageResult]:
    """Analyse the given image files (relative names taken against ``root``); see the module docstring.

    A reader thread decodes and localises up to ``prefetch`` images ahead while cells are classified, so
    decoding overlaps inference. Cells of consecutive images are classified together in batches of
    ``classifier.batch_size`` (an image's cells may span two); a smaller batch only at the end, or when
    ``max_pending_images`` images wait for theirs, which bounds the delay before a result appears. Batches depend
    only on the input, so results are deterministic. Once ``should_stop()`` is true no further image is opened. ``um_per_px`` sets every image's scale (the user's
    microscope setting); without it each image's scale comes from its metadata, red cells or calibration.
    ``readers`` > 1 decodes, localises and prepares that many images at once in threads (the batch CLI: one per
    core), with exactly the results of reading them one by one.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    info = classifier.info
    batch_target = classifier.batch_size
    stop = threading.Event()
    stopped = lambda: stop.is_set() or bool(should_stop and should_stop())  # noqa: E731
    ready: queue.Queue = queue.Queue(maxsize=max(1, prefetch))

    def reader():
        folder_red_cells = FolderRedCells()
        if readers > 1:
            items = _read_ahead(images, root, classifier, kind, um_per_px, folder_red_cells, readers, stopped)
        else:
            items = _read_one_by_one(images, root, classifier, kind, um_per_px, folder_red_cells, stopped)
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stopped():
                    break
        finally:
            items.close()   # the read-ahead threads stop and are joined
            while True:
                try:
                    ready.put(_DONE, timeout=0.05)
                    break
                except queue.Full:
                    if stop.is_set():
                        try:
                            ready.get_nowait()
                        except queue.Empty:
                            pass

    thread = threading.Thread(target=reader, name="leukviewer-reader", daemon=True)
    pending: list[tuple[ImageResult, list]] = []   # images whose results wait for (some of) their cells' batch
    probs: list[np.ndarray] = []       # class probabilities of the pending images' first cells, in order
    unclassified = 0                   # cells of the pending images not classified yet
    total = len(images)
    done = 0

    def classify(whole: bool):
        """Classify the pending cells in whole batches of ``batch_target`` (all of them when ``whole``), then
        yield, in file order, every image whose cells are all classified. A batch is never padded but at the end:
        cells of the next images fill it (LiteRT runs fixed shapes; 37 cells as 32 + 5 would pay for 32 + 8)."""
        nonlocal unclassified
        n = unclassified if whole else unclassified // batch_target * batch_target
        if n:
            prepared = [p for _, cells in pending for (_, p) in cells][len(probs):len(probs) + n]
            probs.extend(classifier.class_probabilities(np.stack(prepared)))
            unclassified -= n
        yield from emit()

    def emit():
        nonlocal pending, probs, done
        k = m = 0
        for result, cells in pending:
            if k + len(cells) > len(probs):
                break
            for n, (region, _) in enumerate(cells, start=1):
                p = classifier.blast_probability_of(probs[k])
                types = {t: round(v, 6) for t, v in classifier.type_probabilities(probs[k]).items()}
                label = classifier.label_for(p)
                k += 1
                result.cells.append(Cell(
                    cell_id=f"{result.image}#{n}", image=result.image, bbox=tuple(int(v) for v in region.bbox),
                    outline=region.outline.tolist(), centroid=(round(float(region.centroid[0]), 2),
                                                               round(float(region.centroid[1]), 2)),
                    area=int(region.area), blast_probability=round(p, 6), label=label,
                    partial=bool(region.partial), model_name=info.name, model_version=info.version,
                    model_sha256=info.sha256, cell_type=cell_type_for(types, label), type_probabilities=types))
            m += 1
        emitted, pending, probs = pending[:m], pending[m:], probs[k:]
        for result, _ in emitted:
            done += 1
            if on_progress:
                on_progress(done, total, result)
            yield result

    thread.start()
    try:
        while True:
            if stopped():
                break
            item = ready.get()
            if item is _DONE:
                break
            result, cells = item
            pending.append((result, cells))
            unclassified += len(cells)
            yield from classify(whole=len(pending) >= max_pending_images)
        if pending:
            yield from classify(whole=True)
    finally:
        stop.set()
        while thread.is_alive():
            try:
                ready.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


def analyze_folder(folder: str | Path, classifier: CellClassifier, recursive: bool = False, kind: str = "auto",
                   on_progress: ProgressCallback | None = None, should_stop: Callable[[], bool] | None = None,
                   summary: CaseSummary | None = None, max_pending_images: int = 8,
                   um_per_px: float | None = None) -> Iterator[ImageResult]:
    """Analyse every image of a folder (optionally recursively). Non-image files are listed in ``summary``."""
    root = Path(folder)
    images, skipped = list_images(root, recursive=recursive)
    if summary is not None:
        summary.images_total = len(images)
        summary.skipped_files = [image_name(p, root) for p in skipped]
    for result in analyze_images(images, root, classifier, kind, on_progress, should_stop, max_pending_images,
                                 um_per_px=um_per_px):
        if summary is not None:
            summary.add(result)
        yield result
    if summary is not None and summary.images_processed + summary.images_failed < summary.images_total:
        summary.cancelled = True
