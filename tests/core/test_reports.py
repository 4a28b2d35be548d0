"""The case report (cells.csv, images.csv, report.pdf, cells.geojson) from real images and a real (tiny) model."""
import csv
import errno
import json
import re
import shutil

import pytest

from leukviewer import RUO_NOTICE
from leukviewer.core.reports import export as reports
from leukviewer.core.model.classifier import CellClassifier
from leukviewer.core.model.descriptor import ModelDescriptor
from leukviewer.core.analysis.pipeline import analyze_folder
from leukviewer.core.reports.export import (ExportCancelled, ExportError, export_case,
                                     method_and_limitations)
from leukviewer.core.review.session import ReviewSession
from leukviewer.core.reports.tables import CELL_COLUMNS, IMAGE_COLUMNS

REVIEWER = "Dr. Zoë Ødegård"


@pytest.fixture(scope="module")
def classifier(tiny_model_dir):
    return CellClassifier(tiny_model_dir)


@pytest.fixture(scope="module")
def case(shared_data, classifier, tmp_path_factory):
    """Six real smear fields and one real C-NMC cell saved as ``=cmd.png``, analysed and partly reviewed."""
    folder = tmp_path_factory.mktemp("case") / "Case 17 <smear>"
    folder.mkdir()
    for p in sorted((shared_data / "bccd" / "JPEGImages").glob("*.jpg"))[:6]:
        shutil.copy(p, folder)
    cnmc = sorted((shared_data / "cnmc" / "training_data" / "fold_1" / "all").glob("*.png"))[0]
    shutil.copy(cnmc, folder / "=cmd.png")
    results = list(analyze_folder(folder, classifier))
    info = classifier.info
    session = ReviewSession.open(folder, {"name": info.name, "version": info.version, "sha256": info.sha256})
    cells = [c for r in results for c in r.cells]
    assert len(cells) >= 6
    changed = cells[0]
    session.set_label(changed.cell_id, "ALL" if changed.label != "ALL" else "HEM", changed.label, REVIEWER)
    session.confirm(cells[1].cell_id, cells[1].label, REVIEWER)
    return folder, results, session, info


def export(case, out, **kwargs):
    folder, results, session, info = case
    kwargs.setdefault("model_dir", None)
    return export_case(results, session, info, out, folder=folder, **kwargs)


def unneutralise(text):
    return text[1:] if text.startswith("'") else text


def test_cells_csv_rows_match_the_pipeline_results(case, tmp_path):
    folder, results, session, info = case
    written = export(case, tmp_path, formats={"csv"})
    assert [p.name for p in written] == ["cells.csv", "images.csv"]
    raw = (tmp_path / "cells.csv").read_bytes()
    raw.decode("utf-8")
    assert raw.count(b"\r\n") == raw.count(b"\n")          # RFC 4180 line ends
    with open(tmp_path / "cells.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    # a legacy binary (HEM, ALL) model: the old columns first, then its cells' white-cell type
    assert list(rows[0].keys()) == CELL_COLUMNS + ["cell_type", "reviewed_cell_type", "final_cell_type",
                                                   "p_lymphoid"]
    cells = {c.cell_id: c for r in results for c in r.cells}
    assert len(rows) == len(cells)
    for row in rows:
        cell = cells[unneutralise(row["cell_id"])]
        assert unneutralise(row["image"]) == cell.image and row["folder"] == str(folder)
        assert [int(row[k]) for k in ("x", "y", "width", "height")] == list(cell.bbox)
        assert (float(row["centroid_x"]), float(row["centroid_y"])) == cell.centroid
        assert int(row["area"]) == cell.area and float(row["p_blast"]) == cell.blast_probability
        assert row["label"] == cell.label and row["partial"] == ("true" if cell.partial else "false")
        assert row["cell_type"] == ("blast" if cell.label == "ALL" else "lymphoid")
        assert row["final_cell_type"] == ("blast" if row["final_label"] == "ALL" else "lymphoid")
        assert float(row["p_lymphoid"]) == pytest.approx(1 - cell.blast_probability, abs=2e-6)
        assert (row["model_name"], row["model_version"], row["model_sha256"]) == (info.name, info.version,
                                                                                  info.sha256)
        review = session.reviews.get(cell.cell_id)
        if review:
            assert (row["reviewed_label"], row["reviewer"], row["review_time"]) == (review.label, REVIEWER,
                                                                                    review.time)
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", row["review_time"])  # ISO 8601
            assert row["final_label"] == review.label
        else:
            assert row["reviewed_label"] == row["reviewer"] == row["review_time"] == ""
            assert row["final_label"] == cell.label
    assert sum(1 for r in rows if r["reviewed_label"]) == 2
    with open(tmp_path / "images.csv", encoding="utf-8", newline="") as f:
        images = list(csv.DictReader(f))
    assert list(images[0].keys()) == IMAGE_COLUMNS
    by_image = {unneutralise(r["image"]): r for r in images}
    assert set(by_image) == {r.image for r in results}
    for result in results:
        row, counts = by_image[result.image], result.counts()
        assert row["status"] == result.status and int(row["white_cells"]) == counts["white_cells"]
        assert int(row["blasts"]) == counts["blasts"] and int(row["uncertain"]) == counts["uncertain"]
    # Per-image counts are of the counted cells: a reviewed cell cut by the border is not among them.
    counted_reviewed = [c for c in cells.values() if session.reviewed_label(c.cell_id) and not c.partial]
    assert sum(int(r["reviewed_cells"]) for r in images) == len(counted_reviewed)
    assert sum(int(r["changed_cells"]) for r in images) == sum(
        session.reviewed_label(c.cell_id) != c.label for c in counted_reviewed)
    assert sum(int(r["border_cells_excluded"]) for r in images) == sum(c.partial for c in cells.values())


def test_a_formula_in_a_file_name_comes_out_neutralised(case, tmp_path):
    export(case, tmp_path, formats={"csv"})
    with open(tmp_path / "cells.csv", encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if "cmd" in r["image"]]
    assert rows and rows[0]["image"] == "'=cmd.png" and rows[0]["cell_id"] == "'=cmd.png#1"
    for row in csv.reader(open(tmp_path / "cells.csv", encoding="utf-8", newline="")):
        assert not any(v.startswith(("=", "+", "@", "\t", "\r")) for v in row)
    text = (tmp_path / "images.csv").read_text(encoding="utf-8")
    assert "'=cmd.png" in text and ",=cmd.png" not in text


def _pdf_pages(path):
    from pypdf import PdfReader

    return [" ".join(page.extract_text().split()) for page in PdfReader(str(path)).pages]


def test_the_pdf_draws_each_label_in_the_windows_colour():
    from leukviewer.core.reports import pdf as report_pdf
    from leukviewer.gui.style import hex_colour

    assert {label: report_pdf.LABEL_HEX[label] for label in ("ALL", "UNCERTAIN", "HEM")} == {
        label: hex_colour(label) for label in ("ALL", "UNCERTAIN", "HEM")}


def test_pdf_has_header_counts_hash_and_ruo_on_every_page(case, tmp_path):
    import numpy as np
    import pypdfium2 as pdfium

    folder, results, session, info = case
    written = export(case, tmp_path, formats={"pdf"}, reviewer=REVIEWER)
    assert [p.name for p in written] == ["report.pdf"]
    pages = _pdf_pages(tmp_path / "report.pdf")
    assert len(pages) >= 2
    for page in pages:
        assert RUO_NOTICE in page
    text = " ".join(pages)
    # Counted: the cells not cut by the image border; those are shown but said to be left out.
    counted = [c for r in results for c in r.cells if not c.partial]
    n, cut = len(counted), sum(c.partial for r in results for c in r.cells)
    blasts = sum(c.label == "ALL" for c in counted)
    reviewed = [c for c in counted if session.reviewed_label(c.cell_id)]
    changed = sum(session.reviewed_label(c.cell_id) != c.label for c in reviewed)
    assert cut > 0
    assert f"{cut} cells cut by the image border are shown and flagged but not counted" in " ".join(text.split())
    assert info.sha256 in pages[0]
    assert "Case 17 <smear>" in pages[0] and REVIEWER in pages[0] and "leukviewer 0.1.0" in pages[0]
    assert f"{info.threshold:.3f}" in pages[0] and f"{info.uncertainty_band[0]:.3f}" in pages[0]
    assert f"{n} white cells in {len(results)} images: {blasts} blasts" in text
    assert f"Reviewed: {len(reviewed)} of {n} cells ({changed} changed)" in text
    reviewed_white = len(reviewed)
    # columns: the model's suggestion, reviewed cells only, the model's suggestion for the others, after review
    assert re.search(rf"White cells {n} {reviewed_white} {n - reviewed_white} {n}\b", text)
    assert "Method and limitations" in text and "Sign-off" in text
    assert "=cmd.png" in text                               # per-image table
    page = pdfium.PdfDocument(str(tmp_path / "report.pdf"))[0]
    image = page.render(scale=1.5).to_pil()
    image.save(tmp_path / "report_p1.png")
    pixels = np.asarray(image.convert("L"))
    assert image.size[0] > 800 and pixels.std() > 20        # a real page with content, not a blank one


def test_gallery_is_capped_and_says_how_many_are_omitted(case, tmp_path):
    folder, results, session, info = case
    flagged = [c for r in results for c in r.cells
               if c.label != "HEM" or (session.reviewed_label(c.cell_id) or "HEM") != "HEM"]
    assert len(flagged) >= 3
    export(case, tmp_path, formats={"pdf"}, max_gallery=2)
    text = " ".join(_pdf_pages(tmp_path / "report.pdf"))
    assert f"{len(flagged)} flagged cell(s)" in text
    assert f"Showing 2; {len(flagged) - 2} more flagged cell(s) are omitted" in text


def test_geojson_has_one_closed_polygon_per_cell_in_qupath_form(case, tmp_path):
    from leukviewer.gui.style import label_colour

    window_rgb = {label: list(label_colour(label).getRgb()[:3]) for label in ("ALL", "UNCERTAIN", "HEM")}
    folder, results, session, info = case
    export(case, tmp_path, formats={"geojson"})
    doc = json.loads((tmp_path / "cells.geojson").read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection"
    cells = {c.cell_id: c for r in results for c in r.cells}
    assert len(doc["features"]) == len(cells)
    names = set()
    for feature in doc["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        ring = feature["geometry"]["coordinates"][0]
        assert len(ring) >= 4 and ring[0] == ring[-1]
        props = feature["properties"]
        cell = cells[props["name"]]
        assert props["objectType"] == "detection" and props["image"] == cell.image
        x, y, w, h = cell.bbox
        assert all(x - 1 <= px <= x + w + 1 and y - 1 <= py <= y + h + 1 for px, py in ring)
        expected = session.reviewed_label(cell.cell_id) or cell.label
        assert props["classification"]["name"] == expected
        assert props["classification"]["color"] == window_rgb[expected]    # the window's colour for the label
        assert all(isinstance(v, float) for v in props["measurements"].values())
        assert props["measurements"]["Blast probability"] == cell.blast_probability
        names.add(props["name"])
    assert "=cmd.png#1" in names                            # JSON is not a spreadsheet: names stay as they are


def test_existing_files_are_never_overwritten_silently(case, tmp_path):
    first = export(case, tmp_path, formats={"csv", "pdf"})
    before = {p.name: p.read_bytes() for p in first}
    second = export(case, tmp_path, formats={"csv", "pdf"})
    assert [p.name for p in second] == ["cells-2.csv", "images-2.csv", "report-2.pdf"]
    assert {p.name: p.read_bytes() for p in first} == before
    third = export(case, tmp_path, formats={"csv"}, overwrite=True)
    assert [p.name for p in third] == ["cells.csv", "images.csv"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary file left
    assert reports.existing_outputs(tmp_path, {"csv"}) == [tmp_path / "cells.csv", tmp_path / "images.csv"]


def test_a_target_under_a_regular_file_fails_clearly_and_writes_nothing(case, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="not a folder|a file"):
        export(case, blocker / "reports")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not-a-folder"]


def test_a_read_only_folder_fails_clearly_and_writes_nothing(case, tmp_path, monkeypatch):
    out = tmp_path / "readonly"
    out.mkdir()

    def refuse(*args, **kwargs):   # what a read-only folder does to a non-root user (tests run as root)
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(reports.tempfile, "mkstemp", refuse)
    with pytest.raises(ExportError, match="permission denied"):
        export(case, out)
    assert list(out.iterdir()) == []


def test_disk_full_midway_leaves_no_half_written_file(case, tmp_path, monkeypatch):
    from leukviewer.core.reports import pdf as report_pdf

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report_pdf, "histogram_png", full)   # the CSVs and GeoJSON are staged by then
    with pytest.raises(ExportError, match="disk is full"):
        export(case, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cancel_and_progress(case, tmp_path):
    steps = []
    export(case, tmp_path / "a", on_progress=lambda done, total, what: steps.append((done, total, what)))
    assert steps[-1][0] == steps[-1][1] and steps[-1][2] == "report.pdf"
    assert [s[0] for s in steps] == sorted(s[0] for s in steps)
    with pytest.raises(ExportCancelled):
        export(case, tmp_path / "b", should_stop=lambda: len(steps) > 0)
    assert list((tmp_path / "b").iterdir()) == []


def test_method_text_comes_from_model_card_then_model_json_then_fallback(tiny_model_dir, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, plain)
    (plain / "MODEL_CARD.md").unlink(missing_ok=True)
    method, limitations = method_and_limitations(ModelDescriptor.from_folder(plain))
    assert "84 cell images" in method and "subject-disjoint" in method and "Measured on" in method
    assert limitations == list(reports.FALLBACK_LIMITATIONS)

    card = tmp_path / "card"
    shutil.copytree(plain, card)
    (card / "MODEL_CARD.md").write_text(
        "# Card\n## Intended use\nResearch on *blasts*.\n## Method\nAn **EfficientNet-B3** fine-tuned on `C-NMC`.\n"
        "## Training data\n- Source: C-NMC 2019 fold_1\n- 84 images\n## Metrics\n| a | b |\n|---|---|\n"
        "## Limitations\n- Not validated on bone marrow.\n- Stain-sensitive\n", encoding="utf-8")
    method, limitations = method_and_limitations(ModelDescriptor.from_folder(card))
    assert method == ("Intended use: Research on blasts. An EfficientNet-B3 fine-tuned on C-NMC. "
                      "Training data source: C-NMC 2019 fold_1.")
    assert limitations == ["Not validated on bone marrow.", "Stain-sensitive."]

    bare = ModelDescriptor("m", "1", "a" * 64, 0.5, (0.4, 0.6))
    assert method_and_limitations(bare) == (reports.FALLBACK_METHOD, list(reports.FALLBACK_LIMITATIONS))


def test_the_training_librarys_model_card_feeds_the_pdf(case, tiny_model_dir, tmp_path):
    if not (tiny_model_dir / "MODEL_CARD.md").is_file():
        pytest.skip("this training library writes no model card")
    export(case, tmp_path, formats={"pdf"}, model_dir=tiny_model_dir)
    text = " ".join(_pdf_pages(tmp_path / "report.pdf"))
    method_part = text[text.index("Method and limitations"):text.index("Sign-off")]
    assert "Intended use:" in method_part and "Limitations" in method_part
    assert "{" not in method_part                          # no raw dictionaries from the card


def test_a_run_nobody_reviewed_is_an_analysis_report_without_review_columns_or_sign_off(case, tmp_path):
    """The `batch` PDF of an unreviewed run: not a "review report", no "After review" column, nothing to sign."""
    import pypdfium2 as pdfium

    folder, results, session, info = case
    export_case(results, None, info, tmp_path / "unreviewed", folder=folder, formats={"pdf"}, model_dir=None)
    pages = _pdf_pages(tmp_path / "unreviewed" / "report.pdf")
    text = " ".join(pages)
    assert "Analysis report (not reviewed)" in pages[0]                  # the title
    assert all("leukviewer analysis report (not reviewed)" in page for page in pages)   # running header
    assert "review report" not in text.lower()
    assert "After review" not in text and "after review" not in text
    assert "I have reviewed" not in text and "Sign-off" not in text and "Signature" not in text
    assert "No cell has been reviewed" in text and "Not reviewed" in text
    n = sum(not c.partial for r in results for c in r.cells)   # cells cut by the border are not counted
    assert re.search(rf"White cells {n}\b(?! {n})", text)               # one column: the model's
    title = pdfium.PdfDocument(str(tmp_path / "unreviewed" / "report.pdf")).get_metadata_dict()["Title"]
    assert title.startswith("Analysis report (not reviewed)")

    export(case, tmp_path / "reviewed", formats={"pdf"}, reviewer=REVIEWER)   # two cells reviewed
    text = " ".join(_pdf_pages(tmp_path / "reviewed" / "report.pdf"))
    assert "Blast review report" in text and "not reviewed)" not in text.split("Flagged cells")[0]
    assert "After review" in text and "Sign-off" in text
    flagged = [c for r in results for c in r.cells
               if c.label != "HEM" or (session.reviewed_label(c.cell_id) or "HEM") != "HEM"]
    open_flags = sum(1 for c in flagged if session.reviewed_label(c.cell_id) is None)
    if open_flags:  # the sign-off says how far the review went, never "the flagged cells" when some are open
        assert (f"I have reviewed {len(flagged) - open_flags} of the {len(flagged)} flagged cells of this case "
                f"({open_flags} not reviewed)") in text
    else:
        assert "I have reviewed the flagged cells of this case" in text


def test_blast_percentage_is_the_range_undecided_cells_allow_before_and_after_review(case, tmp_path):
    """Tiny-model cells are mostly UNCERTAIN: the blast % is not "0 %" but the range those undecided cells allow
    (minimum: all normal, maximum: all blasts), computed once (``count_cells`` / ``CaseSummary``). After review a
    cell the reviewer labelled is decided, unless they called it UNCERTAIN."""
    from leukviewer.core.analysis.results import CaseSummary, blast_percentage_text, percentage_text
    from leukviewer.core.review.session import reviewed_counts

    folder, results, _, info = case
    cells = [c for r in results for c in r.cells if not c.partial]   # the counted cells
    white = [c for c in cells if c.cell_type != "non_wbc"]
    blasts = sum(c.label == "ALL" for c in white)
    undecided = [c for c in white if c.label == "UNCERTAIN"]
    assert len(undecided) >= 2
    summary = CaseSummary(str(folder))
    for result in results:
        summary.add(result)
    d = summary.to_dict()
    lo, hi = round(100 * blasts / len(white), 2), round(100 * (blasts + len(undecided)) / len(white), 2)
    assert (d["blast_percentage_min"], d["blast_percentage_max"]) == (lo, hi) and lo < hi
    assert d["blast_percentage"] == lo   # the labelled blasts, as before: the range's minimum
    text = blast_percentage_text(d)
    assert "–" in percentage_text(d) and "0.0 %" not in text
    assert text.endswith(f" %, {len(undecided)} of {len(white)} white cells undecided")
    assert reviewed_counts(cells, None)["blast_percentage_max"] == hi

    session = ReviewSession(tmp_path, tmp_path / ".leukviewer")
    session.set_label(undecided[0].cell_id, "HEM", "UNCERTAIN", REVIEWER)          # decided: normal
    session.set_label(undecided[1].cell_id, "UNCERTAIN", "UNCERTAIN", REVIEWER)    # the reviewer is unsure too
    r = reviewed_counts(cells, session)
    assert r["uncertain"] == len(undecided) - 1
    assert (r["blast_percentage_min"], r["blast_percentage_max"]) == (
        lo, round(100 * (blasts + len(undecided) - 1) / len(white), 2))
    # reviewed cells only, and the model's suggestions for the others, apart; together the counts after review
    mine, model = r["by_reviewer"], r["not_reviewed"]
    assert (mine["white_cells"], mine["blasts"], mine["uncertain"], mine["normal"]) == (2, 0, 1, 1)
    assert model["white_cells"] == len(white) - 2 and model["uncertain"] == len(undecided) - 2
    for key in ("white_cells", "blasts", "uncertain", "normal"):
        assert mine[key] + model[key] == r[key]

    # every undecided cell decided as a blast: a single figure again
    for c in undecided:
        session.set_label(c.cell_id, "ALL", "UNCERTAIN", REVIEWER)
    r = reviewed_counts(cells, session)
    assert r["blast_percentage_min"] == r["blast_percentage_max"] == hi
    assert blast_percentage_text(r) == f"{hi:.1f} %"


def test_images_csv_ranges_and_reviewed_only_counts(case, tmp_path):
    """images.csv: blast_percentage_min/max (model and after review), and the reviewed_* columns count the
    reviewed cells only (the reviewer's labels), the not_reviewed_* columns the model's suggestions for the rest;
    together they are the *_after_review columns."""
    folder, results, session, info = case
    export(case, tmp_path, formats={"csv"})
    with open(tmp_path / "images.csv", encoding="utf-8", newline="") as f:
        rows = {unneutralise(r["image"]): r for r in csv.DictReader(f)}
    assert list(next(iter(rows.values())).keys()) == IMAGE_COLUMNS
    seen_reviewed = 0
    for result in results:
        row = rows[result.image]
        white = [c for c in result.cells if c.cell_type != "non_wbc" and not c.partial]   # the counted white cells
        if not white:
            assert row["blast_percentage_min"] == row["blast_percentage_max"] == ""
            continue
        b = sum(c.label == "ALL" for c in white)
        u = sum(c.label == "UNCERTAIN" for c in white)
        assert float(row["blast_percentage_min"]) == round(100 * b / len(white), 2)
        assert float(row["blast_percentage_max"]) == round(100 * (b + u) / len(white), 2)
        reviewed = [c for c in white if c.cell_id in session.reviews]
        seen_reviewed += len(reviewed)
        by_reviewer = [session.reviews[c.cell_id].label for c in reviewed]
        others = [c.label for c in white if c.cell_id not in session.reviews]
        assert int(row["reviewed_white_cells"]) == len(reviewed)
        assert int(row["reviewed_blasts"]) == by_reviewer.count("ALL")
        assert int(row["reviewed_normal"]) == by_reviewer.count("HEM")
        assert int(row["reviewed_uncertain"]) == by_reviewer.count("UNCERTAIN")
        assert int(row["not_reviewed_blasts"]) == others.count("ALL")
        assert int(row["not_reviewed_uncertain"]) == others.count("UNCERTAIN")
        for key in ("blasts", "uncertain", "normal"):
            assert int(row[f"reviewed_{key}"]) + int(row[f"not_reviewed_{key}"]) == int(row[f"{key}_after_review"])
        after_u = int(row["uncertain_after_review"])
        after_b = int(row["blasts_after_review"])
        assert float(row["blast_percentage_after_review_max"]) == round(100 * (after_b + after_u) / len(white), 2)
    assert seen_reviewed == sum(1 for r in results for c in r.cells if not c.partial and c.cell_id in session.reviews)
    assert seen_reviewed >= 1


def test_pdf_shows_the_range_and_the_reviewed_cells_apart(case, tmp_path):
    """The PDF's summary: the blast % as a range with the undecided cells named, and the reviewer's counts, the
    model's remaining suggestions and the total after review in their own columns."""
    from leukviewer.core.analysis.results import blast_percentage_text, count_cells, percentage_text
    from leukviewer.core.review.session import reviewed_counts

    folder, results, session, info = case
    cells = [c for r in results for c in r.cells if not c.partial]   # the counted cells
    s = count_cells((c.label, c.cell_type) for c in cells)
    r = reviewed_counts(cells, session)
    assert s["blast_percentage_min"] < s["blast_percentage_max"]
    export(case, tmp_path / "reviewed", formats={"pdf"}, reviewer=REVIEWER)
    text = " ".join(_pdf_pages(tmp_path / "reviewed" / "report.pdf"))
    assert f"blasts per 100 white cells {blast_percentage_text(s)})" in text
    assert f"after review ({blast_percentage_text(r)})" in text
    assert f"Blasts per 100 white cells {percentage_text(s)} {percentage_text(r)}" in text
    assert "Reviewed cells (reviewer's label)" in text and "Not reviewed (model's suggestion)" in text
    mine, model = r["by_reviewer"], r["not_reviewed"]
    assert re.search(rf"Blasts \(ALL\) {s['blasts']} {mine['blasts']} {model['blasts']} {r['blasts']}\b", text)
    assert re.search(rf"Uncertain \(undecided\) {s['uncertain']} {mine['uncertain']} {model['uncertain']} "
                     rf"{r['uncertain']}\b", text)
    assert "0.0 %" not in text.split("Differential count")[0]

    export_case(results, None, info, tmp_path / "unreviewed", folder=folder, formats={"pdf"}, model_dir=None)
    text = " ".join(_pdf_pages(tmp_path / "unreviewed" / "report.pdf"))
    assert f"(blasts per 100 white cells {blast_percentage_text(s)}). No cell has been reviewed." in text
    assert "Reviewed cells" not in text


def test_labels_given_while_the_report_is_written_stay_out_of_it(case, tmp_path):
    """The reviewer keeps labelling while the export runs: every file shows the review as it was when the export
    started (no label in one file and not in another)."""
    from leukviewer.core.analysis.results import counted_cells

    folder, results, _, info = case
    copy = tmp_path / "case"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(".leukviewer"))
    session = ReviewSession.open(copy, {"name": info.name, "version": info.version, "sha256": info.sha256})
    cells = counted_cells([c for r in results for c in r.cells])
    session.set_label(cells[0].cell_id, "UNCERTAIN", cells[0].label, REVIEWER)
    late = list(cells[1:5])

    def keep_labelling(done, total, message):     # one more label as each file is written
        if late:
            c = late.pop(0)
            session.set_label(c.cell_id, "ALL" if c.label != "ALL" else "HEM", c.label, "Dr. Late")

    export_case(results, session, info, tmp_path / "out", folder=copy, formats={"csv", "geojson"},
                on_progress=keep_labelling)
    assert not late and len(session.reviews) == 5           # the labelling went on during the export
    with open(tmp_path / "out" / "cells.csv", encoding="utf-8", newline="") as f:
        assert [(unneutralise(r["cell_id"]), r["reviewer"]) for r in csv.DictReader(f) if r["reviewer"]] == [
            (cells[0].cell_id, REVIEWER)]
    with open(tmp_path / "out" / "images.csv", encoding="utf-8", newline="") as f:
        assert sum(int(r["reviewed_cells"] or 0) for r in csv.DictReader(f)) == 1
    features = json.loads((tmp_path / "out" / "cells.geojson").read_text())["features"]
    assert [f["properties"]["metadata"]["reviewer"] for f in features if f["properties"]["metadata"]["reviewer"]] == [
        REVIEWER]


def test_a_report_from_the_models_name_and_hash_takes_the_threshold_from_its_folder(tiny_model_dir):
    """Reopened with stored results, the window exports before the model has loaded: it knows the model's name and
    hash only. The threshold comes from the model folder, never a default of 0.5."""
    meta = json.loads((tiny_model_dir / "model.json").read_text())
    identity = {"name": meta["name"], "version": meta["version"], "sha256": meta["weights"]["sha256"]}
    model = ModelDescriptor.of(identity, tiny_model_dir)
    assert model.threshold == meta["decision"]["threshold"] != 0.5
    assert list(model.uncertainty_band) == meta["decision"]["uncertainty_band"]
    with pytest.raises(ValueError, match="decision threshold .* is unknown"):
        ModelDescriptor.of(identity)


def test_the_pdf_counts_an_analysis_fault_apart_from_unreadable_images(case, tmp_path):
    """An image the analysis failed on is readable: the report must not call it unreadable (it is a fault to
    report), and says so apart from the files that could not be decoded."""
    from leukviewer.core.analysis.results import STATUS_FAILED, STATUS_UNREADABLE, ImageResult

    folder, results, session, info = case
    unreadable = ImageResult(str(folder / "broken.jpg"), "broken.jpg", f"{STATUS_UNREADABLE}: truncated JPEG")
    failed = ImageResult(str(folder / "field.jpg"), "field.jpg",
                         f"{STATUS_FAILED}: TypeError: boom (a fault in leukviewer, not in the image)")
    export_case([*results, unreadable, failed], session, info, tmp_path, folder=folder, model_dir=None,
                formats={"pdf"}, reviewer=REVIEWER)
    text = " ".join(_pdf_pages(tmp_path / "report.pdf"))
    assert f"{len(results)} analysed of {len(results) + 2}, 1 unreadable, 1 failed (analysis fault)" in text
    assert "1 image(s) could not be read and are not counted" in text
    assert "1 image(s) failed in the analysis (a fault in leukviewer, not in the image)" in text
