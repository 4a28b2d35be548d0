import subprocess
import sys

CHECK = r"""
import importlib, pkgutil, sys
sys.modules["PySide6"] = None   # any attempt to import Qt now fails loudly
sys.modules["shiboken6"] = None
import leukviewer.core
for m in pkgutil.walk_packages(leukviewer.core.__path__, "leukviewer.core."):
    importlib.import_module(m.name)
import training, training.datasets, training.splits, training.preprocess, training.modelfolder
loaded = [n for n, m in sys.modules.items() if m is not None and n.split(".")[0] in ("PySide6", "shiboken6", "PyQt5", "PyQt6")]
assert not loaded, loaded
print("ok", len(list(pkgutil.walk_packages(leukviewer.core.__path__))))
"""


def test_core_imports_no_qt():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def test_core_and_training_cli_start_without_tensorflow():
    """Heavy imports happen late: the data and split code import no TensorFlow."""
    code = ("import sys, leukviewer.core, training.datasets, training.splits, training.preprocess, "
            "training.modelfolder, training.cli; assert 'tensorflow' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
