"""``leukviewer`` (the review window) and ``leukviewer batch ...`` (headless): one entry point."""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from . import RUO_NOTICE, __version__  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="leukviewer", description=f"leukviewer {__version__}. {RUO_NOTICE}",
                                     epilog="Without a command, the review window opens.")
    parser.add_argument("--version", action="version", version=f"leukviewer {__version__}")
    sub = parser.add_subparsers(dest="command")
    from . import batch

    batch.add_arguments(sub.add_parser("batch", help="analyse a folder headless: cells.csv, images.csv, "
                                                     "summary.json"))
    args = parser.parse_args(argv)
    if args.command == "batch":
        return batch.run(args)
    print(f"leukviewer {__version__} — {RUO_NOTICE}\n"
          "The review window is not built yet (it arrives with the review-application issue). What works today:\n"
          "  leukviewer batch FOLDER --out DIR [--model MODEL_DIR]   analyse a folder headless\n"
          "  python -m training --help                               train, evaluate and export the classifier",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
