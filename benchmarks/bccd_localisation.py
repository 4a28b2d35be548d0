"""White-cell localisation on BCCD: recall, precision and mean IoU against the WBC boxes.

    LEUKVIEWER_DATA=/root/leukviewer-data python benchmarks/bccd_localisation.py --out /tmp/bccd_failures

Reads ``$LEUKVIEWER_DATA/bccd/{JPEGImages,Annotations}`` (default: ``../shared/data`` beside
the repository, 30 fields). A detection matches a WBC box when the IoU of the detection's
bounding box with the box is at least ``--iou`` (0.5); matching is greedy by IoU, one to one.
BCCD quirks: 6 fields have no WBC annotated (every detection there counts as a false
positive, although several of them show a white cell cut by the border), and zero-size
boxes are skipped and counted (in the copy checked, the 2 zero-size boxes are not WBC boxes). For each field with a missed WBC or a false positive,
an overlay PNG is written to ``--out``: green = annotated WBC, red = missed WBC, yellow =
matched detection (outline), magenta = false positive (outline).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from leukviewer.core.analysis.imageio import read_image  # noqa: E402
from leukviewer.core.analysis.localize import CellRegion, find_white_cells  # noqa: E402


def data_root() -> Path:
    return Path(os.environ.get("LEUKVIEWER_DATA", REPO.parent / "shared" / "data"))


def wbc_boxes(xml_path: Path) -> tuple[list[tuple[int, int, int, int]], int]:
    """WBC boxes as (x0, y0, x1, y1) and the number of zero-size boxes skipped."""
    boxes, skipped = [], 0
    for obj in ET.parse(xml_path).getroot().iter("object"):
        if obj.findtext("name", "").strip().upper() != "WBC":
            continue
        box = obj.find("bndbox")
        x0, y0, x1, y1 = (int(float(box.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
        if x1 <= x0 or y1 <= y0:
            skipped += 1
            continue
        boxes.append((x0, y0, x1, y1))
    return boxes, skipped


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(truth: list, found: list, threshold: float) -> tuple[list[tuple[int, int, float]], list[int], list[int]]:
    """Greedy one-to-one matching by IoU: (pairs, unmatched truth, unmatched found)."""
    scores = sorted(
        ((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)),
        reverse=True,
    )
    used_t, used_f, pairs = set(), set(), []
    for score, i, j in scores:
        if score < threshold:
            break
        if i in used_t or j in used_f:
            continue
        used_t.add(i)
        used_f.add(j)
        pairs.append((i, j, score))
    missed = [i for i in range(len(truth)) if i not in used_t]
    extra = [j for j in range(len(found)) if j not in used_f]
    return pairs, missed, extra


def corners(region: CellRegion) -> tuple[int, int, int, int]:
    x, y, w, h = region.bbox
    return x, y, x + w, y + h


def overlay(rgb: np.ndarray, truth, found: list[CellRegion], missed, extra) -> np.ndarray:
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for i, (x0, y0, x1, y1) in enumerate(truth):
        cv2.rectangle(image, (x0, y0), (x1, y1), (0, 0, 255) if i in missed else (0, 200, 0), 2)
    for j, region in enumerate(found):
        colour = (255, 0, 255) if j in extra else (0, 220, 255)
        cv2.polylines(image, [region.outline.reshape(-1, 1, 2)], True, colour, 2)
        x0, y0, x1, y1 = corners(region)
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, 1)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="BCCD folder (default $LEUKVIEWER_DATA/bccd)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bccd_failures"))
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--limit", type=int, default=0, help="only the first N fields")
    args = parser.parse_args(argv)

    root = args.data or data_root() / "bccd"
    images = sorted((root / "JPEGImages").glob("*.jpg"))
    if args.limit:
        images = images[: args.limit]
    if not images:
        print(f"no BCCD images under {root}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.png"):
        old.unlink()

    n_truth = n_found = n_matched = zero_size = extra_partial = 0
    ious: list[float] = []
    failures: list[str] = []
    seconds = 0.0
    for path in images:
        truth, skipped = wbc_boxes(root / "Annotations" / f"{path.stem}.xml")
        zero_size += skipped
        rgb = read_image(path)
        start = time.perf_counter()
        found = find_white_cells(rgb)
        seconds += time.perf_counter() - start
        pairs, missed, extra = match(truth, [corners(r) for r in found], args.iou)
        n_truth += len(truth)
        n_found += len(found)
        n_matched += len(pairs)
        ious.extend(score for _, _, score in pairs)
        extra_partial += sum(1 for j in extra if found[j].partial)
        if missed or extra:
            best = [max((iou(truth[i], corners(r)) for r in found), default=0.0) for i in missed]
            failures.append(
                f"{path.stem}: {len(missed)} missed (best IoU {', '.join(f'{b:.2f}' for b in best) or '-'}), "
                f"{len(extra)} false positive(s), {len(truth)} annotated, {len(found)} found"
            )
            cv2.imwrite(str(args.out / f"{path.stem}.png"), overlay(rgb, truth, found, missed, extra))

    recall = n_matched / n_truth if n_truth else float("nan")
    precision = n_matched / n_found if n_found else float("nan")
    print(f"fields: {len(images)}  WBC boxes: {n_truth} (zero-size boxes skipped: {zero_size})  "
          f"detections: {n_found}")
    print(f"recall@IoU>={args.iou}: {recall:.4f}  precision: {precision:.4f}  "
          f"mean IoU of matches: {np.mean(ious) if ious else float('nan'):.3f}")
    print(f"unmatched detections that touch the field border (BCCD often leaves cells cut by "
          f"the border unannotated): {extra_partial} of {n_found - n_matched}")
    print(f"speed: {len(images) / seconds:.1f} fields/s (find_white_cells only, "
          f"{1000 * seconds / len(images):.1f} ms/field)")
    print(f"failing fields: {len(failures)} (overlays in {args.out})")
    for line in failures:
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
