"""The window's actions, menus and toolbar: each action connected to the window's slot, its shortcut live
whether or not the action is in a visible menu."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence

from training.celltypes import CELL_TYPES

from ...core.model.classifier import LABEL_BLAST, LABEL_NORMAL, LABEL_UNCERTAIN


def make_action(window, text: str, slot, shortcuts=(), checkable: bool = False, tip: str = "") -> QAction:
    """An action of the window, its shortcuts live whether or not it is in a visible menu."""
    action = QAction(text, window)
    keys = []
    for shortcut in shortcuts:  # a platform's standard key may repeat another: Qt calls that ambiguous
        for sequence in (QKeySequence.keyBindings(shortcut) if isinstance(shortcut, QKeySequence.StandardKey)
                         else [QKeySequence(shortcut)]):
            if sequence not in keys:
                keys.append(sequence)
    if keys:
        action.setShortcuts(keys)
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    action.setCheckable(checkable)
    if tip:
        action.setToolTip(tip)
        action.setStatusTip(tip)
    action.triggered.connect(slot)
    window.addAction(action)
    return action


def build_actions(window) -> None:
    """The window's actions (``window.open_action`` ...), connected to its slots, in its menus and toolbar."""
    def a(*args, **kwargs):
        return make_action(window, *args, **kwargs)

    window.open_action = a("&Open folder…", window.choose_folder, [QKeySequence.StandardKey.Open],
                           tip="Open a folder of smear images (or drop one on the window)")
    window.cancel_action = a("&Cancel analysis", window.cancel_analysis, ["Esc"], tip="Stop the running analysis")
    window.cancel_action.setEnabled(False)
    window.model_action = a("Choose &model folder…", window.choose_model_folder)
    window.bundled_model_action = a("Use the &bundled model", lambda: window.set_model_folder(None))
    window.subfolders_action = a("Include &sub-folders", window.on_subfolders_toggled, checkable=True,
                                 tip="Open folders with the images of their sub-folders too (remembered)")
    window.subfolders_action.setChecked(window.settings.include_subfolders)
    window.export_action = a("&Export report…", window.export_report, ["Ctrl+E"],
                             tip="Write the case's PDF report, CSV tables and QuPath outlines")
    window.quit_action = a("&Quit", window.close, [QKeySequence.StandardKey.Quit])

    window.overlay_action = a("Show &outlines", window.on_overlays_toggled, ["O"], checkable=True,
                              tip="Show or hide the cell outlines (O)")
    window.overlay_action.setChecked(window.settings.overlays.outlines)
    window.gradcam_action = a("&Grad-CAM", window.on_gradcam_toggled, ["G"], checkable=True,
                              tip="Grad-CAM heat map of the selected cell: where the model looked (G)")
    window.gradcam_action.setChecked(window.settings.overlays.gradcam)
    window.zoom_in_action = a("Zoom &in", window.view.zoom_in, ["+", "=", QKeySequence.StandardKey.ZoomIn])
    window.zoom_out_action = a("Zoom &out", window.view.zoom_out, ["-", QKeySequence.StandardKey.ZoomOut])
    window.fit_action = a("&Fit", window.view.fit, ["F"], tip="Fit the image to the window (F)")

    window.next_action = a("&Next cell", window.next_cell, ["Right", "Down", "J"])
    window.previous_action = a("&Previous cell", window.previous_cell, ["Left", "Up", "K"])
    window.blast_action = a("Label &ALL (blast)", lambda: window.label_current(LABEL_BLAST), ["A"])
    window.normal_action = a("Label &HEM (normal)", lambda: window.label_current(LABEL_NORMAL), ["N"])
    window.uncertain_action = a("Label &UNCERTAIN", lambda: window.label_current(LABEL_UNCERTAIN), ["U"])
    window.confirm_action = a("&Confirm suggestion", window.confirm_current, ["Space"])
    window.undo_action = a("&Undo", window.undo, [QKeySequence.StandardKey.Undo, "Ctrl+Z"])
    window.redo_action = a("&Redo", window.redo, ["Ctrl+Shift+Z", QKeySequence.StandardKey.Redo])
    window.reviewer_action = a("Reviewer &name…", window.change_reviewer)
    window.auto_advance_action = a("&Advance after a label", window.on_auto_advance_toggled, checkable=True,
                                   tip="After A, N, U or Space select the next cell (remembered)")
    window.auto_advance_action.setChecked(window.settings.auto_advance)
    window.help_overlay.set_auto_advance(window.settings.auto_advance)
    window.help_action = a("&Keyboard shortcuts", window.help_overlay.toggle, ["?", "Shift+?", "F1"])
    window.about_action = a("&About leukviewer", window.show_about)

    menu = window.menuBar()
    file_menu = menu.addMenu("&File")
    file_menu.addAction(window.open_action)
    window.recent_menu = file_menu.addMenu("Open &recent")
    window.recent_menu.aboutToShow.connect(window.fill_recent_menu)
    window.fill_recent_menu()
    file_menu.addAction(window.subfolders_action)
    file_menu.addAction(window.export_action)
    file_menu.addSeparator()
    file_menu.addAction(window.model_action)
    file_menu.addAction(window.bundled_model_action)
    file_menu.addSeparator()
    file_menu.addAction(window.cancel_action)
    file_menu.addSeparator()
    file_menu.addAction(window.quit_action)
    view_menu = menu.addMenu("&View")
    for action in (window.overlay_action, window.gradcam_action, None, window.zoom_in_action,
                   window.zoom_out_action, window.fit_action):
        view_menu.addSeparator() if action is None else view_menu.addAction(action)
    review_menu = menu.addMenu("&Review")
    for action in (window.next_action, window.previous_action, None, window.blast_action, window.normal_action,
                   window.uncertain_action, window.confirm_action, window.auto_advance_action, None,
                   window.undo_action, window.redo_action, None, window.reviewer_action):
        review_menu.addSeparator() if action is None else review_menu.addAction(action)
    # the selected cell's white-cell type (also: right-click a cell in the gallery)
    window.type_menu = review_menu.addMenu("Cell &type of the selected cell")
    window.type_actions = {}
    for cell_type, words in CELL_TYPES.items():
        action = window.type_menu.addAction(words)
        action.triggered.connect(lambda _=False, t=cell_type: window.type_current(t))
        window.type_actions[cell_type] = action
    from ..retrain.wizard import install_menus

    install_menus(window)
    help_menu = menu.addMenu("&Help")
    help_menu.addAction(window.help_action)
    help_menu.addAction(window.about_action)

    toolbar = window.addToolBar("Main")
    toolbar.setObjectName("main-toolbar")
    toolbar.setMovable(False)
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    for action in (window.open_action, window.cancel_action, None, window.fit_action, window.zoom_in_action,
                   window.zoom_out_action, window.overlay_action, window.gradcam_action, None, window.undo_action,
                   window.redo_action, None, window.help_action, window.about_action):
        toolbar.addSeparator() if action is None else toolbar.addAction(action)
