"""What test-time augmentation and a calibration fitted on more donors do for a binary (HEM/ALL) model folder, on
C-NMC subjects its network never trained on and on other labs' cells (issue 15, item 5).

  # 1. logits of every flip/rotation of every cell of the C-NMC subjects the network was not trained on (LiteRT)
  python benchmarks/calibration_probe.py logits --model assets/models/leukviewer-b3 \
      --data ~/leukviewer-data/cnmc --out /tmp/logits.npz
  # 2. (a) 1/2/4/8 views, temperature/threshold/band fitted on --fit-subjects, measured on the rest; (b) one view,
  #    fitted on --fit-subjects + half of the rest (subject-disjoint halves, healthy donors spread), measured on
  #    the other half, against the folder's own calibration on the same cells
  python benchmarks/calibration_probe.py cnmc --logits /tmp/logits.npz --model assets/models/leukviewer-b3 \
      --fit-subjects 32,H10 --out /tmp/cnmc.json
  # 3. other labs: the calls of a 1-view batch run (`leukviewer batch DIR --out OUT`, cells.csv) under another
  #    calibration of the same weights (p' = sigmoid(T * logit(p) / T'), exact for two classes)
  python benchmarks/calibration_probe.py other-labs --model assets/models/leukviewer-b3 \
      --recalibrated RECALIBRATED_FOLDER --cells aria=OUT1/cells.csv --cells pbc=OUT2/cells.csv --out /tmp/labs.json
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.augment import TTA_VIEWS, dihedral_views  # noqa: E402
from training.metrics import (choose_threshold, choose_uncertainty_band, classification_metrics,  # noqa: E402
                              fit_temperature)
from training.modelfolder import load_model_folder, read_meta, softmax  # noqa: E402


def logits(args) -> None:
    from leukviewer.core.model.engine import InferenceEngine
    from training.datasets import load_dataset
    from training.preprocess import read_rgb

    model = load_model_folder(args.model, network="lazy")
    trained_on = set(model.meta["training"]["split"]["train"]["subjects"])
    samples = [s for s in load_dataset(args.data).samples if s.subject not in trained_on]
    x = np.stack([model.preprocess(read_rgb(s.path)) for s in samples])
    engine = InferenceEngine(model, backend="tflite")
    views = [engine.logits(v) for v in dihedral_views(x, 8)]
    np.savez(args.out, logits=np.stack(views), subject=np.array([s.subject for s in samples]),
             label=np.array([s.label for s in samples]), class_names=np.array(model.class_names))
    print(f"{len(samples)} cells of {len({s.subject for s in samples})} subjects, 8 views: {args.out}")


def _calibration(lg, y, positive, target=0.95):
    t = fit_temperature(lg, y)
    p = softmax(lg, t)[:, positive]
    is_pos = (y == positive).astype(int)
    threshold = choose_threshold(is_pos, p, 1)
    return t, threshold, choose_uncertainty_band(is_pos, p, threshold, 1, target)


def _figures(lg, y, subjects, names, positive, calibration) -> dict:
    t, threshold, band = calibration
    p = softmax(lg, t)
    m = classification_metrics(y, p, names, list(subjects), positive, threshold)
    pa = p[:, positive]
    return {"temperature": float(t), "threshold": float(threshold), "band": [float(band[0]), float(band[1])],
            "cells": int(len(y)), "subjects": int(len(set(subjects))), "roc_auc": m["roc_auc"],
            "weighted_f1": m["weighted_f1"], "balanced_accuracy": m["balanced_accuracy"],
            "sensitivity": m["sensitivity"], "specificity": m["specificity"], "ece": m["ece"],
            "uncertain": float(((pa > band[0]) & (pa < band[1])).mean())}


def cnmc(args) -> None:
    d = np.load(args.logits)
    names = [str(n) for n in d["class_names"]]
    positive = names.index("ALL")
    y = np.array([names.index(str(v)) for v in d["label"]])
    subject = d["subject"]
    fit_subjects = args.fit_subjects.split(",")
    fit = np.isin(subject, fit_subjects)
    meta = read_meta(args.model)
    shipped = (meta["temperature"], meta["decision"]["threshold"], tuple(meta["decision"]["uncertainty_band"]))
    out = {"model": {"name": meta["name"], "version": meta["version"]}, "fit_subjects": fit_subjects, "views": {}}
    out["views"]["1 (its own calibration)"] = _figures(d["logits"][0][~fit], y[~fit], subject[~fit], names, positive,
                                                       shipped)
    for n in TTA_VIEWS:
        lg = d["logits"][:n].mean(0)
        out["views"][str(n)] = _figures(lg[~fit], y[~fit], subject[~fit], names, positive,
                                        _calibration(lg[fit], y[fit], positive))
    rest = sorted(set(subject[~fit]))
    healthy = [s for s in rest if s.upper().startswith("H")]
    ill = [s for s in rest if s not in healthy]
    rng = np.random.default_rng(0)
    halves = []
    lg = d["logits"][0]
    for rep in range(args.repeats):
        rng.shuffle(healthy)
        rng.shuffle(ill)
        parts = [healthy[0::2] + ill[0::2], healthy[1::2] + ill[1::2]]
        for k in (0, 1):
            more = fit | np.isin(subject, parts[k])
            test = np.isin(subject, parts[1 - k])
            halves.append({"repeat": rep, "measured_on": sorted(parts[1 - k]),
                           "own": _figures(lg[test], y[test], subject[test], names, positive, shipped),
                           "refitted": _figures(lg[test], y[test], subject[test], names, positive,
                                                _calibration(lg[more], y[more], positive))})
    out["more_donors"] = {"halves": halves, "mean": {
        which: {k: float(np.mean([h[which][k] for h in halves])) for k in
                ("weighted_f1", "balanced_accuracy", "sensitivity", "specificity", "ece", "uncertain", "temperature")}
        for which in ("own", "refitted")}}
    Path(args.out).write_text(json.dumps(out, indent=1, default=float))
    for k, v in out["views"].items():
        print(f"views {k}: " + ", ".join(f"{a} {v[a]:.3f}" for a in ("roc_auc", "weighted_f1", "balanced_accuracy",
                                                                        "uncertain", "ece", "temperature")))
    for which, v in out["more_donors"]["mean"].items():
        print(f"more donors, {which}: " + ", ".join(f"{a} {b:.3f}" for a, b in v.items()))


def other_labs(args) -> None:
    from leukviewer.core.labels import label_for

    old, new = read_meta(args.model), read_meta(args.recalibrated)
    if old["weights"]["sha256"] != new["weights"]["sha256"]:
        raise SystemExit("the two folders must hold the same weights")
    out = {}
    for spec in args.cells:
        name, path = spec.split("=", 1)
        rows = list(csv.DictReader(open(path, encoding="utf-8")))
        p = np.clip([float(r["p_blast"]) for r in rows], 1e-9, 1 - 1e-9)
        delta = old["temperature"] * np.log(p / (1 - p))
        image = np.array([r["image"] for r in rows])
        out[name] = {}
        for tag, meta in ((old["version"], old), (new["version"], new)):
            q = 1 / (1 + np.exp(-delta / meta["temperature"]))
            rule = (meta["decision"]["threshold"], tuple(meta["decision"]["uncertainty_band"]))
            label = np.array([label_for(v, *rule) for v in q])   # the app's own rule
            f = {"cells": len(q), **{k: float((label == k).mean()) for k in ("ALL", "UNCERTAIN", "HEM")}}
            if args.field_truth == "aria" and name.startswith("aria"):
                ball = np.array([not i.startswith("Benign") for i in image])
                fields = sorted(set(image))
                f_ball = np.array([not i.startswith("Benign") for i in fields])
                flagged = np.array([(label[image == i] == "ALL").any() for i in fields])
                f.update({"ALL_of_b_all_field_cells": float((label[ball] == "ALL").mean()),
                          "b_all_fields_with_an_ALL_cell": float(flagged[f_ball].mean()),
                          "benign_fields_with_an_ALL_cell": float(flagged[~f_ball].mean())})
            out[name][tag] = f
            print(name, tag, {k: round(v, 3) if isinstance(v, float) else v for k, v in f.items()})
    Path(args.out).write_text(json.dumps(out, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("logits")
    a.add_argument("--model", required=True)
    a.add_argument("--data", required=True)
    a.add_argument("--out", required=True)
    a = sub.add_parser("cnmc")
    a.add_argument("--logits", required=True)
    a.add_argument("--model", required=True)
    a.add_argument("--fit-subjects", required=True)
    a.add_argument("--repeats", type=int, default=3)
    a.add_argument("--out", required=True)
    a = sub.add_parser("other-labs")
    a.add_argument("--model", required=True)
    a.add_argument("--recalibrated", required=True)
    a.add_argument("--cells", action="append", required=True, metavar="NAME=CELLS_CSV")
    a.add_argument("--field-truth", choices=("aria", "none"), default="aria",
                   help="aria: a field named Benign* is healthy, any other B-ALL (names starting 'aria')")
    a.add_argument("--out", required=True)
    args = p.parse_args()
    {"logits": logits, "cnmc": cnmc, "other-labs": other_labs}[args.command](args)


if __name__ == "__main__":
    main()
