"""GUI fixtures: a review window on the tiny model, case folders copied from the real fixtures, and a guard that
fails any test leaving a worker thread running (napari's ``_dangling_qthreads``)."""
import shutil
import threading
import time

import pytest

pytest.importorskip("pytestqt")


@pytest.fixture(autouse=True)
def _no_dangling_workers(qapp):
    threads_before = {t for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}
    yield
    from leukviewer.gui import worker

    running = [w for w in worker.active_workers() if not w.is_finished()]
    worker.pool().waitForDone(2_000)  # finished workers are leaving their thread: a moment, not a leak
    new_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()
                   and not isinstance(t, threading._DummyThread) and not t.daemon]
    if running:  # clean up so the next test starts clean, then fail this one
        worker.cancel_all()
        worker.wait_for_workers(60_000)
    assert not running, f"the test left workers running: {running}"
    assert worker.pool().activeThreadCount() == 0, "the test left pool threads busy"
    assert not new_threads, f"the test left threads running: {new_threads}"


@pytest.fixture
def reviewer_name(monkeypatch):
    """The first review asks for a name: answer for the reviewer."""
    from leukviewer.gui.dialogs import ReviewerDialog

    asked = []

    def ask(cls, parent=None, current=""):
        asked.append(current)
        return "Dr. Test"

    monkeypatch.setattr(ReviewerDialog, "ask", classmethod(ask))
    return asked


@pytest.fixture(scope="session")
def bccd_images(shared_data):
    images = sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))
    assert len(images) >= 10
    return images


def copy_case(images, dest):
    """A case folder of our own (the review is saved beside the images; never in the shared fixtures)."""
    dest.mkdir(parents=True, exist_ok=True)
    for image in images:
        shutil.copy2(image, dest / image.name)
    return dest


@pytest.fixture
def case_folder(tmp_path, bccd_images):
    """Factory: a case folder of our own with the first ``n`` BCCD fields (all when n is None)."""
    def make(name="case", n=None):
        return copy_case(bccd_images[:n] if n else bccd_images, tmp_path / name)
    return make


class StallMeter:
    """The longest gap between ticks of a 10 ms timer: how long the event loop was ever blocked.

    ``longest`` is the wall-clock gap. ``longest_own`` is that gap less the time the operating system kept the GUI
    thread waiting for a CPU while it was ready to run (Linux ``/proc/.../schedstat``; elsewhere nothing is taken
    off): on a machine shared with other jobs (2 cores, several test runs and a training job) that wait is the
    machine's, not the window's, and on a quiet machine it is ~0, so the two agree. ``longest_busy`` is the most
    CPU time the GUI thread itself spent between two ticks: the window's own work, whatever the machine's load."""

    def __init__(self):
        from PySide6.QtCore import QTimer

        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.longest = 0.0
        self.longest_own = 0.0
        self.longest_busy = 0.0
        self.ticks = 0
        self.seconds = 0.0
        self.gaps = []           # (gap seconds, seconds after the start, seconds the OS kept the thread waiting)
        self._last = self._start = None
        self._schedstat = f"/proc/self/task/{threading.get_native_id()}/schedstat"
        self._ran, self._waited = self._sched()

    def _sched(self) -> tuple[float, float]:
        """(seconds on a CPU, seconds waiting for one) of the GUI thread so far; without /proc: its CPU time."""
        try:
            with open(self._schedstat) as f:
                ran, waited = f.read().split()[:2]
            return int(ran) / 1e9, int(waited) / 1e9
        except (OSError, ValueError):
            return time.thread_time(), 0.0

    def _tick(self):
        now = time.perf_counter()
        ran, waited = self._sched()
        if self._last is not None:
            gap = now - self._last
            queued = max(0.0, waited - self._waited)
            self.longest = max(self.longest, gap)
            self.longest_own = max(self.longest_own, gap - queued)
            self.longest_busy = max(self.longest_busy, ran - self._ran)
            self.gaps.append((gap, self._last - self._start, queued))
        self._last, self._ran, self._waited = now, ran, waited
        self.ticks += 1

    def worst(self, n=5) -> str:
        return ", ".join(f"{g * 1000:.0f} ms at {t:.2f} s (waiting for a CPU {q * 1000:.0f} ms)"
                         for g, t, q in sorted(self.gaps, reverse=True)[:n])

    def __enter__(self):
        self._last = self._start = time.perf_counter()
        self._ran, self._waited = self._sched()
        self.timer.start()
        return self

    def __exit__(self, *exc):
        self.timer.stop()
        self.seconds = time.perf_counter() - self._start

    def watched_throughout(self) -> bool:
        """Whether the timer really ticked through the run (at least half its 10-ms ticks, and 20 at least), so
        that its longest gap speaks for the whole run, however fast the machine finished it."""
        return self.ticks >= max(20, 0.5 * self.seconds / 0.010)


@pytest.fixture
def stall_meter():
    return StallMeter
