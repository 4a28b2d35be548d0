"""``python -m training fit|cv|evaluate|export`` — the command line over the training library."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .augment import AugmentConfig
from .datasets import DatasetError

AUG_DEFAULTS = AugmentConfig()

EPILOG = """\
examples:
  # train EfficientNet-B3 on C-NMC fold_1 (subject-disjoint split) and write a model folder
  python -m training fit --data ~/leukviewer-data/cnmc --out ~/models/b3 --run-dir ~/runs/b3
  # continue it after an interruption
  python -m training fit --data ~/leukviewer-data/cnmc --out ~/models/b3 --run-dir ~/runs/b3 --resume
  # 3-fold leave-subjects-out cross-validation of the same recipe
  python -m training cv --data ~/leukviewer-data/cnmc --folds 3 --run-dir ~/runs/b3-cv
  # metrics of a model folder on a labelled folder (C-NMC crops, or a model that ignores scale; a model that
  # keeps physical cell size on other images: python -m leukviewer evaluate, the same options)
  python -m training evaluate --model assets/models/leukviewer-b3 --data ~/other-lab-cells --out /tmp/eval

For Research Use Only. Not for use in diagnostic procedures.
"""


def _add_recipe(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, help="data folder: C-NMC layout (fold_N/{all,hem}/UID_*.bmp or "
                   "{all,hem}/) or one folder per class")
    g.add_argument("--folds", type=int, nargs="*", help="C-NMC fold numbers to read (default: all present)")
    g.add_argument("--skip-unreadable", action="store_true", help="skip images that cannot be read (default: stop)")
    g = p.add_argument_group("model")
    g.add_argument("--backbone", default="EfficientNetB3", help="EfficientNetB0..B3 (default B3) or tiny (tests)")
    g.add_argument("--input-size", type=int, default=128, help="input side in pixels (default 128)")
    g.add_argument("--canvas-px", type=int, default=0,
                   help="keep cell size: centre each cell on a square of this many source pixels before resizing "
                        "(0: the paper's crop-to-fill, which hides cell size)")
    g.add_argument("--dropout", type=float, default=0.3)
    g.add_argument("--init", choices=["scratch", "imagenet", "model"], default="scratch",
                   help="initial weights: random, ImageNet from a local file, or a model folder (--parent)")
    g.add_argument("--imagenet-weights", help="path of efficientnetb3_notop.h5 (never downloaded)")
    g.add_argument("--parent", dest="parent_model", help="model folder to fine-tune or take the backbone from")
    g = p.add_argument_group("schedule")
    g.add_argument("--epochs", type=int, default=12, help="epochs with the backbone unfrozen (default 12)")
    g.add_argument("--head-epochs", type=int, default=0, help="epochs with the backbone frozen first (default 0)")
    g.add_argument("--lowres-epochs", type=int, default=0,
                   help="unfrozen epochs at --lowres-size px before the --epochs at --input-size (progressive "
                        "resizing: the same weights, about (input/lowres)^2 times cheaper per epoch)")
    g.add_argument("--lowres-size", type=int, help="input side of the low-resolution epochs")
    g.add_argument("--lr-lowres", type=float, help="peak learning rate of the low-resolution epochs (default --lr)")
    g.add_argument("--unfreeze", default="all", help="'all' or 'top:N' EfficientNet blocks (default all)")
    g.add_argument("--train-batchnorm", action="store_true",
                   help="with pre-trained weights, let BatchNorm layers learn (default: keep their statistics)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate of the unfrozen phase (cosine decay; "
                   "default 1e-3, and 1e-4 with --init model: a trained network is fine-tuned gently)")
    g.add_argument("--lr-head", type=float, default=1e-3)
    g.add_argument("--batch-size", type=int, default=32)
    g.add_argument("--patience", type=int, default=4, help="early stopping on the monitored figure (0: off)")
    g.add_argument("--monitor", choices=["val_loss", "val_auc", "last"], default="val_loss",
                   help="validation figure that picks the best epoch and drives early stopping; val_auc ranks "
                        "cells of unseen subjects, val_loss also weighs their calibration; last keeps the last "
                        "epoch of the schedule (validation is still measured and used for calibration)")
    g.add_argument("--max-steps-per-epoch", type=int, help="cap the batches per epoch (quick trials)")
    g.add_argument("--class-weights", action="store_true", help="weight the loss by class (besides oversampling)")
    g.add_argument("--no-oversample", action="store_true", help="do not oversample the minority class")
    g.add_argument("--sample-weights", metavar="CSV", help="each training image's weight in the loss: rows "
                   "'path,weight', paths relative to --data (e.g. the weights.csv of 'wbc folders --balance-size')")
    g.add_argument("--no-augment", action="store_true", help="train without augmentation")
    g.add_argument("--stain-sigma", type=float, default=AUG_DEFAULTS.stain_sigma,
                   help="multiplicative jitter of each stain's optical density")
    g.add_argument("--stain-bias", type=float, default=AUG_DEFAULTS.stain_bias,
                   help="additive jitter of each stain's optical density")
    g.add_argument("--brightness", type=float, default=AUG_DEFAULTS.brightness, help="brightness jitter (+- fraction)")
    g.add_argument("--contrast", type=float, default=AUG_DEFAULTS.contrast, help="contrast jitter (+- fraction)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--tta", type=int, nargs="?", const=8, default=0, choices=(0, 1, 2, 4, 8), metavar="N",
                   help="calibrate and evaluate on N flips/rotations averaged (alone: 8); the model folder records "
                        "it and the app averages the same views")
    g = p.add_argument_group("split")
    g.add_argument("--val-fraction", type=float, default=0.15)
    g.add_argument("--test-fraction", type=float, default=0.15)
    g.add_argument("--leaky-image-split", action="store_true",
                   help="random IMAGE-level 70/10/20 split as in the paper; leaks patients across parts "
                        "(reports say so)")
    g = p.add_argument_group("run")
    g.add_argument("--run-dir", default="", help="checkpoint folder (default: the user cache, outside the repo)")
    g.add_argument("--name", default="leukviewer-classifier")
    g.add_argument("--version", default="0.1.0")
    g.add_argument("--resume", action="store_true", help="continue the unfinished run in --run-dir")


def _config_from(args):
    from .config import default_lr
    from .loop import TrainConfig

    split = "image" if args.leaky_image_split else "subject"
    lr = args.lr if args.lr is not None else default_lr(args.init)
    return TrainConfig(
        data=str(Path(args.data).expanduser()), run_dir=args.run_dir, output=getattr(args, "out", None),
        name=args.name, version=args.version, folds=args.folds, backbone=args.backbone,
        input_size=args.input_size, canvas_px=args.canvas_px, dropout=args.dropout, init=args.init, imagenet_weights=args.imagenet_weights,
        parent_model=args.parent_model, split=split, leaky_image_split=args.leaky_image_split,
        val_fraction=(0.10 if args.leaky_image_split and args.val_fraction == 0.15 else args.val_fraction),
        test_fraction=(0.20 if args.leaky_image_split and args.test_fraction == 0.15 else args.test_fraction),
        oversample=not args.no_oversample, class_weights=args.class_weights,
        sample_weights=(str(Path(args.sample_weights).expanduser().resolve()) if getattr(args, "sample_weights", None)
                        else None),
        augment=(AugmentConfig.off() if args.no_augment else AugmentConfig(
            stain_sigma=args.stain_sigma, stain_bias=args.stain_bias, brightness=args.brightness,
            contrast=args.contrast)).to_dict(),
        skip_unreadable=args.skip_unreadable, batch_size=args.batch_size, head_epochs=args.head_epochs,
        epochs=args.epochs, lowres_epochs=args.lowres_epochs,
        lowres_size=args.lowres_size, lr_lowres=args.lr_lowres, unfreeze=args.unfreeze,
        train_batchnorm=args.train_batchnorm, lr_head=args.lr_head, lr=lr, patience=args.patience,
        max_steps_per_epoch=args.max_steps_per_epoch, seed=args.seed, tta=args.tta, monitor=args.monitor)


class _Bar:
    """A terminal progress bar fed by ProgressEvents."""

    def __init__(self):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.bar = None
        self.key = None

    def __call__(self, e) -> None:
        if e.stage == "train" and e.batches:
            key = (e.phase, e.epoch)
            if key != self.key:
                self.close()
                self.bar = self._tqdm(total=e.batches, desc=f"epoch {e.epoch}/{e.epochs} {e.phase}", unit="batch",
                                      leave=True, file=sys.stderr)
                self.key = key
            self.bar.n = e.batch
            logs = {k: round(v, 4) for k, v in e.logs.items() if k in ("loss", "accuracy", "val_loss",
                                                                         "val_accuracy", "val_auc")}
            self.bar.set_postfix(logs, refresh=True)
        elif e.message:
            self.close()
            print(e.message, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            self.key = None


def main(argv=None, *, prog: str = "python -m training", um_per_px_of=None, cell_finder=None) -> int:
    """Run one command. The app runs its training commands through here, passing what only it has: its scale
    measure for ``evaluate`` (``um_per_px_of``, see ``evaluate.evaluate_folder``) and its localiser for
    ``wbc cells`` (``cell_finder``, see ``sources.CellFinder``)."""
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Train, cross-validate, evaluate, export and describe leukviewer's blast (ALL) / normal (HEM) "
                    "classifier. Splits keep each patient on one side unless told otherwise.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="train a model and write a model folder",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_recipe(p)
    p.add_argument("--out", help="model folder to write at the end (must not exist)")
    p.add_argument("--config", help="JSON file with TrainConfig fields (overrides nothing given on the line)")
    p.add_argument("--strategy", choices=["none", "mirrored", "multiworker"], default="none",
                   help="tf.distribute: mirrored (this machine's GPUs), multiworker (the machines in TF_CONFIG); "
                        "--batch-size is per replica, learning rates scale with the replicas (training/distribute.py)")

    p = sub.add_parser("cv", help="leave-subjects-out cross-validation of a recipe (per fold and mean ± sd)")
    _add_recipe(p)
    p.add_argument("--k", "--cv-folds", dest="k", type=int, default=3, help="number of subject folds")

    p = sub.add_parser("evaluate", help="metrics of a model folder on a labelled folder (a physical-scale model on "
                                        "images other than C-NMC crops: python -m leukviewer evaluate)")
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--data", required=True, help="labelled data folder")
    p.add_argument("--out", help="folder for metrics.json and figures")
    p.add_argument("--tta", type=int, nargs="?", const=8, default=None, choices=(1, 2, 4, 8), metavar="N",
                   help="average N flips/rotations (alone: 8); default: what the model folder says")

    p = sub.add_parser("export", help="write a model folder from a run's best checkpoint")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--out", required=True, help="model folder to write (must not exist)")

    p = sub.add_parser("card", help="(re)write MODEL_CARD.md of a model folder, with cross-validation figures")
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--cv-summary", help="cv_summary.json written by 'python -m training cv'")
    p.add_argument("--paper-protocol", help="result.json of a --leaky-image-split run, shown for contrast")
    p.add_argument("--data-source", help="text naming the training data's source and licence")
    p.add_argument("--section", action="append", default=[], metavar="TITLE=FILE",
                   help="add a section (Markdown from FILE) under TITLE, e.g. the table of recipes compared")

    from .calibrate import add_parser as add_calibrate_parser

    add_calibrate_parser(sub)
    from .wbc import add_parser as add_wbc_parser

    add_wbc_parser(sub)
    from .distill import add_parser as add_distill_parser

    add_distill_parser(sub)
    p = sub.add_parser("manifest", help="(re)write manifest.sha256 of a model folder: the SHA-256 of every file "
                                        "that changes a result, checked at every load")
    p.add_argument("folder", help="model folder")
    p.add_argument("--check", action="store_true", help="only check the folder against its manifest")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    bar = _Bar()
    try:
        if args.command == "fit":
            from .loop import TrainConfig, train

            config = _config_from(args)
            if args.config:
                config = TrainConfig.from_dict({**config.to_dict(),
                                                **json.loads(Path(args.config).read_text(encoding="utf-8"))})
            result = train(config, bar, resume=args.resume, strategy=args.strategy)
            bar.close()
            if result.cancelled:
                return 130
            _print_metrics(result.metrics)
            print(f"run folder: {result.run_dir}")
            if result.model_folder:
                print(f"model folder: {result.model_folder}")
        elif args.command == "cv":
            from .evaluate import cross_validate, format_cv_table

            summary = cross_validate(_config_from(args), args.k, bar, resume=True)
            bar.close()
            print(format_cv_table(summary))
            print(f"summary: {Path(_config_from(args).resolved_run_dir()) / 'cv_summary.json'}")
        elif args.command == "evaluate":
            from .evaluate import evaluate_folder

            m = evaluate_folder(args.model, args.data, args.out, tta=args.tta, on_progress=bar,
                                um_per_px_of=um_per_px_of)
            bar.close()
            _print_metrics({"evaluation": m})
            if m.get("warning"):
                print("WARNING: " + m["warning"])
        elif args.command == "card":
            from .card import CNMC_SOURCE, load_json, write_model_card
            from .modelfolder import read_meta

            paper = load_json(args.paper_protocol)
            paper_config = None
            if paper and "metrics" in paper:
                paper_config = paper.get("training", {}).get("config")
                paper = paper["metrics"].get("test") or {}
            layout = read_meta(args.model).get("training", {}).get("data", {}).get("layout")
            sections = {}
            for item in args.section:
                title, sep, file = item.partition("=")
                if not sep or not title.strip():
                    raise ValueError(f"--section wants TITLE=FILE, got {item!r}")
                sections[title.strip()] = Path(file).read_text(encoding="utf-8").strip()
            path = write_model_card(args.model, cv_summary=load_json(args.cv_summary), paper_protocol=paper,
                                    data_source=args.data_source or (CNMC_SOURCE if layout == "cnmc" else None),
                                    extra_sections=sections, paper_config=paper_config)
            print(f"model card: {path}")
        elif args.command == "wbc":
            from .wbc import run as run_wbc

            return run_wbc(args, cell_finder)
        elif args.command == "calibrate":
            from .calibrate import run as run_calibrate
            from .modelfolder import ModelFolderError

            try:
                run_calibrate(args)
            except ModelFolderError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
        elif args.command == "distill":
            from .distill import run as run_distill

            return run_distill(args)
        elif args.command == "manifest":
            from .modelfolder import MANIFEST_FILE, ModelFolderError, verify_folder, write_manifest

            try:
                _, digest = verify_folder(args.folder)   # the weights must match model.json before sealing
                if not args.check:
                    digest = write_manifest(args.folder)
            except ModelFolderError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            if digest is None:
                print(f"{args.folder} has no {MANIFEST_FILE}; write it with: python -m training manifest "
                      f"{args.folder}", file=sys.stderr)
                return 1
            print(f"{Path(args.folder) / MANIFEST_FILE} {'verified' if args.check else 'written'}: SHA-256 {digest}")
        elif args.command == "export":
            from .loop import export_run

            r = export_run(args.run_dir, args.out, bar)
            bar.close()
            print(f"model folder: {r.model_folder}")
    except KeyboardInterrupt:
        bar.close()
        print("interrupted; the last epoch's checkpoint is kept (use --resume)", file=sys.stderr)
        return 130
    except (DatasetError, FileExistsError, FileNotFoundError, ValueError) as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _print_metrics(metrics: dict) -> None:
    for part, m in metrics.items():
        if not isinstance(m, dict):
            if isinstance(m, str):
                print(m)
            continue
        keys = ("n", "accuracy", "weighted_f1", "balanced_accuracy", "sensitivity", "specificity", "roc_auc", "ece")
        figures = ", ".join(f"{k} {m[k]:.3f}" if isinstance(m.get(k), float) else f"{k} {m.get(k)}"
                            for k in keys if k in m)
        print(f"{part}: {figures}")
