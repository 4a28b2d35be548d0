"""The case (core/analysis/case.py): the one object the window fills and the report renders."""
from leukviewer.core.analysis.case import Case
from leukviewer.core.analysis.results import (STATUS_FAILED, STATUS_NO_CELLS, STATUS_OK, STATUS_UNREADABLE, Cell,
                                              ImageResult)


def cell(image: str, n: int, p: float, label: str) -> Cell:
    return Cell(f"{image}#{n}", image, (10 * n, 10, 8, 8), [[0, 0], [1, 0], [1, 1]], (10.0 * n, 10.0), 64, p, label,
                False, "m", "1", "abc")


def result(image: str, status: str, cells=()) -> ImageResult:
    return ImageResult(path=f"/case/{image}", image=image, status=status, cells=list(cells))


# The statuses exactly as the pipeline writes them (core/analysis/pipeline.py).
UNREADABLE = f"{STATUS_UNREADABLE}: not an image file (cannot identify image file)"
FAILED = (f"{STATUS_FAILED}: TypeError: unsupported operand type(s) (a fault in leukviewer, not in the image; "
          "please report it)")


def test_an_image_the_analysis_failed_on_is_counted_apart_from_unreadable_ones():
    case = Case.of([result("a.jpg", STATUS_OK, [cell("a.jpg", 1, 0.9, "ALL")]), result("b.jpg", UNREADABLE),
                    result("c.jpg", FAILED), result("d.jpg", f"{STATUS_NO_CELLS}: only red cells")], folder="/case")
    assert case.image_counts() == {"images": 4, "analysed": 2, "unreadable": 1, "failed": 1, "without_cells": 1}
    summary = case.summary.to_dict()
    assert (summary["images_failed"], summary["images_unreadable"], summary["images_analysis_failed"]) == (2, 1, 1)
    assert case.failures() == [f"b.jpg: {UNREADABLE}", f"c.jpg: {FAILED}"]


def test_results_arrive_in_any_order_and_read_back_in_list_order_with_one_cell_index():
    case = Case("/case")
    case.set_listing(["x.jpg", "y.jpg", "z.jpg"], ["notes.txt"])
    case.add(result("z.jpg", STATUS_OK, [cell("z.jpg", 1, 0.2, "HEM")]))
    case.add(result("x.jpg", STATUS_OK, [cell("x.jpg", 1, 0.95, "ALL"), cell("x.jpg", 2, 0.5, "UNCERTAIN")]))
    assert [r.image for r in case.results] == ["x.jpg", "z.jpg"]
    assert sorted(case.cells_by_id) == ["x.jpg#1", "x.jpg#2", "z.jpg#1"]
    assert case.summary.images_total == 3 and case.summary.skipped_files == ["notes.txt"]
    assert case.suggested_counts()["blasts"] == 1 and case.suggested_counts()["uncertain"] == 1


def test_review_order_goes_image_by_image_in_the_gallerys_order_within_each():
    case = Case("/case")
    case.set_listing(["x.jpg", "y.jpg"])
    case.add(result("y.jpg", STATUS_OK, [cell("y.jpg", 1, 0.99, "ALL")]))
    case.add(result("x.jpg", STATUS_OK, [cell("x.jpg", 1, 0.1, "HEM"), cell("x.jpg", 2, 0.9, "ALL")]))
    gallery = ["y.jpg#1", "x.jpg#2", "x.jpg#1"]          # ALL first across the case, then HEM
    assert case.navigation_order(gallery) == ["x.jpg#2", "x.jpg#1", "y.jpg#1"]
    assert case.next_cell("y.jpg#1", "y.jpg", +1, gallery) == "x.jpg#2"      # wraps round
    assert case.next_cell(None, "y.jpg", -1, gallery) == "y.jpg#1"           # no selection: within the image
    assert Case("/empty").next_cell(None, None, +1) is None
