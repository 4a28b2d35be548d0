"""The one worker pattern of the application: run a function off the GUI thread, report through signals.

In the spirit of superqt's ``thread_worker`` (napari ``_qt/qthreading.py``): a :class:`Worker` is a
``QRunnable`` on the application's ``QThreadPool``. A plain function's return value is emitted as ``returned``;
a generator function's values are emitted one by one as ``yielded`` and the cancel flag is checked between
them (the generator is closed when it is set). A function that declares a ``worker`` parameter receives the
worker itself, to call ``worker.report_progress(...)`` or pass ``worker.is_cancelled`` to core code as
``should_stop``. Exceptions are never raised in the pool thread: they arrive as ``errored``. ``finished`` is
always emitted last.

Signals are delivered on the GUI thread (queued), so slots may touch widgets.
"""
from __future__ import annotations

import inspect
import os
import sys
import threading
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
