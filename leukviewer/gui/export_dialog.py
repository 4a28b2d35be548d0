"""File → Export report…: where and what to write; the export itself runs in the app's worker."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit,
                               QPushButton, QVBoxLayout)

from .. import RUO_NOTICE
from ..core.reports.export import existing_outputs, is_inside, suggested_report_dir


@dataclass
class ExportChoice:
    out_dir: Path
    formats: set[str]
    overwrite: bool


class ExportDialog(QDialog):
    """``image_folder``: the analysed folder (the report is suggested beside it, not inside); ``review``: what
    ``core.reports.review_status`` says of the case (flagged cells nobody reviewed are warned about)."""

    def __init__(self, parent=None, default_dir: Path | None = None, image_folder: Path | None = None,
                 review: dict | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export report")
        self.image_folder = Path(image_folder) if image_folder else None
        layout = QVBoxLayout(self)
        self.review_warning = QLabel(self._review_text(review or {}))
        self.review_warning.setWordWrap(True)
        self.review_warning.setStyleSheet("color: #8a4b00;")
        self.review_warning.setVisible(bool(self.review_warning.text()))
        layout.addWidget(self.review_warning)
        if default_dir is None and self.image_folder is not None:
            default_dir = suggested_report_dir(self.image_folder)
        row = QHBoxLayout()
        self.folder_edit = QLineEdit(str(default_dir or Path.home()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(QLabel("Folder:"))
        row.addWidget(self.folder_edit, 1)
        row.addWidget(browse)
        layout.addLayout(row)
        self.pdf = QCheckBox("PDF report (report.pdf)")
        self.csv = QCheckBox("Tables (cells.csv, images.csv)")
        self.geojson = QCheckBox("Cell outlines for QuPath (cells.geojson)")
        for box in (self.pdf, self.csv, self.geojson):
            box.setChecked(True)
            box.toggled.connect(self._update)
            layout.addWidget(box)
        self.overwrite = QCheckBox("Replace files already in the folder (otherwise new names are used)")
        layout.addWidget(self.overwrite)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.use_suggested = QPushButton("")
        self.use_suggested.clicked.connect(
            lambda: self.folder_edit.setText(str(suggested_report_dir(self.image_folder))))
        layout.addWidget(self.use_suggested)
        ruo = QLabel(RUO_NOTICE)
        ruo.setStyleSheet("color: #8a0000; font-weight: bold;")
        layout.addWidget(ruo)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.folder_edit.textChanged.connect(self._update)
        self.overwrite.toggled.connect(self._update)
        self._update()

    @staticmethod
    def _review_text(review: dict) -> str:
        flagged, unreviewed = review.get("flagged", 0), review.get("flagged_unreviewed", 0)
        if not unreviewed:
            return ""
        if not review.get("reviewed"):
            return (f"⚠ None of the {flagged} flagged cells (ALL or UNCERTAIN) has been reviewed: the PDF will be "
                    "an \"Analysis report (not reviewed)\" of the model's suggestions, without a sign-off. "
                    "Review the flagged cells first for a review report.")
        return (f"⚠ {unreviewed} of the {flagged} flagged cells (ALL or UNCERTAIN) have not been reviewed: the "
                "report will say so, and its counts use the model's suggestion for them.")

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export into", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def formats(self) -> set[str]:
        return {name for name, box in (("pdf", self.pdf), ("csv", self.csv), ("geojson", self.geojson))
                if box.isChecked()}

    def _update(self) -> None:
        ok = bool(self.formats()) and bool(self.folder_edit.text().strip())
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)
        folder = Path(self.folder_edit.text().strip() or ".")
        existing = existing_outputs(folder, self.formats()) if folder.is_dir() else []
        if existing:
            names = ", ".join(p.name for p in existing)
            self.note.setText(f"The folder already holds {names}: "
                              + ("they will be replaced." if self.overwrite.isChecked() else
                                 "the new files get new names."))
        else:
            self.note.setText("")
        inside = self.image_folder is not None and is_inside(folder, self.image_folder)
        if inside:
            self.note.setText(("⚠ This folder is inside the image folder: the report files would sit among the "
                               "images. A folder outside it is better. " + self.note.text()).strip())
            self.use_suggested.setText(f"Use {suggested_report_dir(self.image_folder)}")
        self.use_suggested.setVisible(inside)

    def choice(self) -> ExportChoice:
        return ExportChoice(Path(self.folder_edit.text().strip()), self.formats(), self.overwrite.isChecked())

    @classmethod
    def ask(cls, parent=None, default_dir: Path | None = None, image_folder: Path | None = None,
            review: dict | None = None) -> ExportChoice | None:
        """Show the dialog; the choice, or None when cancelled. Tests replace this method."""
        dialog = cls(parent, default_dir, image_folder, review)
        return dialog.choice() if dialog.exec() == QDialog.DialogCode.Accepted else None
