"""scripts/bootstrap.sh converts the bundled model to LiteRT when it installs (so the app starts on the faster
engine), and not on every later start."""
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bootstrap_converts_the_bundled_model_at_install_and_not_again(tmp_path):
    root = tmp_path / "checkout"
    for rel in ("scripts/bootstrap.sh", "pyproject.toml"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    (root / "assets/models/leukviewer-b3").mkdir(parents=True)
    (root / "assets/models/leukviewer-b3/model.json").write_text("{}")
    calls = tmp_path / "calls.txt"
    python = root / ".venv" / "bin" / "python"     # stands in for the venv's Python: records what it is asked
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> "{calls}"\n')
    python.chmod(0o755)
    first = subprocess.run([str(root / "scripts/bootstrap.sh")], capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    asked = calls.read_text().splitlines()
    assert asked[-1] == "-m leukviewer --prepare-engine" and any("pip install" in a for a in asked)
    assert "converting the bundled model to LiteRT" in first.stderr
    again = subprocess.run([str(root / "scripts/bootstrap.sh")], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and calls.read_text().splitlines() == asked    # installed: nothing to do
