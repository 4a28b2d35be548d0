"""The white-cell type in the window: gallery, outline tooltips, summary panel, and the reviewer changing it."""
import json
import shutil

from PySide6.QtCore import Qt

from training.celltypes import CELL_TYPES, SHORT_NAMES


def run_to_end(qtbot, window, folder, timeout=120_000):
    with qtbot.waitSignal(window.analysisFinished, timeout=timeout):
        window.open_folder(folder)


class Tile:
    """A gallery tile as the reviewer sees it: its caption and its tooltip."""
    def __init__(self, window, cell_id):
        self.gallery, self.cell_id = window.gallery, cell_id

    def text(self):
        return self.gallery.caption(self.cell_id)

    def toolTip(self):
        return self.gallery.tooltip(self.cell_id)


def gallery_item(window, cell_id):
    return Tile(window, cell_id)


def test_types_shown_changed_by_the_reviewer_counted_and_restored(qtbot, make_window, multiclass_model_dir,
                                                                  shared_data, tmp_path, reviewer_name):
    case = tmp_path / "case"
    case.mkdir()
    for kind in ("neutrophil", "platelet", "monocyte", "lymphocyte"):
        for p in sorted((shared_data / "pbc" / kind).glob("*.jpg"))[:1]:
            shutil.copy(p, case / f"{kind}-{p.name}")
    window = make_window(model_dir=multiclass_model_dir)
    run_to_end(qtbot, window, case)
    assert len(window.cells) >= 4
    for cell in window.cells.values():   # every cell shows its type: gallery caption and tooltip, outline tooltip
        item = gallery_item(window, cell.cell_id)
        assert SHORT_NAMES[cell.cell_type] in item.text()
        assert f"Type: {CELL_TYPES[cell.cell_type]}" in item.toolTip()
    window.select_cell(next(iter(window.cells)))
    outline = window.view.item_for(window.current_cell)
    assert f"Type: {CELL_TYPES[window.cells[window.current_cell].cell_type]}" in outline.toolTip()
    table = window.summary_panel.table.text()
    assert "Blasts per 100 WBC" in table and "White cells by type" in table
    assert "Not white cells (not counted)" in table
    assert "excluded" in window.summary_panel.table.toolTip()
    for t in window.summary.to_dict()["cell_types"]:
        assert CELL_TYPES[t] in table

    # the Review menu: the selected cell is not a white cell
    cell_id = window.current_cell
    cell = window.cells[cell_id]
    before = dict(window.summary_panel.case_counts["reviewed"])
    window.type_actions["non_wbc"].trigger()
    assert window.wait_for_saves()
    assert reviewer_name == [""]
    after = window.summary_panel.case_counts["reviewed"]
    assert after["white_cells"] == before["white_cells"] - (cell.cell_type != "non_wbc")
    assert after["non_white_cells"] == 1 and after["reviewed"] == 1
    assert window.current_cell == cell_id   # a type change stays on the cell
    assert "Type: Not a white cell" in window.view.item_for(cell_id).toolTip()
    item = gallery_item(window, cell_id)
    assert item.text().endswith("nWBC") and "reviewed: HEM" in item.toolTip() and "(model: " in item.toolTip()
    assert window.gallery.group_of(cell_id) == "HEM"

    # the gallery's context menu on another cell: it is a neutrophil, then the A key makes it a blast
    other = next(c for c in window.gallery.order() if c != cell_id)
    group = window.gallery.groups[window.gallery.group_of(other)]
    menu = group.type_menu(other)
    choice = next(a for a in menu.actions() if a.data() == "neutrophil")
    choice.trigger()
    assert window.wait_for_saves()
    assert window.session.reviewed_type(other) == "neutrophil" and window.current_cell == other
    assert "Neu" in gallery_item(window, other).text()
    qtbot.keyClick(window.view, Qt.Key.Key_A)
    assert window.wait_for_saves()
    assert window.session.reviewed_label(other) == "ALL" and window.session.reviewed_type(other) is None
    assert "Blast" in gallery_item(window, other).text() and window.gallery.group_of(other) == "ALL"
    assert window.summary_panel.case_counts["reviewed"]["blasts"] >= 1
    audit = [json.loads(line) for line in (case / ".leukviewer" / "audit.jsonl").read_text().splitlines()]
    assert [(e["cell_id"], e["action"], e["new_type"]) for e in audit] == [
        (cell_id, "type", "non_wbc"), (other, "type", "neutrophil"), (other, "change", None)]
    window.close()

    again = make_window(model_dir=multiclass_model_dir)
    run_to_end(qtbot, again, case)
    assert again.status_area.analysed == 0 and again.session.reviewed_type(cell_id) == "non_wbc"
    assert "nWBC" in gallery_item(again, cell_id).text()
    assert again.summary_panel.case_counts["reviewed"]["non_white_cells"] == 1
