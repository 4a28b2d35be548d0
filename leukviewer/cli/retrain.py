"""``leukviewer retrain CASE... --out MODEL_DIR``: retrain headless on the cells reviewed in the app.

The same steps as the retraining wizard, from ``leukviewer.core.retrain``: the reviewed cells of each case folder
become a data set (one subject per case; UNCERTAIN cells left out), optionally joined with a labelled folder
(``--data``), checked; the choices become a ``training.TrainConfig`` through the wizard's plan and run with
``training.train``; the new model folder gets its card. The model is written to ``--out``; ``--activate`` also
adds it to the app's models and makes it the active one (the wizard's Accept). Ctrl+C stops after the current batch
and writes no model folder.
"""
from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from .. import RUO_NOTICE


def add_arguments(p) -> None:
    from ..core.retrain.plan import BACKBONE_CHOICES, FREEZE_CHOICES, INIT_CHOICES

    p.add_argument("cases", nargs="+", metavar="CASE", help="case folder(s) reviewed in leukviewer (each case is one "
                                                            "subject: its cells stay on one side of the split)")
    p.add_argument("--out", required=True, help="the new model folder (must not exist yet)")
    p.add_argument("--data", metavar="FOLDER", help="a labelled folder (C-NMC layout, or all/ and hem/) to train on "
                                                    "together with the reviewed cells")
    p.add_argument("--init", choices=INIT_CHOICES, default="model",
                   help="start from: model (fine-tune --parent, default the active model), imagenet, scratch")
    p.add_argument("--parent", metavar="MODEL_DIR", help="with --init model: the model folder to fine-tune "
                                                         "(default: the active model)")
    p.add_argument("--imagenet-weights", metavar="FILE", help="with --init imagenet: the local ImageNet weight file")
    p.add_argument("--backbone", help=f"network ({', '.join(BACKBONE_CHOICES)}; default: the parent's when "
                                      "fine-tuning, else EfficientNetB3)")
    p.add_argument("--input-size", type=int, metavar="PX", help="input size (default: the parent's, else 128)")
    p.add_argument("--epochs", type=int, help="epochs, both phases (default: 8 fine-tuning, 20 otherwise)")
    p.add_argument("--freeze", choices=[key for key, _ in FREEZE_CHOICES],
                   help="backbone: frozen_then_unfrozen (default), unfrozen (default from scratch), frozen")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-augment", action="store_true", help="no flips, turns, rotations, scaling, stain jitter")
    p.add_argument("--image-split", action="store_true",
                   help="split by image, not by subject (cells of one patient land on both sides: figures flatter)")
    p.add_argument("--skip-unreadable", action="store_true", help="leave unreadable images out, train on the rest")
    p.add_argument("--name", default="", help="the new model's name (default: <parent name>-retrained)")
    p.add_argument("--version", default="", help="the new model's version (default: today's date)")
    p.add_argument("--patience", type=int, help="stop after this many epochs without a better validation loss")
    p.add_argument("--workers", type=int, help="threads for reading images (default: all cores)")
    p.add_argument("--activate", action="store_true", help="also add the new model to the app's models and make it "
                                                           "the active one (the model manager can roll back)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def run(args) -> int:
    from datetime import datetime

    from ..core.model.active import BUNDLED, REGISTRY, resolve_model
    from ..core.model.registry import ModelRegistry
    from ..core.retrain.data import reviewed_cases
    from ..core.retrain.plan import PlanError, RetrainChoices, default_epochs, fine_tune_basis, parent_model_of
    from ..core.retrain.session import RetrainSession

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        return fail(f"{out} exists: the new model folder must be a new (or empty) folder", 2)
    missing = [c for c in args.cases if not Path(c).is_dir()]
    if missing:
        return fail(f"not a folder: {', '.join(missing)}", 2)
    reviewed = reviewed_cases(args.cases)
    if not reviewed:
        return fail("no reviewed case: none of " + ", ".join(args.cases) + " has a saved review with reviewed "
                    "cells (open it in leukviewer and review its cells first)", 2)
    if args.data and not Path(args.data).is_dir():
        return fail(f"--data {args.data} is not a folder", 2)

    choices = RetrainChoices(init=args.init, batch_size=args.batch_size, augment=not args.no_augment,
                             by_subject=not args.image_split, skip_unreadable=args.skip_unreadable,
                             extra={k: v for k, v in (("patience", args.patience), ("workers", args.workers))
                                    if v is not None})
    parent = None
    try:
        if args.init == "model":
            resolved = resolve_model(args.parent)   # --parent, else $LEUKVIEWER_MODEL, the active or bundled model
            if resolved.note:
                print(f"warning: {resolved.note}", file=sys.stderr)
            if resolved.source in (REGISTRY, BUNDLED):
                registry = ModelRegistry()
                parent = parent_model_of(None, registry.active() if resolved.source == REGISTRY else registry.bundled())
            else:
                parent = parent_model_of(str(resolved.folder), None)
            choices.parent_model = str(parent.folder)
            choices.backbone, parent_size = fine_tune_basis(parent.meta)
            choices.input_size = args.input_size or parent_size
            if args.backbone and args.backbone != choices.backbone:
                raise PlanError(f"fine-tuning keeps the parent's backbone ({choices.backbone}), not {args.backbone}")
        else:
            choices.backbone = args.backbone or choices.backbone
            choices.input_size = args.input_size or choices.input_size
        if args.init == "imagenet":
            from training.model import WeightsError, find_imagenet_weights

            try:
                choices.imagenet_weights = str(find_imagenet_weights(choices.backbone, args.imagenet_weights))
            except WeightsError as e:
                raise PlanError(f"ImageNet weights are not available: {e}") from None
    except PlanError as e:
        return fail(str(e), 2)
    choices.epochs = args.epochs or default_epochs(args.init)
    choices.freeze = args.freeze or ("unfrozen" if args.init == "scratch" else "frozen_then_unfrozen")
    base = parent.meta.get("name", "leukviewer") if parent else "leukviewer"
    choices.name = args.name or f"{base}-retrained"
    choices.version = args.version or datetime.now().strftime("%Y.%m.%d")

    session = RetrainSession.create()   # the exported cells, the combined data, the checkpoints: removed at the end
    try:
        return train_in_session(args, session, [str(r.folder) for r in reviewed], choices, parent, out)
    finally:
        session.discard()


def train_in_session(args, session, cases: list[str], choices, parent, out: Path) -> int:
    from ..core.model.registry import ModelRegistry
    from ..core.retrain.accept import add_to_registry
    from ..core.retrain.card import write_retrain_card
    from ..core.retrain.compare import format_value
    from ..core.retrain.data import prepare_data, too_few_cells
    from ..core.retrain.plan import PlanError, train_config
    from ..core.retrain.run import run_training

    say = (lambda text: None) if args.quiet else (lambda text: print(text, flush=True))
    say(f"reading the reviewed cells of {len(cases)} case(s)" + (f" and {args.data}" if args.data else ""))
    prepared = prepare_data(args.data, cases, session.root)
    for note in prepared.export.notes() if prepared.export else []:
        print(f"note: {note}")
    if prepared.error:
        return fail(prepared.error)
    check = prepared.check
    if not check.ok and not (args.skip_unreadable and check.usable_without_unreadable):
        hint = " (--skip-unreadable leaves them out)" if check.usable_without_unreadable else ""
        return fail("the data cannot be used for training: " + "; ".join(check.errors) + hint)
    few = too_few_cells(check.summary)
    if few:
        return fail(few)
    for warning in check.warnings:
        print(f"warning: {warning}")
    summary = check.summary
    say(f"{summary['images']} cells (" + ", ".join(f"{c} {n}" for c, n in summary["per_class"].items()) +
        f") from {summary.get('subjects', '?')} subject(s)")
    try:
        config = train_config(choices, str(prepared.root), str(session.run_dir), str(out))
    except PlanError as e:
        return fail(str(e), 2)

    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *a: stop.set()) \
        if threading.current_thread() is threading.main_thread() else None

    def progress(event):
        if event.stage == "train" and event.message:
            say(f"epoch {event.epoch}/{event.epochs} ({event.phase}): " +
                ", ".join(f"{k} {v:.3f}" for k, v in event.logs.items()))
        elif event.stage in ("prepare", "evaluate", "export") and event.message:
            say(event.message)

    try:
        result = run_training(config, on_progress=progress, should_stop=stop.is_set)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if result.cancelled:
        print(f"stopped; no model folder was written to {out}", file=sys.stderr)
        return 130
    write_retrain_card(result.model_folder, config, prepared.sources, summary, parent, None)
    test = (result.metrics or {}).get("test") or {}
    print(f"model folder written: {result.model_folder} ({config.name} {config.version}, "
          f"{result.meta.get('training', {}).get('epochs_trained')} epoch(s))")
    if test:
        print(f"held-out test subjects: {test.get('n')} cells, weighted F1 {format_value(test.get('weighted_f1'))}, "
              f"sensitivity (ALL) {format_value(test.get('sensitivity'))}, specificity (HEM) "
              f"{format_value(test.get('specificity'))}")
    if args.activate:
        model = add_to_registry(ModelRegistry(), result.model_folder, activate=True)
        print(f"added to the app's models as {model.name} and made active (Models → Model manager rolls back)")
    else:
        print(f"use it with --model {result.model_folder}, or add it to the app's models with --activate")
    print(RUO_NOTICE)
    return 0
