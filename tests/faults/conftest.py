"""The fault-injection suite: each test breaks something on purpose (a crash, a full disk, a second writer, a
tampered file, an odd image) and checks the message a user sees and that nothing already saved is lost."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _child_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def review_child():
    """Start review_child.py (another process labelling a case folder); returns the Popen."""
    def start(folder, prefix, count, kill_point=None, **env):
        args = [sys.executable, str(HERE / "review_child.py"), str(folder), prefix, str(count)]
        if kill_point:
            args.append(kill_point)
        return subprocess.Popen(args, env=_child_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return start


@pytest.fixture
def fault_window(make_window, monkeypatch):
    """Factory: a shown review window on the tiny model with the reviewer's name answered; closed at the end."""
    from leukviewer.gui.dialogs import ReviewerDialog

    monkeypatch.setattr(ReviewerDialog, "ask", classmethod(lambda cls, parent=None, current="": "Dr. Fault"))
    return make_window


@pytest.fixture
def bccd_case(tmp_path, shared_data):
    """A case folder of our own with ``n`` BCCD fields."""
    import shutil

    def make(name="case", n=2):
        dest = tmp_path / name
        dest.mkdir()
        for image in sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:n]:
            shutil.copy2(image, dest / image.name)
        return dest
    return make


@pytest.fixture
def run_cli():
    """Run ``python -m <module> args...`` in a child process with this checkout importable."""
    def run(module, *args, timeout=180, **env):
        return subprocess.run([sys.executable, "-m", module, *map(str, args)], env=_child_env(**env),
                              capture_output=True, text=True, timeout=timeout)
    return run


@pytest.fixture
def child_env():
    """The environment for a child process that imports this checkout."""
    return _child_env
