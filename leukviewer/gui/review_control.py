"""The review keys: label, type, confirm, undo and redo the selected cell. Each change is recorded through the
open case's ``ReviewSession`` in the save worker (``SerialJobs``: after the changes queued before it, so the last
one wins and the window never waits for the disk); the views show it once it is saved."""
from __future__ import annotations

import logging

from training.celltypes import CELL_TYPES

from ..core.review.session import ReviewError, final_type
from .dialogs import ReviewerDialog
from .worker import SerialJobs

log = logging.getLogger(__name__)


class ReviewControl:
    def __init__(self, window, saves: SerialJobs):
        self.w = window
        self.saves = saves

    def reviewer(self) -> str | None:
        """The reviewer's name; asked once (first review) and kept in the settings."""
        w = self.w
        if not w.settings.reviewer:
            name = ReviewerDialog.ask(w, "")
            if not name:
                w.statusBar().showMessage("A review needs the reviewer's name; nothing was recorded.", 8000)
                return None
            w.settings.reviewer = name
            w.save_settings()
        return w.settings.reviewer

    def change_reviewer(self) -> None:
        name = ReviewerDialog.ask(self.w, self.w.settings.reviewer)
        if name:
            self.w.settings.reviewer = name
            self.w.save_settings()

    def _target(self):
        """(selected cell, reviewer's name) when a review can be recorded now; None (the user is told why)."""
        w = self.w
        cell = w.case.cell(w.current_cell)
        if cell is None:
            w.statusBar().showMessage("Select a cell first (click it, or press → / J).", 5000)
            return None
        if w.session is None:
            w.show_message("This folder's review cannot be saved, so labels are not recorded.", "error")
            return None
        reviewer = self.reviewer()
        return (cell, reviewer) if reviewer else None

    def _save(self, change, on_saved=None, on_failed=None) -> None:
        """Queue one review change of the open session: it runs (and saves itself: an audit line and review.json,
        each synced) in the save worker. When it is saved the views show it (and any label another window saved
        meanwhile); ``on_saved(value)`` follows. If it could not be saved the reviewer is told and
        ``on_failed()`` follows; nothing changes on screen or on disk."""
        w = self.w
        session = w.session

        def run():   # in the save worker
            known = dict(session.reviews)
            return known, change(session)

        def saved(outcome) -> None:
            known, value = outcome
            if w.is_closed() or session is not w.session:
                return
            if isinstance(value, str):
                self.show_changes(known, value)
            if on_saved is not None:
                on_saved(value)

        def failed(error: Exception) -> None:
            if w.is_closed() or session is not w.session:
                return
            if not isinstance(error, (ReviewError, OSError)):
                log.error("review change failed", exc_info=error)
            w.show_message(f"The review could not be saved: {error}", "error")
            if on_failed is not None:
                on_failed()

        self.saves.submit(run, on_returned=saved, on_errored=failed)

    def show_changes(self, known: dict, cell_id: str) -> None:
        """Show a saved change, and any label another window saved meanwhile (merged in by the save)."""
        now = self.w.session.reviews if self.w.session else {}
        changed = {k for k in set(known) | set(now) if known.get(k) != now.get(k)} | {cell_id}
        for other in sorted(changed - {cell_id}):
            self._show_change(other, refresh=False)
        self._show_change(cell_id)

    def _show_change(self, cell_id: str, refresh: bool = True) -> None:
        w = self.w
        cell = w.case.cell(cell_id)
        if cell is None:
            return
        reviewed = w.case.reviewed_label(cell_id)
        w.view.set_cell_state(cell_id, reviewed or cell.label, bool(reviewed), final_type(cell, w.session))
        w.gallery.update_cells([w.gallery_cell(cell)])
        w.update_row(cell.image)
        if refresh:
            w.refresh_views()
        if cell_id == w.current_cell:
            w.update_cell_panel()

    def label_current(self, label: str, advance: bool = True) -> None:
        """Record ``label`` for the selected cell (saved at once) and move to the next cell."""
        w = self.w
        if w.help_overlay.isVisible():
            w.help_overlay.hide()
            return
        target = self._target()
        if target is None:
            return
        cell, reviewer = target
        order = w.navigation_order()
        following = None
        if advance and w.settings.auto_advance and cell.cell_id in order and len(order) > 1:
            following = order[(order.index(cell.cell_id) + 1) % len(order)]

        def set_label(session):
            session.set_label(cell.cell_id, label, cell.label, reviewer)
            return cell.cell_id

        def back_to_the_cell():   # the label was not saved: the reviewer stays on (returns to) the cell
            if following and w.current_cell == following:
                w.select_cell(cell.cell_id)

        self._save(set_label, on_failed=back_to_the_cell, on_saved=lambda _: w.statusBar().showMessage(
            f"{cell.cell_id}: {label}" + (" (confirmed)" if label == cell.label else f" (model: {cell.label})"),
            4000))
        if following:
            w.select_cell(following)

    def type_current(self, cell_type: str) -> None:
        """Record the reviewer's white-cell type for the selected cell (saved at once; the label follows: a blast
        is ALL, any other type HEM). The selection stays on the cell."""
        target = self._target()
        if target is None:
            return
        cell, reviewer = target

        def set_type(session):
            session.set_type(cell.cell_id, cell_type, cell.label, reviewer)
            return cell.cell_id

        words = CELL_TYPES.get(cell_type, cell_type)
        if cell_type != cell.cell_type:
            words += f" (model: {CELL_TYPES.get(cell.cell_type, cell.cell_type)})"
        self._save(set_type, on_saved=lambda _: self.w.statusBar().showMessage(f"{cell.cell_id}: {words}", 4000))

    def confirm_current(self) -> None:
        cell = self.w.case.cell(self.w.current_cell)
        if cell is None:
            self.w.statusBar().showMessage("Select a cell first (click it, or press → / J).", 5000)
            return
        self.label_current(cell.label)

    def cell_type_chosen(self, cell_id: str, cell_type: str) -> None:
        if self.w.case.cell(cell_id) is not None:
            self.w.select_cell(cell_id)
            self.type_current(cell_type)

    def cell_dropped(self, cell_id: str, label: str) -> None:
        if self.w.case.cell(cell_id) is not None:
            self.w.select_cell(cell_id)
            self.label_current(label, advance=False)

    def undo(self) -> None:
        self._undo_redo(redo=False)

    def redo(self) -> None:
        self._undo_redo(redo=True)

    def _undo_redo(self, redo: bool) -> None:
        w = self.w
        nothing = f"Nothing to {'redo' if redo else 'undo'}."
        # a change still being saved can be undone: the undo is queued after it
        if w.session is None or not (self.saves.pending() or (
                w.session.can_redo() if redo else w.session.can_undo())):
            w.statusBar().showMessage(nothing, 3000)
            return
        reviewer = self.reviewer()
        if not reviewer:
            return

        def undone(cell_id) -> None:
            if cell_id:
                w.select_cell(cell_id)
                w.statusBar().showMessage(f"{'Redone' if redo else 'Undone'}: {cell_id}", 4000)
            else:
                w.statusBar().showMessage(nothing, 3000)

        self._save(lambda session: session.redo(reviewer) if redo else session.undo(reviewer), on_saved=undone)
