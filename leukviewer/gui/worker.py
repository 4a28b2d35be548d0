"""The one worker pattern of the application: run a function off the GUI thread, report through signals.

In the spirit of superqt's ``thread_worker`` (napari ``_qt/qthreading.py``): a :class:`Worker` is a
``QRunnable`` on the application's ``QThreadPool``. A plain function's return value is emitted as ``returned``;
a generator function's values are emitted one by one as ``yielded`` and the cancel flag is checked between
them (the generator is closed when it is set). A function that declares a ``worker`` parameter receives the
worker itself, to call ``worker.report_progress(...)`` or pass ``worker.is_cancelled`` to core code as
``should_stop``. Exceptions are never raised in the pool thread: they arrive as ``errored``. ``finished`` is
always emitted last.

Signals are delivered on the GUI thread (queued), so slots may touch widgets.

Two ways of running many: :class:`LatestJob`, for work of which only the latest run counts (the analysis, the
image on display, a Grad-CAM map, the model load): a new run cancels the old one and a generation number drops
anything the old one still had queued; :class:`SerialJobs`, for saves, one after another in order, every outcome
delivered. (The retraining wizard's comparison runs the two evaluations side by side on plain threads inside its
worker: `core/retrain/run.on_own_thread`, core code that knows no Qt.)
"""
from __future__ import annotations

import inspect
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from .signals import emit

_pool: QThreadPool | None = None
_active: set["Worker"] = set()
_active_lock = threading.Lock()


def pool() -> QThreadPool:
    """The pool every worker runs on (not the global one, so closing the app can wait for exactly these)."""
    global _pool
    if _pool is None:
        # The GUI thread waits for the GIL each time it returns from Qt; with workers running Python it would
        # wait up to the default 5 ms switch interval every time, and a slot making a dozen Qt calls would stall
        # the window for tens of milliseconds. 1 ms keeps the window fluid at a negligible cost to the workers.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
        _pool = QThreadPool()
        # Analysis, model loading, image display and Grad-CAM may overlap; they mostly wait on C code.
        _pool.setMaxThreadCount(max(4, QThreadPool.globalInstance().maxThreadCount()))
    return _pool


def freeze_long_lived_objects() -> None:
    """Take every object alive now out of the garbage collector's full passes (``gc.freeze``): called once the
    libraries, the window and the model are loaded (and again after Grad-CAM brings TensorFlow in), objects kept
    for the app's whole life. A full pass otherwise scans them all (0.5 M objects): 0.3-0.4 s holding the GIL,
    which stalled the window during an analysis (two stalls of 0.4-0.5 s in 1,000 BCCD fields, each at a
    generation-2 collection; 44-92 ms passes after the freeze). Later passes scan only what came after."""
    import gc

    gc.freeze()


def active_workers() -> list["Worker"]:
    """Workers started and not yet finished."""
    with _active_lock:
        return list(_active)


def cancel_all() -> None:
    for worker in active_workers():
        worker.cancel()


def wait_for_workers(timeout_ms: int = 30_000) -> bool:
    """Block until every worker has finished (True) or the timeout passed (False)."""
    done = pool().waitForDone(timeout_ms)
    return done and not active_workers()


_niced = threading.local()
BACKGROUND_NICENESS = 5


def _lower_thread_priority() -> None:
    """Run background work below the GUI thread, once per pool thread.

    On Linux a thread has its own nice value and the threads it starts inherit it (TensorFlow's pools, the
    pipeline's reader), so everything a worker sets off yields the CPU to the window on a busy machine.
    Elsewhere Qt's thread priority does the same.
    """
    if getattr(_niced, "done", False):
        return
    _niced.done = True
    try:
        if sys.platform.startswith("linux"):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICENESS))
        else:
            from PySide6.QtCore import QThread

            QThread.currentThread().setPriority(QThread.Priority.LowPriority)
    except (OSError, AttributeError):  # not permitted or not supported: run at normal priority
        pass


class WorkerSignals(QObject):
    started = Signal()
    progress = Signal(object)     # whatever the function passes to report_progress
    yielded = Signal(object)      # each value of a generator function
    returned = Signal(object)     # the return value (None for a generator that ran to its end)
    errored = Signal(object)      # the exception
    finished = Signal()           # always, last; also after a cancel


class Worker(QRunnable):
    """Runs ``fn(*args, **kwargs)`` on the pool; see the module docstring."""

    def __init__(self, fn: Callable, *args, name: str = "", **kwargs):
        super().__init__()
        self.setAutoDelete(False)  # the Python object owns it; Qt must not delete it under us
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.name = name or getattr(fn, "__name__", "worker")
        self.signals = WorkerSignals()
        self._cancel = threading.Event()
        self._finished = threading.Event()
        try:
            self._wants_worker = "worker" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            self._wants_worker = False

    def __repr__(self) -> str:
        state = "finished" if self.is_finished() else ("cancelled" if self.is_cancelled() else "running")
        return f"<Worker {self.name} {state}>"

    # ---------------------------------------------------------------- control (any thread)

    def start(self) -> "Worker":
        with _active_lock:
            _active.add(self)
        pool().start(self)
        return self

    def cancel(self) -> None:
        """Ask the function to stop at its next step; its later values are not emitted."""
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def is_finished(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout_s: float | None = None) -> bool:
        return self._finished.wait(timeout_s)

    def report_progress(self, value) -> None:
        if not self.is_cancelled():
            emit(self.signals.progress, value)

    # ---------------------------------------------------------------- the pool thread

    def run(self) -> None:  # noqa: D401 - QRunnable API
        signals = self.signals
        _lower_thread_priority()
        try:
            emit(signals.started)
            kwargs = dict(self.kwargs, worker=self) if self._wants_worker else self.kwargs
            result = self.fn(*self.args, **kwargs)
            if inspect.isgenerator(result):
                result = self._drain(result)
            if not self.is_cancelled():
                emit(signals.returned, result)
        except Exception as error:  # every failure reaches the user as a message, never a dead thread
            if not self.is_cancelled():
                emit(signals.errored, error)
        finally:
            self._finished.set()
            emit(signals.finished)
            with _active_lock:  # last: until here the registry keeps this object (and its C++ side) alive
                _active.discard(self)

    def _drain(self, generator):
        try:
            while not self.is_cancelled():
                try:
                    value = next(generator)
                except StopIteration as stop:
                    return stop.value
                if self.is_cancelled():
                    break
                emit(self.signals.yielded, value)
        finally:
            generator.close()
        return None


def start_worker(fn: Callable, *args, on_yielded=None, on_returned=None, on_errored=None, on_progress=None,
                 on_finished=None, name: str = "", **kwargs) -> Worker:
    """Create a worker, connect the given slots and start it."""
    worker = Worker(fn, *args, name=name, **kwargs)
    for signal, slot in ((worker.signals.yielded, on_yielded), (worker.signals.returned, on_returned),
                         (worker.signals.errored, on_errored), (worker.signals.progress, on_progress),
                         (worker.signals.finished, on_finished)):
        if slot is not None:
            signal.connect(slot)
    return worker.start()


class LatestJob:
    """One job of a kind at a time (the analysis, the image on display, a Grad-CAM map): starting one cancels the
    one before, and only the latest, uncancelled run reaches its slots. Each run is stamped with a generation; a
    signal of an older one (still draining its queue on the GUI thread) is dropped, so a replaced run can never
    show its results over the new one's."""

    def __init__(self, name: str, track: Callable[[Worker], Worker] | None = None):
        self.name = name
        self._track = track
        self.generation = 0
        self.worker: Worker | None = None

    def start(self, fn: Callable, *args, on_yielded=None, on_returned=None, on_errored=None, on_progress=None,
              on_finished=None, **kwargs) -> Worker:
        self.cancel()
        self.generation += 1
        worker = Worker(fn, *args, name=self.name, **kwargs)
        for signal, slot in ((worker.signals.yielded, on_yielded), (worker.signals.returned, on_returned),
                             (worker.signals.errored, on_errored), (worker.signals.progress, on_progress),
                             (worker.signals.finished, on_finished)):
            if slot is not None:
                signal.connect(self._only_latest(self.generation, worker, slot))
        self.worker = worker
        if self._track is not None:
            self._track(worker)
        return worker.start()

    def _only_latest(self, generation: int, worker: Worker, slot):
        def deliver(*value):   # finished carries no value, the others one
            if generation == self.generation and not worker.is_cancelled():
                slot(*value)
        return deliver

    def cancel(self) -> None:
        """Cancel the running job; none of its later signals reach a slot."""
        if self.worker is not None:
            self.worker.cancel()

    def forget(self) -> None:
        """The job's outcome was taken: it is no longer the running one (its later signals are dropped)."""
        self.generation += 1
        self.worker = None

    def is_running(self) -> bool:
        return self.worker is not None and not self.worker.is_finished() and not self.worker.is_cancelled()


class SerialJobs:
    """Functions run one after another, in the order submitted, off the GUI thread: never two at once, never out of
    order (for saves, where the last state must win). They run on one :class:`Worker` at a time, started when the
    first function is queued and ending when the queue is empty. Each outcome reaches the function's own slot on
    the GUI thread (``on_returned`` or ``on_errored``). Cancelling the worker does not drop queued functions: every
    save submitted reaches the disk; ``drain`` waits for them (closing the window calls it)."""

    def __init__(self, name: str, track: Callable[[Worker], Worker] | None = None):
        self.name = name
        self._track = track
        self._lock = threading.Lock()
        self._queue: deque = deque()
        self._worker: Worker | None = None     # the worker draining the queue now
        self._last: Worker | None = None
        self._undelivered = 0                  # submitted, outcome not yet delivered (GUI thread only)

    def submit(self, fn: Callable, *args, on_returned=None, on_errored=None) -> None:
        self._undelivered += 1
        with self._lock:
            self._queue.append((fn, args, on_returned, on_errored))
            if self._worker is not None:
                return
            worker = self._worker = self._last = Worker(self._drain, name=self.name)
        worker.signals.progress.connect(self._deliver)
        if self._track is not None:
            self._track(worker)
        worker.start()

    def _drain(self, worker) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    self._worker = None
                    return
                job = self._queue.popleft()
            fn, args = job[0], job[1]
            try:
                outcome = (job, True, fn(*args))
            except Exception as error:  # reaches the job's on_errored
                outcome = (job, False, error)
            emit(worker.signals.progress, outcome)   # even after a cancel: the caller must learn every outcome

    def _deliver(self, outcome) -> None:
        self._undelivered -= 1
        (_fn, _args, on_returned, on_errored), ok, value = outcome
        slot = on_returned if ok else on_errored
        if slot is not None:
            slot(value)

    def pending(self) -> int:
        """Functions submitted whose outcome has not been delivered yet."""
        return self._undelivered

    def drain(self, timeout_s: float = 60.0) -> bool:
        """Block until every queued function has run (outcomes are delivered later, by the event loop)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                worker = self._worker or self._last
                idle = not self._queue and self._worker is None
            if idle and (worker is None or worker.is_finished()):
                return True
            if time.monotonic() > deadline:
                return False
            if worker is not None:
                worker.wait(0.05)
            else:
                time.sleep(0.005)

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Run the event loop until every outcome has been delivered (True) or the timeout passed (False)."""
        from PySide6.QtCore import QCoreApplication, QEventLoop

        deadline = time.monotonic() + timeout_ms / 1000
        while self._undelivered and time.monotonic() < deadline:
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            with self._lock:
                worker = self._worker
            if worker is not None:
                worker.wait(0.005)
        return not self._undelivered
