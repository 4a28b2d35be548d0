"""``leukviewer [FOLDER]`` (the review window), ``leukviewer batch ...``, ``leukviewer report ...`` and
``leukviewer retrain ...`` (headless),
``leukviewer --self-test`` / ``--smoke-test`` (installation checks, see ``cli/selftest.py``): one entry point, the same
in a checkout and in the frozen bundle."""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from . import RUO_NOTICE, __version__  # noqa: E402

COMMANDS = ("batch", "report", "retrain")


def _prepare_engine(model_dir: str | None) -> int:
    """Convert the model folder to LiteRT unless a verified conversion of it exists (then this is instant)."""
    import time

    from .core.model.active import resolve_model
    from .core.model.classifier import CellClassifier
    from .core.model.engine import find_conversion

    t0 = time.perf_counter()
    folder = resolve_model(model_dir).folder
    try:
        found = find_conversion(folder)
        if found is None:
            classifier = CellClassifier(folder, backend="tflite", warm_up=True)
            name, version, found = classifier.info.name, classifier.info.version, classifier.engine.tflite_path()
        else:
            from .core.model.descriptor import ModelDescriptor

            described = ModelDescriptor.from_folder(folder)
            name, version = described.name, described.version
    except Exception as e:  # a clear line, not a traceback
        print(f"could not prepare the LiteRT engine: {e}", file=sys.stderr)
        return 1
    print(f"LiteRT engine ready for {name} {version} in {time.perf_counter() - t0:.1f} s: {found}")
    print(RUO_NOTICE)
    return 0


def _window_size(text: str) -> tuple[int, int]:
    """"1366x768" -> (1366, 768)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 1366x768, not {text!r}") from None
    if width < 200 or height < 200:
        raise argparse.ArgumentTypeError(f"a window of {width}x{height} is too small to check")
    return width, height


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("evaluate", "cells"):   # training steps run with the app's image code
        from .cli.training import main as training_command

        return training_command(argv)
    if argv and argv[0] in COMMANDS:
        parser = argparse.ArgumentParser(prog="leukviewer", description=f"leukviewer {__version__}. {RUO_NOTICE}")
        sub = parser.add_subparsers(dest="command", required=True)
        from .cli import batch, report as report_cli, retrain as retrain_cli

        batch.add_arguments(sub.add_parser("batch", help="analyse a folder headless: cells.csv, images.csv, "
                                                         "summary.json"))
        report_cli.add_arguments(sub.add_parser("report", help="PDF/CSV/GeoJSON report of a reviewed folder"))
        retrain_cli.add_arguments(sub.add_parser("retrain", help="train a new model on the cells reviewed in "
                                                                 "case folders (the retraining wizard, headless)"))
        args = parser.parse_args(argv)
        if args.command == "batch":
            return batch.run(args)
        if args.command == "retrain":
            return retrain_cli.run(args)
        return report_cli.run(args)

    parser = argparse.ArgumentParser(
        prog="leukviewer", description=f"leukviewer {__version__}: review blood smears for leukemic blasts. "
                                       f"{RUO_NOTICE}",
        epilog="headless commands: leukviewer batch --help, leukviewer report --help, leukviewer retrain --help; "
               "for training: leukviewer evaluate --help, leukviewer cells --help")
    parser.add_argument("--version", action="version", version=f"leukviewer {__version__}")
    parser.add_argument("folder", nargs="?", help="case folder to open")
    parser.add_argument("--model", help="model folder (default: the bundled model)")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation without a display or network: verify the model's SHA-256, "
                             "classify the bundled sample cell, print the result; exit 0 when it passes")
    parser.add_argument("--smoke-test", action="store_true",
                        help="open the review window offscreen on the bundled sample, wait for its analysis, "
                             "exit 0 when it passes")
    parser.add_argument("--screenshot", metavar="PNG", help="with --smoke-test: save the window's picture here")
    parser.add_argument("--window-size", metavar="WxH", type=_window_size,
                        help="with --smoke-test: the window's size, e.g. 1366x768")
    parser.add_argument("--prepare-engine", action="store_true",
                        help="convert the model to LiteRT once (cached by its weights' hash) so analyses run on "
                             "the faster engine from then on; exit 0 when done")
    args = parser.parse_args(argv)
    if args.prepare_engine:
        return _prepare_engine(args.model)
    if args.self_test or args.smoke_test:
        from .cli import selftest

        if args.self_test:
            code = selftest.run_self_test(model_dir=args.model)
            if code or not args.smoke_test:
                return code
        return selftest.run_smoke_test(model_dir=args.model, screenshot=args.screenshot,
                                       window_size=args.window_size)
    from .gui.app import run_app

    return run_app(folder=args.folder, model_dir=args.model)


if __name__ == "__main__":
    sys.exit(main())
