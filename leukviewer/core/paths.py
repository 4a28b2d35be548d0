"""The user's folders for leukviewer (each overridable by an environment variable, as tests do)."""
from __future__ import annotations

import errno
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
