"""The user's folders for leukviewer (each overridable by an environment variable, as tests do)."""
from __future__ import annotations

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
