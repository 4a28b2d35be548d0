"""Test-only entry point: ``leukviewer-probe SCRIPT.py [ARGS]`` runs a Python file with the frozen bundle's Python,
modules and libraries, so tests/test_installer.py can train a network inside the bundle. Built only with
LEUKVIEWER_BUILD_PROBE=1 (build_installer.spec); never part of a shipped installer."""
import runpy
import sys

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: leukviewer-probe SCRIPT.py [ARGS]")
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
