"""report.pdf: the case report a hematologist signs, made headless with reportlab (the histogram is the window's,
drawn by ``histogram.py``).

Every page carries the RUO sentence, the case name, the model hash and "page i of n".
"""
from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape

from training.celltypes import CELL_TYPES, is_white_cell

from ... import RUO_NOTICE, __version__
from ..labels import LABEL_HEX
from ..analysis.results import IMAGE_COUNT_WORDS, WHITE_CELLS_NOTE, blast_percentage_text, percentage_text
from .histogram import histogram_png

THUMB_PX = 160
HISTOGRAM_INCHES, HISTOGRAM_DPI = (7.0, 2.1), 150
GALLERY_COLUMNS = 6

_FONTS: dict[str, str] = {}


def _fonts() -> dict[str, str]:
    """DejaVu (shipped with matplotlib) so that any folder or reviewer name prints; Helvetica if absent."""
    if _FONTS:
        return _FONTS
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    names = {"regular": "Helvetica", "bold": "Helvetica-Bold", "mono": "Courier"}
    try:
        import matplotlib

        ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        for key, file, name in (("regular", "DejaVuSans.ttf", "LV-Sans"), ("bold", "DejaVuSans-Bold.ttf", "LV-Sans-Bold"),
                                ("mono", "DejaVuSansMono.ttf", "LV-Mono")):
            if name not in pdfmetrics.getRegisteredFontNames():
                pdfmetrics.registerFont(TTFont(name, str(ttf / file)))
            names[key] = name
        from reportlab.lib.fonts import addMapping

        addMapping("LV-Sans", 0, 0, "LV-Sans")
        addMapping("LV-Sans", 1, 0, "LV-Sans-Bold")
        addMapping("LV-Sans", 0, 1, "LV-Sans")
        addMapping("LV-Sans", 1, 1, "LV-Sans-Bold")
    except Exception:  # a damaged matplotlib install must not stop the report; the core fonts still work
        names = {"regular": "Helvetica", "bold": "Helvetica-Bold", "mono": "Courier"}
    _FONTS.update(names)
    return _FONTS


def _p(text: str) -> str:
    return escape(str(text))


def _percent(value) -> str:
    return "–" if value is None else f"{value:.1f} %"


def _middle_truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit // 2 - 1] + "…" + text[-(limit - limit // 2):]


# ---------------------------------------------------------------------------------------------------- pictures


def cell_thumbnail(rgb, cell, size: int = THUMB_PX, frame: str | None = None) -> bytes:
    """A square JPEG around the cell (its bounding box and a margin), ``size`` pixels wide, with a coloured
    frame (hex colour) if given."""
    from PIL import Image, ImageDraw

    h, w = rgb.shape[:2]
    x, y, bw, bh = cell.bbox
    side = int(max(bw, bh) * 1.35) + 8
    side = min(side, max(h, w))
    cx, cy = x + bw / 2.0, y + bh / 2.0
    x0 = int(round(min(max(cx - side / 2.0, 0), max(w - side, 0))))
    y0 = int(round(min(max(cy - side / 2.0, 0), max(h - side, 0))))
    crop = rgb[y0:y0 + side, x0:x0 + side]
    image = Image.fromarray(crop)
    if image.size != (side, side):  # image smaller than the square on one side: pad with white
        canvas = Image.new("RGB", (side, side), (255, 255, 255))
        canvas.paste(image, ((side - image.size[0]) // 2, (side - image.size[1]) // 2))
        image = canvas
    image = image.resize((size, size), Image.Resampling.LANCZOS if side > size else Image.Resampling.BICUBIC)
    if frame:
        ImageDraw.Draw(image).rectangle([0, 0, size - 1, size - 1], outline=frame, width=max(2, size // 32))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def gallery_thumbnails(cells, on_image: Callable[[str], None] | None = None,
                       frames: dict[str, str] | None = None) -> dict[str, bytes | None]:
    """cell_id -> JPEG thumbnail (None where the image can no longer be read), framed in ``frames[cell_id]``
    (a hex colour) where given; each image is read once."""
    from ..analysis.imageio import UnreadableImage, read_image

    by_image = defaultdict(list)
    paths = {}
    for cell, path in cells:
        by_image[cell.image].append(cell)
        paths[cell.image] = path
    thumbs: dict[str, bytes | None] = {}
    for image, image_cells in by_image.items():
        try:
            rgb = read_image(paths[image])
        except (UnreadableImage, OSError, MemoryError):
            rgb = None
        for cell in image_cells:
            frame = (frames or {}).get(cell.cell_id)
            thumbs[cell.cell_id] = cell_thumbnail(rgb, cell, frame=frame) if rgb is not None else None
        del rgb
        if on_image:
            on_image(image)
    return thumbs


# ---------------------------------------------------------------------------------------------------- document


def _styles():
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle

    f = _fonts()
    base = ParagraphStyle("base", fontName=f["regular"], fontSize=8.5, leading=11, splitLongWords=1)
    return {
        "base": base,
        "bullet": ParagraphStyle("bullet", parent=base, leftIndent=10, bulletIndent=2),
        "small": ParagraphStyle("small", parent=base, fontSize=7, leading=8.6),
        "cell": ParagraphStyle("cell", parent=base, fontSize=7.5, leading=9),
        "cellbold": ParagraphStyle("cellbold", parent=base, fontName=f["bold"], fontSize=7.5, leading=9),
        "mono": ParagraphStyle("mono", parent=base, fontName=f["mono"], fontSize=7.5, leading=9.5),
        "title": ParagraphStyle("title", parent=base, fontName=f["bold"], fontSize=16, leading=20, spaceAfter=2),
        "subtitle": ParagraphStyle("subtitle", parent=base, fontSize=10.5, leading=13, spaceAfter=6,
                                   textColor=colors.HexColor("#333333")),
        "h2": ParagraphStyle("h2", parent=base, fontName=f["bold"], fontSize=11, leading=14, spaceBefore=10,
                             spaceAfter=4, keepWithNext=1),
        "ruo": ParagraphStyle("ruo", parent=base, fontName=f["bold"], fontSize=9.5, leading=12, alignment=1,
                              textColor=colors.HexColor("#8b0000")),
        "note": ParagraphStyle("note", parent=base, textColor=colors.HexColor("#8a4b00")),
        "caption": ParagraphStyle("caption", parent=base, fontSize=6.5, leading=7.8, alignment=1),
    }


def _canvas_class(case):
    """A canvas that knows the page count when it decorates (header, footer, page i of n)."""
    from reportlab.lib import colors
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas

    f = _fonts()
    model = case.model

    class DecoratedCanvas(canvas.Canvas):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._pages = []

        def showPage(self):
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._decorate(total)
                super().showPage()
            super().save()

        def _decorate(self, total: int) -> None:
            width, height = self._pagesize
            self.saveState()
            self.setFont(f["regular"], 7)
            self.setFillColor(colors.HexColor("#555555"))
            self.drawString(18 * mm, height - 11 * mm,
                            _middle_truncate(f"leukviewer {report_title(case).lower()} · case {case.name}", 110))
            self.drawRightString(width - 18 * mm, height - 11 * mm, f"page {self._pageNumber} of {total}")
            self.setStrokeColor(colors.HexColor("#bbbbbb"))
            self.setLineWidth(0.4)
            self.line(18 * mm, height - 12.5 * mm, width - 18 * mm, height - 12.5 * mm)
            self.line(18 * mm, 15 * mm, width - 18 * mm, 15 * mm)
            self.setFont(f["bold"], 8.5)
            self.setFillColor(colors.HexColor("#8b0000"))
            self.drawCentredString(width / 2, 10.5 * mm, RUO_NOTICE)
            self.setFont(f["regular"], 6.5)
            self.setFillColor(colors.HexColor("#555555"))
            self.drawCentredString(width / 2, 6.5 * mm,
                                   f"model {model.name} {model.version} · SHA-256 {model.short_hash} · "
                                   f"leukviewer {__version__} · generated {case.created}")
            self.restoreState()

    return DecoratedCanvas


def _table(rows, widths, header_rows: int = 1, zebra: bool = True, align_right_from: int | None = None):
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    f = _fonts()
    table = Table(rows, colWidths=widths, repeatRows=header_rows)
    style = [
        ("FONT", (0, 0), (-1, -1), f["regular"], 7.5),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("LINEBELOW", (0, header_rows - 1), (-1, header_rows - 1), 0.6, colors.HexColor("#444444")),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ] if header_rows else [
        ("FONT", (0, 0), (-1, -1), f["regular"], 7.5),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
    ]
    if header_rows:
        style.append(("FONT", (0, 0), (-1, header_rows - 1), f["bold"], 7.5))
    if zebra:
        for i in range(header_rows, len(rows)):
            if (i - header_rows) % 2:
                style.append(("BACKGROUND", (0, i), (-1, i), colors.HexColor("#f2f2f2")))
    if align_right_from is not None:
        style.append(("ALIGN", (align_right_from, 0), (-1, -1), "RIGHT"))
    table.setStyle(TableStyle(style))
    return table


def _header_block(case, st, width):
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph

    m = case.model
    lo, hi = m.uncertainty_band
    counts = case.image_counts()
    names = m.class_names   # a white-cell-type model, not HEM/ALL (when the classes are unknown: its cells)
    multiclass = "blast" in names if names else bool(set(case.cell_types()) - {"blast", "lymphoid"})
    flag = "P(blast)" if multiclass else "P(ALL)"
    rows = [
        ("Case", _p(case.name)),
        ("Folder", _p(case.folder)),
        ("Report date", _p(case.created)),
        ("Reviewer", _p(case.reviewer) if case.reviewer else "<i>no reviewed cells</i>"),
        ("Software", f"leukviewer {_p(__version__)}"),
        ("Model", f"{_p(m.name)} version {_p(m.version)}"),
        ("Model weights SHA-256", f"<font name='{_fonts()['mono']}'>{_p(m.sha256)}</font>"),
        ("Model folder manifest SHA-256", f"<font name='{_fonts()['mono']}'>{_p(m.manifest_sha256)}</font>"
         if m.manifest_sha256 else "<i>none: a folder without manifest.sha256 (its model.json is not verified)</i>"),
        ("Decision threshold", f"{flag} ≥ {m.threshold:.3f} → blast (ALL), below → normal (HEM)"),
        ("Uncertainty band", f"{lo:.3f} &lt; {flag} &lt; {hi:.3f} → UNCERTAIN (needs review)" if hi > lo
         else "none (every cell is ALL or HEM)"),
        *([("Test-time augmentation", f"{flag} of each cell is the mean over {m.tta_views} flips/rotations of it "
            "(the threshold was fitted on that mean)")] if m.tta_views > 1 else []),
        *([("Cell types", _p(", ".join(CELL_TYPES[t] for t in CELL_TYPES if t in case.cell_types())
                              + " (each cell gets its most probable type; a cell flagged ALL is a blast)"))]
          if multiclass else []),
        ("Images", f"{counts['analysed']} analysed of {counts['images']}" + "".join(
            f", {counts[key]} {words}" for key, words in IMAGE_COUNT_WORDS.items() if counts[key])),
    ]
    data = [[Paragraph(k, st["cellbold"]), Paragraph(v, st["cell"])] for k, v in rows]
    return _table(data, [38 * mm, width - 38 * mm], header_rows=0, zebra=False)


def _summary_block(case, st, width):
    from reportlab.lib import colors
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, Spacer

    s, r = case.suggested_counts(), case.reviewed_counts()
    mine, model = r["by_reviewer"], r["not_reviewed"]
    n = s["white_cells"]
    # "After review" mixes the reviewer's labels with the model's suggestions for cells nobody reviewed: the two
    # parts stand in their own columns (reviewed cells only, the model's remaining suggestions), the total last
    rows = [
        ["", "Suggested by the model", "Reviewed cells (reviewer's label)", "Not reviewed (model's suggestion)",
         "After review (the two together)"],
        ["White cells", n, mine["white_cells"], model["white_cells"], r["white_cells"]],
        ["Blasts (ALL)", s["blasts"], mine["blasts"], model["blasts"], r["blasts"]],
        ["Uncertain (undecided)", s["uncertain"], mine["uncertain"], model["uncertain"], r["uncertain"]],
        ["Normal (HEM)", s["normal"], mine["normal"], model["normal"], r["normal"]],
        ["Blasts per 100 white cells", percentage_text(s), "", "", percentage_text(r)],
        ["Not white cells (excluded)", s["non_white_cells"], mine["non_white_cells"], model["non_white_cells"],
         r["non_white_cells"]],
        ["Cells reviewed", "", f"{r['reviewed']} of {s['cells']}", "", ""],
        ["Labels or types changed by the reviewer", "", r["changed"], "", ""],
    ]
    reviewed = case.is_reviewed()
    if not reviewed:  # nobody reviewed: the model's counts only, no "After review" column or review rows
        rows = [row[:2] for row in rows[:7]]
    from reportlab.lib.enums import TA_RIGHT
    from reportlab.lib.styles import ParagraphStyle

    right = ParagraphStyle("cellbold-right", parent=st["cellbold"], alignment=TA_RIGHT)
    header = [Paragraph(_p(h), st["cellbold"] if i == 0 else right) for i, h in enumerate(rows[0])]
    table = _table([header] + [[str(v) for v in row] for row in rows[1:]],
                   [50 * mm, 30 * mm, 30 * mm, 30 * mm, 30 * mm][:len(rows[0])] if reviewed else [70 * mm, 50 * mm],
                   align_right_from=1)
    if reviewed:
        table.setStyle([("LINEABOVE", (0, 7), (-1, 7), 0.4, colors.HexColor("#888888")),
                        ("VALIGN", (0, 0), (-1, 0), "BOTTOM")])
    flow = [table, Spacer(1, 3)]
    flagged_open = sum(1 for c in case.flagged_cells() if case.review_of(c) is None)
    where = f"{n} white cells in {case.image_counts()['analysed']} images"
    if reviewed:
        sentence = (f"{where}: {s['blasts']} blasts suggested by the model (blasts per 100 white cells "
                    f"{blast_percentage_text(s)}); {r['blasts']} after review ({blast_percentage_text(r)}). "
                    f"Reviewed: {r['reviewed']} of {s['cells']} cells ({r['changed']} changed): {mine['blasts']} "
                    f"blasts, {mine['uncertain']} uncertain, {mine['normal']} normal by the reviewer; the model's "
                    f"suggestion stands for the other {s['cells'] - r['reviewed']}.")
    else:
        sentence = (f"{where}: {s['blasts']} blasts suggested by the model (blasts per 100 white cells "
                    f"{blast_percentage_text(s)}). No cell has been reviewed.")
    if s["border_cells_excluded"]:
        sentence += (f" {s['border_cells_excluded']} cells cut by the image border are shown and flagged but not "
                     "counted.")
    flow.append(Paragraph(_p(sentence), st["base"]))
    flow.append(Paragraph("While uncertain cells are undecided, blasts per 100 white cells is shown as the range it "
                          "can take: the minimum counts every undecided cell as normal, the maximum every one as a "
                          "blast. " + _p(WHITE_CELLS_NOTE)
                          + (" A reviewed cell is decided unless the reviewer called it uncertain; the totals after "
                             "review use the reviewer's label and type where there is one and the model's "
                             "suggestion elsewhere." if reviewed
                             else " Every label in this report is the model's suggestion."), st["small"]))
    notes = list(case.notes)
    if flagged_open:
        notes.insert(0, f"{flagged_open} flagged cell(s) (ALL or UNCERTAIN) have not been reviewed.")
    images = case.image_counts()
    notes += [f"{n} image(s) {why} and are not counted (see the per-image table)." for n, why in (
        (images["unreadable"], "could not be read"),
        (images["failed"], "failed in the analysis (a fault in leukviewer, not in the image)")) if n]
    for note in notes:
        flow.append(Paragraph("⚠ " + _p(note), st["note"]))
    return flow


def differential_rows(case) -> list[list[str]]:
    """The differential count: one row per white-cell type the model gives (and any a reviewer chose), with the
    count and the share of white cells suggested by the model and after review (the model's columns only when
    nobody reviewed); non_wbc last, not a share."""
    s, r = case.suggested_counts(), case.reviewed_counts()
    types = list(dict.fromkeys([*case.cell_types(), *s["cell_types"], *r["cell_types"]]))
    types = [t for t in CELL_TYPES if t in types] + [t for t in types if t not in CELL_TYPES]
    types = [t for t in types if is_white_cell(t)] + [t for t in types if not is_white_cell(t)]

    def share(counts, t):
        n = counts["cell_types"].get(t, 0)
        if not is_white_cell(t):
            return "not counted"
        return _percent(100.0 * n / counts["white_cells"]) if counts["white_cells"] else "–"

    rows = [["Cell type", "Suggested", "% of white cells", "After review", "% of white cells"]]
    for t in types:
        rows.append([CELL_TYPES.get(t, t), str(s["cell_types"].get(t, 0)), share(s, t),
                     str(r["cell_types"].get(t, 0)), share(r, t)])
    rows.append(["White cells", str(s["white_cells"]), _percent(100.0) if s["white_cells"] else "–",
                 str(r["white_cells"]), _percent(100.0) if r["white_cells"] else "–"])
    return rows if case.is_reviewed() else [row[:3] for row in rows]


def _differential_block(case, st, width):
    from reportlab.lib import colors
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, Paragraph

    rows = differential_rows(case)
    table = _table(rows, [58 * mm, 25 * mm, 30 * mm, 25 * mm, 30 * mm][:len(rows[0])], align_right_from=1)
    table.setStyle([("LINEABOVE", (0, len(rows) - 1), (-1, len(rows) - 1), 0.4, colors.HexColor("#888888"))])
    return [KeepTogether([
        Paragraph("Differential count (white-cell types)", st["h2"]), table,
        Paragraph("Blasts are the cells flagged ALL; every other cell has its most probable non-blast type. "
                  "Cells not white cells are listed but not counted among the white cells (see above)."
                  + (" After review: the reviewer's type for reviewed cells, the model's for the others."
                     if case.is_reviewed() else ""),
                  st["small"])])]


def _gallery_block(case, st, width, max_gallery, on_image):
    from reportlab.lib.units import mm

    from ..review.session import type_after_review
    from reportlab.platypus import Image, KeepTogether, Paragraph, Table, TableStyle

    flagged = case.flagged_cells()
    if not flagged:
        return [Paragraph("Flagged cells", st["h2"]),
                Paragraph("No cell was flagged as a blast or uncertain by the model or the reviewer.", st["base"])]
    shown = flagged[:max_gallery]
    paths = {r.image: r.path for r in case.results}
    colours = {c.cell_id: LABEL_HEX.get(case.review_of(c).label if case.review_of(c) else c.label, "#000000")
               for c in shown}
    thumbs = gallery_thumbnails([(c, paths.get(c.image, c.image)) for c in shown], on_image, colours)
    intro = (f"{len(flagged)} flagged cell(s): blasts first, then uncertain, then cells the reviewer cleared; "
             f"most probable first. Frame colour: label after review." if case.is_reviewed() else
             f"{len(flagged)} flagged cell(s): blasts first, then uncertain; most probable first. Frame colour: "
             f"the model's label (not reviewed).")
    if len(flagged) > len(shown):
        intro += (f" Showing {len(shown)}; {len(flagged) - len(shown)} more flagged cell(s) are omitted here "
                  f"and listed in cells.csv.")
    col = width / GALLERY_COLUMNS
    side = col - 5 * mm
    cells = []
    for cell in shown:
        review = case.review_of(cell)
        final = review.label if review else cell.label
        cell_type = type_after_review(cell, review)
        jpeg = thumbs.get(cell.cell_id)
        picture = Image(io.BytesIO(jpeg), width=side, height=side) if jpeg else \
            Paragraph("image not available", st["caption"])
        if review is None:
            reviewed = "not reviewed"
        elif review.label == cell.label and cell_type == cell.cell_type:
            reviewed = "confirmed"
        elif review.label == cell.label:
            reviewed = f"type {cell.cell_type} → {cell_type}"
        else:
            reviewed = f"{cell.label} → {review.label}"
        image, number = cell.cell_id.rsplit("#", 1) if "#" in cell.cell_id else (cell.image, "")
        name = _middle_truncate(str(Path(image).with_suffix("")), max(8, 16 - len(number))) + f" #{number}"
        caption = Paragraph(
            f"<font color='{LABEL_HEX.get(final, '#000000')}'><b>{final}</b></font> p={cell.blast_probability:.2f}"
            f"<br/>{_p(CELL_TYPES.get(cell_type, cell_type))}<br/>{_p(reviewed)}<br/>{_p(name)}"
            f"{'<br/><i>partial cell</i>' if cell.partial else ''}", st["caption"])
        inner = Table([[picture], [caption]], colWidths=[col - 1 * mm])
        inner.setStyle(TableStyle([
            ("ALIGN", (0, 0), (-1, -1), "CENTER"), ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 0),
            ("TOPPADDING", (0, 0), (-1, -1), 1), ("BOTTOMPADDING", (0, 0), (-1, -1), 1),
        ]))
        cells.append(inner)
    grid_style = TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP"), ("ALIGN", (0, 0), (-1, -1), "CENTER"),
                             ("LEFTPADDING", (0, 0), (-1, -1), 0), ("RIGHTPADDING", (0, 0), (-1, -1), 0),
                             ("BOTTOMPADDING", (0, 0), (-1, -1), 5)])
    rows = []
    for i in range(0, len(cells), GALLERY_COLUMNS):
        row = cells[i:i + GALLERY_COLUMNS]
        row += [""] * (GALLERY_COLUMNS - len(row))
        rows.append(Table([row], colWidths=[col] * GALLERY_COLUMNS, style=grid_style))
    # the heading and its explanation stay with the first row of pictures
    return [KeepTogether([Paragraph("Flagged cells", st["h2"]), Paragraph(_p(intro), st["base"]), rows[0]])] + rows[1:]


def _per_image_block(case, st, width):
    from reportlab.lib import colors
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph

    from ..review.session import reviewed_counts

    groups = ["", "", "", "Suggested by the model", "", "", "After review", "", "Review", ""]
    header = ["Image", "Status", "Cells", "Blasts", "Uncertain", "Blast %", "Blasts", "Blast %", "Reviewed",
              "Changed"]
    rows = [groups, header]
    for result in case.results:
        c = result.counts()
        r = reviewed_counts(result.cells, case.session)
        status = result.status if len(result.status) < 120 else result.status[:117] + "…"
        rows.append([Paragraph(_p(result.image), st["cell"]), Paragraph(_p(status), st["cell"]),
                     str(c["white_cells"]), str(c["blasts"]), str(c["uncertain"]), percentage_text(c),
                     str(r["blasts"]), percentage_text(r), str(r["reviewed"]), str(r["changed"])])
    fixed = [10, 11, 16, 18, 11, 18, 17, 15]   # a blast % can be a range: "33.3–100 %"
    if not case.is_reviewed():  # the model's columns only
        rows, fixed = [row[:6] for row in rows], fixed[:4]
    rest = width / mm - sum(fixed)
    widths = [rest * 0.66 * mm, rest * 0.34 * mm] + [v * mm for v in fixed]
    table = _table(rows, widths, header_rows=2, align_right_from=2)
    if not case.is_reviewed():
        table.setStyle([("SPAN", (3, 0), (5, 0)), ("ALIGN", (3, 0), (-1, 0), "CENTER"),
                        ("LINEBELOW", (3, 0), (5, 0), 0.4, colors.HexColor("#888888"))])
        return [table]
    table.setStyle([("SPAN", (3, 0), (5, 0)), ("SPAN", (6, 0), (7, 0)), ("SPAN", (8, 0), (9, 0)),
                    ("ALIGN", (3, 0), (-1, 0), "CENTER"),
                    ("LINEBELOW", (3, 0), (5, 0), 0.4, colors.HexColor("#888888")),
                    ("LINEBELOW", (6, 0), (7, 0), 0.4, colors.HexColor("#888888")),
                    ("LINEBELOW", (8, 0), (9, 0), 0.4, colors.HexColor("#888888"))])
    return [table, Paragraph("After review: the reviewer's label for reviewed cells, the model's suggestion for the "
                             "others (Reviewed: cells the reviewer labelled). Blast %: blasts per 100 white cells, "
                             "a range while uncertain cells are undecided.", st["small"])]


def report_title(case) -> str:
    """What the report is: a review only once someone has reviewed cells; before that, the model's analysis."""
    return "Blast review report" if case.is_reviewed() else "Analysis report (not reviewed)"


def _signoff_block(case, st, width):
    from reportlab.lib.units import mm
    from reportlab.platypus import KeepTogether, Paragraph, Spacer, Table, TableStyle

    if not case.is_reviewed():  # nothing to sign: say what the report is and what review would add
        return [KeepTogether([Paragraph("Not reviewed", st["h2"]), Paragraph(
            "No cell of this case has been reviewed: every label and count above is the model's suggestion. "
            "Open the folder in the review window (leukviewer FOLDER) and review the flagged cells before "
            "relying on them; the report written then carries the reviewer's sign-off. "
            + _p(RUO_NOTICE), st["base"])])]
    from .export import review_status

    review = review_status(case.cells(), case.session)
    flagged, open_flags = review["flagged"], review["flagged_unreviewed"]
    statement = ("I have reviewed the flagged cells of this case." if not open_flags else
                 f"I have reviewed {flagged - open_flags} of the {flagged} flagged cells of this case "
                 f"({open_flags} not reviewed).")

    line = "_" * 40
    rows = [[Paragraph("Reviewer", st["cellbold"]), Paragraph(_p(case.reviewer) if case.reviewer else line,
                                                               st["base"])],
            [Paragraph("Signature", st["cellbold"]), Paragraph(line, st["base"])],
            [Paragraph("Date", st["cellbold"]), Paragraph(line, st["base"])]]
    table = Table(rows, colWidths=[30 * mm, width - 30 * mm])
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "BOTTOM"), ("TOPPADDING", (0, 0), (-1, -1), 9),
                               ("LEFTPADDING", (0, 0), (-1, -1), 0)]))
    return [KeepTogether([Paragraph("Sign-off", st["h2"]),
                          Paragraph(statement + " The counts above are a research "
                                    "measurement, not a diagnosis. " + _p(RUO_NOTICE), st["base"]),
                          Spacer(1, 2), table])]


def write_pdf(case, path: Path, max_gallery: int = 60, on_image: Callable[[str], None] | None = None) -> None:
    """The whole report into ``path`` (A4)."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    from .method import method_and_limitations

    st = _styles()
    doc = SimpleDocTemplate(str(path), pagesize=A4, leftMargin=18 * mm, rightMargin=18 * mm, topMargin=17 * mm,
                            bottomMargin=20 * mm, title=f"{report_title(case)}: {case.name}",
                            author=case.reviewer or "leukviewer", subject=RUO_NOTICE,
                            creator=f"leukviewer {__version__}")
    width = doc.width
    story = [Paragraph(report_title(case), st["title"]),
             Paragraph(_p(f"Case {case.name} · {case.created[:10]}"), st["subtitle"])]
    banner = Table([[Paragraph(RUO_NOTICE, st["ruo"])]], colWidths=[width])
    banner.setStyle(TableStyle([("BACKGROUND", (0, 0), (-1, -1), colors.HexColor("#fdecea")),
                                ("BOX", (0, 0), (-1, -1), 0.6, colors.HexColor("#8b0000"))]))
    story += [banner, Spacer(1, 6), _header_block(case, st, width)]
    story += [Paragraph("Summary", st["h2"])] + _summary_block(case, st, width)
    story += _differential_block(case, st, width)

    cells = case.cells()
    from ..review.session import final_label

    (w_in, h_in), dpi = HISTOGRAM_INCHES, HISTOGRAM_DPI
    png = histogram_png([c.blast_probability for c in cells], case.model.threshold, case.model.uncertainty_band,
                        [final_label(c, case.session) for c in cells],
                        legend_title="label after review" if case.is_reviewed() else "model's label",
                        width_px=round(w_in * dpi), height_px=round(h_in * dpi), dpi=dpi)
    story += [Paragraph("Blast probabilities", st["h2"]), Image(io.BytesIO(png), width=width,
                                                                height=width * h_in / w_in)]
    story += _gallery_block(case, st, width, max_gallery, on_image)
    story += [Paragraph("Per image", st["h2"])] + _per_image_block(case, st, width)
    method, limitations = method_and_limitations(case.model)
    story += [Paragraph("Method and limitations", st["h2"]), Paragraph(_p(method), st["base"]), Spacer(1, 4),
              Paragraph("<b>Limitations</b>", st["base"])]
    story += [Paragraph(_p(item), st["bullet"], bulletText="•") for item in limitations]
    story += _signoff_block(case, st, width)
    doc.build(story, canvasmaker=_canvas_class(case))
