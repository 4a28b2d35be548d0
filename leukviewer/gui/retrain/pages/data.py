"""Page 1 of the retraining wizard: which labelled cells the model learns from (a folder and/or reviewed cases),
checked in a worker (``core.retrain.data.prepare_data``)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QFrame, QGridLayout, QGroupBox, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QListWidget, QListWidgetItem, QProgressBar, QPushButton,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout)

from ....core.retrain.data import PreparedData, prepare_data, reviewed_cases
from ...signals import emit
from ...worker import LatestJob
from ..common import RetrainPage, PAGE_SETTINGS, PAGE_TRAIN, message_label, ruo_label, sentence, show_message

if TYPE_CHECKING:
    from ..wizard import RetrainWizard


def prepare_in_worker(folder: str | None, cases: list[str], session_root: Path, worker=None) -> PreparedData:
    """``prepare_data`` reporting (message, fraction) to the worker and stopping when it is cancelled."""
    return prepare_data(folder, cases, session_root, on_progress=lambda m, f: worker.report_progress((m, f)),
                        should_stop=worker.is_cancelled)


class DataPage(RetrainPage):
    def __init__(self, wizard: "RetrainWizard"):
        super().__init__(wizard, "1 · Data",
                         "Which labelled cells should the model learn from? A folder (C-NMC layout or one folder "
                         "per class) and/or the cells reviewed in this app.")
        self.prepared: PreparedData | None = None
        # A newer check replaces an older one still running; only the latest one's signals arrive.
        self.scan = LatestJob("retrain-data", track=lambda worker: self.w.track(worker))
        self._timer = QTimer(self, singleShot=True, interval=250, timeout=self.check_now)

        layout = QVBoxLayout(self)
        self.resume_box = QFrame()
        self.resume_box.setStyleSheet("QFrame{background:#eef6ff; border:1px solid #9cc3eb; border-radius:4px}"
                                      "QLabel{border:none}")
        row = QHBoxLayout(self.resume_box)
        self.resume_label = QLabel()
        self.resume_label.setWordWrap(True)
        self.resume_button = QPushButton("Resume")
        self.discard_button = QPushButton("Discard it")
        row.addWidget(self.resume_label, 1)
        row.addWidget(self.resume_button)
        row.addWidget(self.discard_button)
        self.resume_button.clicked.connect(self.w.resume_pending)
        self.discard_button.clicked.connect(self.w.discard_pending)
        self.resume_box.hide()
        layout.addWidget(self.resume_box)

        self.folder_box = QGroupBox("A folder of labelled cells")
        self.folder_box.setCheckable(True)
        self.folder_box.setChecked(False)
        grid = QGridLayout(self.folder_box)
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("e.g. …/cnmc  (all/ and hem/ with UID_<patient>_… names, or one folder "
                                            "per class)")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        grid.addWidget(self.folder_edit, 0, 0)
        grid.addWidget(browse, 0, 1)
        layout.addWidget(self.folder_box)

        self.cases_box = QGroupBox("Cells reviewed in this app")
        self.cases_box.setCheckable(True)
        cases_layout = QVBoxLayout(self.cases_box)
        self.case_list = QListWidget()
        self.case_list.setMaximumHeight(110)
        cases_layout.addWidget(self.case_list)
        self.cases_hint = QLabel()
        self.cases_hint.setWordWrap(True)
        self.cases_hint.setStyleSheet("color:#555")
        cases_layout.addWidget(self.cases_hint)
        add_case = QPushButton("Add a case folder…")
        add_case.clicked.connect(self._add_case)
        cases_layout.addWidget(add_case, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.cases_box)

        self.status = QLabel()
        self.progress = QProgressBar()
        self.progress.hide()
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        self.counts = QTreeWidget()
        self.counts.setHeaderLabels(["Subject (patient / case)", "ALL", "HEM", "images"])
        self.counts.setRootIsDecorated(False)
        self.counts.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.counts, 1)
        self.errors = message_label("#b00020")
        self.warnings = message_label("#8a5a00")
        layout.addWidget(self.errors)
        layout.addWidget(self.warnings)
        self.skip_unreadable = QCheckBox("Leave the unreadable images out and train on the rest")
        self.skip_unreadable.hide()
        self.skip_unreadable.toggled.connect(lambda: emit(self.completeChanged))
        layout.addWidget(self.skip_unreadable)
        layout.addWidget(ruo_label())

        self.folder_box.toggled.connect(self.schedule_check)
        self.folder_edit.textChanged.connect(self.schedule_check)
        self.cases_box.toggled.connect(self.schedule_check)
        self.case_list.itemChanged.connect(self.schedule_check)

    # ---------------------------------------------------------------- inputs

    def set_cases(self, folders: list[str]) -> None:
        self.case_list.blockSignals(True)
        self.case_list.clear()
        for review in reviewed_cases(folders):
            self._add_case_item(review)
        self.case_list.blockSignals(False)
        self._update_case_hint()

    def _add_case_item(self, review) -> None:
        c = review.counts()
        item = QListWidgetItem(f"{review.folder.name}   —   {sum(c.values())} reviewed cells "
                               f"(ALL {c['ALL']}, HEM {c['HEM']}, UNCERTAIN {c['UNCERTAIN']})")
        item.setData(Qt.ItemDataRole.UserRole, str(review.folder))
        item.setToolTip(str(review.folder))
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setCheckState(Qt.CheckState.Checked)
        self.case_list.addItem(item)

    def _update_case_hint(self) -> None:
        self.case_list.setVisible(self.case_list.count() > 0)
        if self.case_list.count():
            self.cases_hint.setText("Each case is one subject: its cells stay together on one side of the split. "
                                    "Cells reviewed as UNCERTAIN are left out.")
        else:
            self.cases_hint.setText("No case folder with a saved review yet: review cells in the main window, or "
                                    "add a case folder.")
        if not self.case_list.count() and self.cases_box.isChecked():
            self.cases_box.setChecked(False)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of labelled cells", self.folder_edit.text())
        if folder:
            self.folder_box.setChecked(True)
            self.folder_edit.setText(folder)

    def _add_case(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A case folder with a saved review")
        if folder:
            self.add_case_folder(folder)

    def add_case_folder(self, folder: str | Path) -> bool:
        found = reviewed_cases([folder])
        if not found:
            show_message(self.errors, f"{folder} has no saved review with reviewed cells.")
            return False
        known = {self.case_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.case_list.count())}
        if str(found[0].folder) not in known:
            self._add_case_item(found[0])
        self.cases_box.setChecked(True)
        self._update_case_hint()
        self.schedule_check()
        return True

    def selected_folder(self) -> str | None:
        text = self.folder_edit.text().strip()
        return text if self.folder_box.isChecked() and text else None

    def selected_cases(self) -> list[str]:
        if not self.cases_box.isChecked():
            return []
        return [self.case_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.case_list.count())
                if self.case_list.item(i).checkState() == Qt.CheckState.Checked]

    # ---------------------------------------------------------------- checking

    def initializePage(self) -> None:
        self.w.refresh_pending_banner()
        if self.prepared is None and not self.is_checking():
            self.schedule_check()

    def is_checking(self) -> bool:
        return self.scan.is_running()

    def schedule_check(self, *args) -> None:
        self.prepared = None
        self.scan.cancel()
        self.scan.forget()   # the data changed: what a running check finds no longer counts
        emit(self.completeChanged)
        self._timer.start()

    def check_now(self) -> None:
        """Check the chosen data in a worker; a newer check replaces an older one still running."""
        self._timer.stop()
        self.w.resuming = False
        if self.w.session is not None and self.w.session.info.get("config"):
            self.w.session = None   # that session trained on the earlier data; it stays resumable from the banner
        self.scan.cancel()
        self.scan.forget()
        self.prepared = None
        self.counts.clear()
        show_message(self.errors, "")
        show_message(self.warnings, "")
        self.skip_unreadable.hide()
        self.skip_unreadable.setChecked(False)
        folder, cases = self.selected_folder(), self.selected_cases()
        if not folder and not cases:
            self.status.setText("Choose a folder of labelled cells and/or reviewed cases.")
            self.progress.hide()
            emit(self.completeChanged)
            return
        self.status.setText("Checking the data…")
        self.progress.setRange(0, 0)
        self.progress.show()
        session = self.w.ensure_session()
        self.scan.start(prepare_in_worker, folder, cases, session.root, on_progress=self._on_progress,
                        on_returned=self._on_prepared, on_errored=self._on_error, on_finished=self._on_finished)

    def _on_progress(self, progress) -> None:
        message, fraction = progress
        self.status.setText(sentence(message))
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(fraction * 1000))

    def _on_error(self, error: Exception) -> None:
        self.status.setText("The data could not be read.")
        show_message(self.errors, f"{type(error).__name__}: {error}")

    def _on_finished(self) -> None:
        self.scan.forget()
        self.progress.hide()
        emit(self.w.dataChecked, self.prepared)

    def _on_prepared(self, prepared: PreparedData) -> None:
        self.prepared = prepared
        self.progress.hide()
        notes = prepared.export.notes() if prepared.export else []
        if prepared.error:
            self.status.setText("The data cannot be used for training.")
            show_message(self.errors, prepared.error)
            show_message(self.warnings, "\n".join(notes))
            emit(self.completeChanged)
            return
        check = prepared.check
        summary = check.summary
        if summary:
            per_class = summary["per_class"]
            subjects = summary.get("subjects")
            self.status.setText(
                f"{summary['images']} images in {len(per_class)} classes (" +
                ", ".join(f"{c} {n}" for c, n in per_class.items()) + ")" +
                (f" from {subjects} subjects" if subjects else "") +
                (f"; {len(prepared.export.cases)} reviewed case(s)" if prepared.export else ""))
            self._fill_counts(summary)
        else:
            self.status.setText("The data cannot be used for training.")
        show_message(self.errors, "\n".join(check.errors))
        show_message(self.warnings, "\n".join("⚠ " + w for w in check.warnings + notes))
        self.skip_unreadable.setVisible(check.usable_without_unreadable)
        emit(self.completeChanged)

    def _fill_counts(self, summary: dict) -> None:
        self.counts.clear()
        classes = summary["classes"]
        self.counts.setHeaderLabels(["Subject (patient / case)", *classes, "images"])
        names = self._subject_names()
        for subject, counts in summary.get("per_subject", {}).items():
            label = f"{subject}  ({names[subject]})" if subject in names else subject
            item = QTreeWidgetItem([label, *[str(counts.get(c, 0)) for c in classes], str(sum(counts.values()))])
            self.counts.addTopLevelItem(item)
        total = QTreeWidgetItem(["all subjects", *[str(summary["per_class"].get(c, 0)) for c in classes],
                                 str(summary["images"])])
        font = total.font(0)
        font.setBold(True)
        for col in range(len(classes) + 2):
            total.setFont(col, font)
        self.counts.insertTopLevelItem(0, total)

    def _subject_names(self) -> dict[str, str]:
        export = self.prepared.export if self.prepared else None
        return {c.subject: Path(c.folder).name for c in export.cases} if export else {}

    def isComplete(self) -> bool:
        if self.w.resuming:
            return True
        p = self.prepared
        if p is None or p.error or p.check is None or p.check.cancelled:
            return False
        if p.check.ok:
            return True
        return p.check.usable_without_unreadable and self.skip_unreadable.isChecked()

    def nextId(self) -> int:
        return PAGE_TRAIN if self.w.resuming else PAGE_SETTINGS

