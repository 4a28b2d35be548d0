"""The user's folders for leukviewer (each overridable by an environment variable, as tests do) and THE
review-directory resolver: where a case folder's review and stored results are. Every caller asks here."""
from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

_KINDS = {"config": ("LEUKVIEWER_CONFIG_DIR", "user_config_dir"),
          "data": ("LEUKVIEWER_DATA_DIR", "user_data_dir"),
          "cache": ("LEUKVIEWER_CACHE_DIR", "user_cache_dir")}


def user_dir(kind: str) -> Path:
    """``kind`` is config, data or cache: the variable LEUKVIEWER_<KIND>_DIR, else the platform's folder."""
    variable, function = _KINDS[kind]
    env = os.environ.get(variable)
    if env:
        return Path(env)
    import platformdirs

    return Path(getattr(platformdirs, function)("leukviewer"))


def user_data_dir() -> Path:
    return user_dir("data")


# ---------------------------------------------------------------------------------------------- review directory

STATE_DIR = ".leukviewer"        # beside the case folder's images
STATE_FILE = "review.json"


def fallback_review_dir(folder: str | Path) -> Path:
    """Where the review of a case folder that cannot be written goes: the user's data folder, one per path."""
    folder = Path(folder).resolve()
    return user_data_dir() / "reviews" / hashlib.sha1(str(folder).encode("utf-8")).hexdigest()[:16]


def _can_write(path: Path) -> bool:
    return os.access(path, os.W_OK)


def saved_review_dir(folder: str | Path) -> Path | None:
    """The directory holding the folder's saved review (``review.json``), or None. Creates nothing.

    Beside the folder while that can be written; else the one in the user's data folder (written while the folder
    was read-only); else the one beside a folder that has since become read-only (an archived case), as it is."""
    folder = Path(folder).resolve()
    beside, fallback = folder / STATE_DIR, fallback_review_dir(folder)
    if (beside / STATE_FILE).is_file() and _can_write(beside):
        return beside
    if (fallback / STATE_FILE).is_file():
        return fallback
    if (beside / STATE_FILE).is_file():
        return beside
    return None


def review_dirs(folder: str | Path) -> list[Path]:
    """Both places a case folder's review and stored results can be: beside it, and in the user's data folder (a
    case archived read-only after its analysis keeps its stored results beside it while the review moves)."""
    folder = Path(folder).resolve()
    return [folder / STATE_DIR, fallback_review_dir(folder)]


def review_dir(folder: str | Path) -> Path:
    """Where a case folder's review and stored results are read and saved: where it is saved already, else beside
    the folder when it can be written, else the user's data folder. Creates nothing: the directory is made by the
    first save, so opening a folder only to read it leaves no trace."""
    saved = saved_review_dir(folder)
    if saved is not None:
        return saved
    folder = Path(folder).resolve()
    beside = folder / STATE_DIR
    if _can_write(beside if beside.is_dir() else folder):
        return beside
    return fallback_review_dir(folder)


_OS_ERROR_REASONS = {
    errno.EACCES: "permission denied (the folder is read-only or belongs to someone else)",
    errno.EPERM: "permission denied",
    errno.EROFS: "the disk is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.ENOTDIR: "part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "the path is too long",
    errno.EIO: "input/output error (disk or network drive failing?)",
}


def os_error_reason(e: OSError) -> str:
    """An OSError's cause in words a user can act on ("the disk is full", "permission denied ...")."""
    return _OS_ERROR_REASONS.get(e.errno) or e.strerror or str(e)


# ---------------------------------------------------------------------------------------------- guarded deletion

class OutsideFolderError(ValueError):
    """A deletion refused: the path (read from a file, so possibly damaged or crafted) leads outside its folder."""


def remove_tree_inside(path: str | Path, base: str | Path) -> None:
    """Delete the folder ``path`` and everything in it, but only if it lies inside ``base`` (links followed);
    otherwise raise :class:`OutsideFolderError` and delete nothing. Missing folders are fine."""
    import shutil

    target, base = Path(path).resolve(), Path(base).resolve()
    if target == base or not target.is_relative_to(base):
        raise OutsideFolderError(f"refusing to delete {path}: it is not inside {base}")
    shutil.rmtree(target, ignore_errors=True)
