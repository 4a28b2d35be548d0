"""The one worker pattern: results, progress, errors and cancel reach the GUI thread as signals."""
import threading

from leukviewer.gui.worker import Worker, active_workers, start_worker


def test_generator_values_arrive_in_order_on_the_gui_thread(qtbot):
    gui = threading.get_ident()
    seen, threads = [], []

    def count(n):
        for i in range(n):
            threads.append(threading.get_ident())
            yield i
        return "done"

    worker = Worker(count, 5)
    worker.signals.yielded.connect(lambda v: (seen.append(v), threads.append(("slot", threading.get_ident()))))
    returned = []
    worker.signals.returned.connect(returned.append)
    with qtbot.waitSignal(worker.signals.finished, timeout=10_000):
        worker.start()
    assert seen == [0, 1, 2, 3, 4]
    assert all(t[1] == gui for t in threads if isinstance(t, tuple))
    assert all(t != gui for t in threads if not isinstance(t, tuple))
    assert returned == ["done"]


def test_cancel_stops_between_steps_and_still_finishes(qtbot):
    gate = threading.Event()
    produced = []

    def slow(worker):
        for i in range(1000):
            produced.append(i)
            worker.report_progress(i)
            if i == 2:
                gate.wait(5)
            yield i

    worker = Worker(slow)
    yielded = []
    worker.signals.yielded.connect(yielded.append)
    returned = []
    worker.signals.returned.connect(returned.append)
    with qtbot.waitSignal(worker.signals.finished, timeout=10_000):
        worker.start()
        qtbot.waitUntil(lambda: len(produced) >= 3, timeout=5_000)
        worker.cancel()
        gate.set()
    assert len(produced) <= 4 and returned == [] and worker.is_finished()
    qtbot.waitUntil(lambda: worker not in active_workers(), timeout=5_000)


def test_errors_arrive_as_a_signal_not_a_dead_thread(qtbot):
    def broken():
        raise RuntimeError("the slide is upside down")

    errors = []
    worker = Worker(broken)
    worker.signals.errored.connect(errors.append)
    with qtbot.waitSignal(worker.signals.finished, timeout=10_000):
        worker.start()
    assert len(errors) == 1 and "upside down" in str(errors[0])


def test_start_worker_connects_the_slots_and_a_function_may_ask_for_its_worker(qtbot):
    def answer(worker):
        worker.report_progress(0.5)
        return 42

    progress, returned = [], []
    worker = start_worker(answer, on_progress=progress.append, on_returned=returned.append)
    qtbot.waitUntil(lambda: returned == [42] and worker not in active_workers(), timeout=10_000)
    assert progress == [0.5]


def test_emitting_many_signals_keeps_the_reference_to_true(qtbot):
    """PySide6 6.12 drops a reference to True per emit; thousands of emits would crash the interpreter."""
    import sys

    from leukviewer.gui.signals import emit

    before = sys.getrefcount(True)
    worker = Worker(lambda: None)
    for _ in range(5000):
        emit(worker.signals.progress, 1)
    assert sys.getrefcount(True) >= before


def test_a_new_job_of_a_kind_cancels_the_old_one_and_only_the_latest_reaches_its_slots(qtbot):
    """The image on display, the analysis, a Grad-CAM map: the reviewer moved on, so the previous run's values
    (even those already queued for the GUI thread) must never show over the new one's."""
    from leukviewer.gui.worker import LatestJob

    release = threading.Event()

    def show(image, worker):
        if image == "first.jpg":
            release.wait(5)     # the first image is slow to decode: it finishes after the second one
        worker.report_progress(f"decoding {image}")
        return image

    job = LatestJob("display-image")
    shown, progress, finished = [], [], []
    first = job.start(show, "first.jpg", on_returned=shown.append, on_progress=progress.append,
                      on_finished=lambda: finished.append(1))
    second = job.start(show, "second.jpg", on_returned=shown.append, on_progress=progress.append,
                       on_finished=lambda: finished.append(2))
    assert first.is_cancelled() and not second.is_cancelled()
    release.set()
    qtbot.waitUntil(lambda: first.is_finished() and second.is_finished() and bool(finished), timeout=10_000)
    qtbot.wait(50)   # anything the first run queued has been delivered (or dropped) by now
    assert shown == ["second.jpg"] and progress == ["decoding second.jpg"] and finished == [2]

    third = job.start(show, "third.jpg", on_returned=shown.append)
    job.forget()     # e.g. the case was closed: its outcome is no longer wanted
    qtbot.waitUntil(third.is_finished, timeout=10_000)
    qtbot.wait(50)
    assert shown == ["second.jpg"] and not job.is_running()


def test_the_window_takes_its_long_lived_objects_out_of_full_garbage_collections(make_window):
    """A full pass of the garbage collector over everything the app loads (~0.5 M objects) held the GIL for
    0.3-0.4 s and stalled the window during an analysis; once the model is loaded they are frozen (gc.freeze)."""
    import gc

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    make_window()   # waits for the model
    assert gc.get_freeze_count() > 10_000
    gc.unfreeze()
