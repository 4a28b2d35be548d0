"""Atomic, durable file writes for everything leukviewer saves (review, settings, model registry, stored results):
a temporary file beside the target, synced, renamed over it, the directory synced. A reader, a crash or a full disk
sees the old file or the new one, never half of it.

One implementation: the training library writes model folders the same way, and (it never imports the app) holds
it; the app imports it from here."""
from __future__ import annotations

import json
from pathlib import Path

from training.modelfolder import atomic_write_bytes, atomic_write_text, fsync_dir, replace_folder

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "fsync_dir", "replace_folder"]


def atomic_write_json(path: Path, data) -> None:
    """Write ``data`` as indented UTF-8 JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=1, ensure_ascii=False))
