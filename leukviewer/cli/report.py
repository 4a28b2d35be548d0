"""``leukviewer report FOLDER --out DIR``: the report of a folder as it was reviewed in the app (its saved review
state and stored analysis results); images without stored results are analysed first."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import RUO_NOTICE


def add_arguments(p) -> None:
    p.add_argument("folder", help="case folder that was opened (and reviewed) in leukviewer")
    p.add_argument("--out", required=True, help="output folder for report.pdf, cells.csv, images.csv, cells.geojson")
    p.add_argument("--model", help="model folder (default: the bundled model)")
    p.add_argument("--pdf", action="store_true", help="write report.pdf")
    p.add_argument("--csv", action="store_true", help="write cells.csv and images.csv")
    p.add_argument("--geojson", action="store_true", help="write cells.geojson (QuPath import)")
    p.add_argument("--reviewer", help="name on the sign-off line (default: the reviewers of the saved review)")
    p.add_argument("--recursive", action="store_true", help="include images in sub-folders")
    p.add_argument("--kind", choices=["auto", "single_cell", "smear_field"], default="auto",
                   help="image kind for images that still need analysing")
    p.add_argument("--overwrite", action="store_true",
                   help="replace report files already in --out (default: write under new names, e.g. report-2.pdf)")
    p.add_argument("--max-gallery", type=int, default=60, help="most flagged cells pictured in the PDF (default 60)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def chosen_formats(args) -> set[str]:
    """The formats asked for; all of them when none is named."""
    chosen = {f for f in ("pdf", "csv", "geojson") if getattr(args, f, False)}
    return chosen or {"pdf", "csv", "geojson"}


def run(args) -> int:
    from tqdm import tqdm

    from training.modelfolder import ModelFolderError

    from ..core.model.active import resolve_model
    from ..core.reports.export import OUTPUT_FILES, ExportError, export_case, load_case
    from ..core.review.session import ReviewError

    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder", file=sys.stderr)
        return 2
    resolved = resolve_model(args.model)
    if resolved.note:
        print(f"warning: {resolved.note}", file=sys.stderr)
    model_dir = resolved.folder
    bar = None

    def analysis_progress(done, total, result):
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            bar = tqdm(total=total, unit="image", desc="analysing", file=sys.stderr)
        bar.update(1)

    try:
        case = load_case(folder, model_dir, recursive=args.recursive, kind=args.kind, on_progress=analysis_progress)
    except ModelFolderError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ReviewError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: cannot read {folder}: {e.strerror or e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
            bar = None
    if not case.results:
        print(f"error: {folder} holds no images to report", file=sys.stderr)
        return 1
    if case.analysed:
        print(f"{case.reused} image(s) from the saved analysis, {case.analysed} analysed now")
    if not case.session.reviews:
        print("note: this folder has no saved review; the report shows the model's suggestions only")
    elif case.session.model_changed():
        print(f"note: the review was made with another model ({case.session.saved_model.get('sha256', '')[:12]}); "
              "pass the same --model to report it with that model", file=sys.stderr)

    def export_progress(done, total, message):
        nonlocal bar
        if args.quiet:
            return
        if bar is None:
            bar = tqdm(total=total, unit="step", desc="report", file=sys.stderr)
        bar.n = done
        bar.set_postfix_str(message[-40:])
        bar.refresh()

    try:
        written = export_case(case.results, case.session, case.model, args.out, formats=chosen_formats(args),
                              reviewer=args.reviewer, on_progress=export_progress, overwrite=args.overwrite,
                              folder=folder.resolve(), model_dir=model_dir, max_gallery=args.max_gallery)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if bar is not None:
            bar.close()
    renamed = [p for p in written if p.name not in {n for names in OUTPUT_FILES.values() for n in names}]
    if renamed:
        print(f"note: {args.out} already held a report; this one was written under new names")
    for path in written:
        print(f"wrote {path}")
    print(RUO_NOTICE)
    return 0
