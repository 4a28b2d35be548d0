"""Emitting a Qt signal from Python, safely on every PySide6 we run on.

PySide6 6.12.0 on Python 3.11 drops one reference to ``True`` on every ``SignalInstance.emit()`` (measured:
exactly -1 per call, any signal, any thread). ``True`` is not immortal before Python 3.12, so a long review
session would end in "Fatal Python error: bool_dealloc". :func:`emit` emits and gives the reference back when,
and only when, the running PySide6 is measured to take it.
"""
from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None


class _Probe(QObject):
    probe = Signal()


def _references_taken_per_emit() -> int:
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(8):
        probe.probe.emit()
    taken = (before - sys.getrefcount(True)) // 8
    for _ in range(8 * max(taken, 0)):
        _incref(True)  # give back what the probe itself took
    return max(taken, 0)


TRUE_REFERENCES_TAKEN = _references_taken_per_emit()


def emit(signal, *args) -> None:
    """``signal.emit(*args)``, compensating PySide6's lost reference to True where there is one."""
    signal.emit(*args)
    for _ in range(TRUE_REFERENCES_TAKEN):
        _incref(True)
