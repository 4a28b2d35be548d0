"""``leukviewer`` (the review window) and ``leukviewer batch ...`` (headless): one entry point."""
from __future__ import annotations

import argparse
import sys

from . import RUO_NOTICE, __version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="leukviewer", description=f"leukviewer {__version__}. {RUO_NOTICE}")
    parser.add_argument("--version", action="version", version=f"leukviewer {__version__}")
    parser.parse_args(argv)
    print(f"leukviewer {__version__} — {RUO_NOTICE}\n"
          "The review window is not built yet (it arrives with the review-application issue). What works today:\n"
          "  python -m training --help     train, cross-validate, evaluate and export the classifier",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
