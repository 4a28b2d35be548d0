"""A model folder's calibration fitted again, the network untouched: the temperature, the decision threshold and the
uncertainty band, on labelled cells the network never learnt from (a validation set, or a lab's own reviewed cells),
optionally on the mean of N flips/rotations of each cell (test-time augmentation, which the app then applies too).

``python -m training calibrate --model DIR --data DATA [--subjects 32,H10] [--tta 8] --out NEW [--version V]``

The new folder has the same weights (same SHA-256) and a new ``model.json`` (``calibration.recalibrated_from``
names the folder it came from), sealed with a new manifest; its card's calibration section is rewritten from it.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .datasets import DatasetError, load_dataset
from .metrics import (choose_threshold, choose_uncertainty_band, expected_calibration_error, fit_temperature)
from .modelfolder import (CARD_FILE, META_FILE, ModelFolderError, jsonable, load_model_folder, replace_folder,
                          softmax, tta_description, write_manifest)

CALIBRATION_SECTION = "## Decision threshold, uncertainty band and calibration"


def recalibrate(model_dir: str | Path, data: str | Path, out: str | Path, subjects: list[str] | None = None,
                folds: list[int] | None = None, unseen: bool = False, tta: int = 1, version: str | None = None,
                target_accuracy: float = 0.95, batch_size: int = 32, um_per_px_of=None,
                on_progress=lambda message: None) -> dict:
    """Write ``out``: ``model_dir`` with its calibration fitted on ``data`` (only ``subjects`` of it, if given; with
    ``unseen``, only the subjects its network was not trained on, as its model.json records them).
    Returns the new model.json. Refuses data with a class the model lacks, subjects not found, or one class only."""
    from .augment import TTA_VIEWS
    from .evaluate import prepared_images

    if tta not in TTA_VIEWS:
        raise ValueError(f"--tta takes 1, 2, 4 or 8 views, not {tta}")
    out = Path(out)
    if out.exists():
        raise ModelFolderError(f"{out} already exists; choose another folder")
    model = load_model_folder(model_dir)
    dataset = load_dataset(data, folds=folds)
    samples = dataset.samples
    if subjects:
        missing = sorted(set(subjects) - set(dataset.subjects()))
        if missing:
            raise DatasetError(f"subject(s) {', '.join(missing)} not found in {data}")
        samples = [s for s in samples if s.subject in set(subjects)]
    trained_on = set(model.meta.get("training", {}).get("split", {}).get("train", {}).get("subjects", []))
    if unseen:
        if not trained_on:
            raise DatasetError(f"{model_dir}'s model.json does not name the subjects it was trained on")
        samples = [s for s in samples if s.subject not in trained_on]
    seen = sorted({s.subject for s in samples} & trained_on)
    if seen:
        raise DatasetError(f"subject(s) {', '.join(seen[:10])} of these cells were in the network's training data: "
                           "a calibration on them would be optimistic (name other --subjects, or --unseen)")
    if not samples:
        raise DatasetError(f"no cells to calibrate on in {data}")
    names = model.class_names
    unknown = sorted({s.label for s in samples} - set(names))
    if unknown:
        raise DatasetError(f"the data has class(es) {', '.join(unknown)} that the model does not know "
                           f"(it knows {', '.join(names)})")
    positive = model.positive_index
    y = np.array([names.index(s.label) for s in samples])
    is_positive = (y == positive).astype(int)
    if is_positive.min() == is_positive.max():
        raise DatasetError(f"the cells to calibrate on are all of one kind ({len(y)} {samples[0].label}): a "
                           "threshold needs both")
    on_progress(f"preparing {len(samples)} cells")
    images = prepared_images(model, samples, dataset.layout, um_per_px_of)
    on_progress(f"running the network on {tta} view(s) of each cell")
    logits = model.mean_logits(images, tta, batch_size)

    temperature = fit_temperature(logits, y)
    p_raw, p_cal = softmax(logits), softmax(logits, temperature)
    threshold = choose_threshold(is_positive, p_cal[:, positive], 1)
    band = choose_uncertainty_band(is_positive, p_cal[:, positive], threshold, 1, target_accuracy)
    described = (f"{len(samples)} images of {data}" + (f", subjects {', '.join(subjects)}" if subjects else "")
                 + (f", every subject the network was not trained on ({len({s.subject for s in samples})}: "
                    f"{', '.join(sorted({s.subject for s in samples}))})" if unseen else "")
                 + (f", folds {', '.join(map(str, folds))}" if folds else "")
                 + (f", mean logits of {tta} flips/rotations" if tta > 1 else ""))
    meta = dict(model.meta)
    meta["temperature"] = float(temperature)
    meta["calibration"] = {
        "temperature": float(temperature), "fitted_on": described,
        "ece_before": expected_calibration_error(y, p_raw), "ece_after": expected_calibration_error(y, p_cal),
        "recalibrated_from": {"folder": str(Path(model_dir)), "version": model.meta.get("version"),
                              "calibration": model.meta.get("calibration"), "decision": model.meta.get("decision"),
                              "test_time_augmentation": model.meta.get("test_time_augmentation")},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    meta["decision"] = {"threshold": float(threshold), "uncertainty_band": [float(band[0]), float(band[1])],
                        "chosen_by": f"threshold maximises balanced accuracy on the calibration cells ({described}); "
                                     "the uncertainty band is the narrowest around it outside which their accuracy "
                                     f"is >= {target_accuracy:.2f}"}
    meta.pop("test_time_augmentation", None)
    if tta > 1:
        meta["test_time_augmentation"] = tta_description(tta)
    if version:
        meta["version"] = version
    _write(Path(model.folder), out, meta, model.meta)
    return meta


def _write(source: Path, out: Path, meta: dict, old_meta: dict) -> None:
    """Copy ``source`` with ``meta`` as its model.json, its card's calibration section rewritten, sealed, atomically."""
    from .card import render_card

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        staging.chmod(0o755)
        shutil.copytree(source, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("manifest.sha256"))
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=jsonable), encoding="utf-8")
        card = staging / CARD_FILE
        if card.is_file():
            text = card.read_text(encoding="utf-8")
            text = text.replace(f"{old_meta.get('name')} {old_meta.get('version')}",
                                f"{meta.get('name')} {meta.get('version')}", 1)   # the title
            card.write_text(replace_section(text, render_card(meta), CALIBRATION_SECTION), encoding="utf-8")
        write_manifest(staging)
        replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_section(text: str, rendered: str, title: str) -> str:
    """``text`` with its Markdown section ``title`` (to the next ``## ``) replaced by that section of ``rendered``;
    appended when ``text`` has none."""
    def section(t: str) -> tuple[int, int] | None:
        start = t.find(title + "\n")
        if start < 0:
            return None
        end = t.find("\n## ", start + len(title))
        return start, (len(t) if end < 0 else end + 1)

    new = section(rendered)
    if new is None:
        return text
    block = rendered[new[0]:new[1]]
    old = section(text)
    if old is None:
        return text.rstrip("\n") + "\n\n" + block
    return text[:old[0]] + block + text[old[1]:]


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="fit a model folder's temperature, threshold and band again (weights "
                                         "unchanged), optionally on the mean of N flips/rotations; a new folder")
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument("--data", required=True, help="labelled cells the network never learnt from")
    p.add_argument("--subjects", help="only these subjects of the data, comma-separated (e.g. 32,H10)")
    p.add_argument("--folds", help="C-NMC folds to read, comma-separated (e.g. 1)")
    p.add_argument("--unseen", action="store_true",
                   help="only the subjects the network was not trained on (model.json's training split)")
    p.add_argument("--tta", type=int, nargs="?", const=8, default=1, choices=(1, 2, 4, 8), metavar="N",
                   help="fit on the mean logits of N flips/rotations (alone: 8); the app then averages the same")
    p.add_argument("--target-accuracy", type=float, default=0.95,
                   help="accuracy outside the uncertainty band (default 0.95)")
    p.add_argument("--version", help="the new folder's version")
    p.add_argument("--out", required=True, help="the new model folder (must not exist)")


def run(args) -> None:
    meta = recalibrate(args.model, args.data, args.out,
                       subjects=[s.strip() for s in args.subjects.split(",")] if args.subjects else None,
                       folds=[int(f) for f in args.folds.split(",")] if args.folds else None,
                       unseen=args.unseen, tta=args.tta,
                       version=args.version, target_accuracy=args.target_accuracy, on_progress=print)
    cal, dec = meta["calibration"], meta["decision"]
    print(f"temperature {meta['temperature']:.3f} (ECE {cal['ece_before']:.3f} -> {cal['ece_after']:.3f}), "
          f"threshold {dec['threshold']:.3f}, uncertainty band {[round(b, 3) for b in dec['uncertainty_band']]}, "
          f"views {meta.get('test_time_augmentation', {}).get('views', 1)}: {args.out}")
