"""How right the red-cell measure is on 2592x1944 fields, against a scale known by construction, and what it costs.

Run by hand (about a minute; keep the machine otherwise idle):
    LEUKVIEWER_DATA=/root/leukviewer-data .venv/bin/python benchmarks/large_field_scale.py [--fields 24]

The large fields are ``field_speed.large_folder``'s: BCCD fields shrunk 0.7x and tiled. Each field's expected red-cell
diameter is 0.7 x the median of its central tiles' own BCCD fields' diameters (each measured on the 640x480 field it
came from, where the red cells are ~80 px and the measure is at its most reliable), so a field's error is the
measure's error on the large field relative to the same method on the fields it was made of.

For each size of the remeasure preview (``--remeasure-pixels``, the constant ``MAX_REMEASURE_PIXELS`` of
``leukviewer.core.analysis.localize_stain``): the median, mean and largest relative error, the fields within 5 %,
and the CPU time of the measure a field (one thread, fields one after another). This settles whether a preview size
trades accuracy for speed (the speed issue's large-field bar).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from field_speed import LARGE_SHAPE, LARGE_SHRINK, bccd_paths, large_folder  # noqa: E402


def expected_diameters(n: int, source: np.ndarray, central: float = 0.8) -> np.ndarray:
    """Each large field's expected red-cell diameter: 0.7 x the median source diameter of the tiles whose centre lies
    in the central ``central`` share of the field (the window the remeasure looks at), in ``large_folder``'s order."""
    h, w = LARGE_SHAPE
    th, tw = round(480 * LARGE_SHRINK), round(640 * LARGE_SHRINK)
    out = []
    for i in range(n):
        k, tiles = 7 * i, []
        for y in range(0, h, th):
            for x in range(0, w, tw):
                if abs(y + th / 2 - h / 2) < h * central / 2 and abs(x + tw / 2 - w / 2) < w * central / 2:
                    tiles.append(source[k % len(source)] * LARGE_SHRINK)
                k += 1
        out.append(np.nanmedian(tiles))
    return np.array(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fields", type=int, default=24)
    ap.add_argument("--remeasure-pixels", type=int, nargs="+", default=[125_000, 250_000])
    args = ap.parse_args()

    import cv2

    from leukviewer.core.analysis import localize_stain
    from leukviewer.core.analysis.imageio import read_image

    cv2.setNumThreads(1)
    sources = bccd_paths()
    first = read_image(sources[0]).shape[:2]
    if first != (480, 640):
        raise SystemExit(f"expected 640x480 BCCD fields, got {first[1]}x{first[0]}")
    source = np.array([localize_stain.estimate_rbc_diameter(read_image(p)) or np.nan for p in sources], float)
    expected = expected_diameters(args.fields, source)
    print(f"{len(sources)} BCCD fields: red cells median {np.nanmedian(source):.1f} px (10-90%: "
          f"{np.nanpercentile(source, 10):.1f}-{np.nanpercentile(source, 90):.1f}), {int(np.isnan(source).sum())} "
          f"unmeasured; {args.fields} large fields expected {expected.min():.1f}-{expected.max():.1f} px")
    with tempfile.TemporaryDirectory(prefix="lv-large-scale-") as tmp:
        images = [read_image(p) for p in sorted(large_folder(args.fields, Path(tmp) / "large").iterdir())]
    default = localize_stain.MAX_REMEASURE_PIXELS
    print(f"{'remeasure pixels':>17} {'median |err|':>12} {'mean |err|':>10} {'max |err|':>9} {'within 5%':>9} "
          f"{'ms a field':>10}")
    try:
        for pixels in args.remeasure_pixels:
            localize_stain.MAX_REMEASURE_PIXELS = pixels
            t0 = time.process_time()
            measured = np.array([localize_stain.estimate_rbc_diameter(a) or np.nan for a in images], float)
            ms = 1000 * (time.process_time() - t0) / len(images)
            err = np.abs(measured / expected - 1)
            mark = " (this checkout)" if pixels == default else ""
            print(f"{pixels:>17,} {np.nanmedian(err):>12.3f} {np.nanmean(err):>10.3f} {np.nanmax(err):>9.3f} "
                  f"{int(np.sum(err < 0.05)):>5}/{len(err):<3} {ms:>10.0f}{mark}")
    finally:
        localize_stain.MAX_REMEASURE_PIXELS = default
    return 0


if __name__ == "__main__":
    sys.exit(main())
