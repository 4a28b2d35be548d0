"""Page 5 of the retraining wizard: the model card, and Accept (``core.retrain.accept`` in a worker)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtWidgets import QCheckBox, QTextBrowser, QVBoxLayout, QWizard

from ....core.model.registry import RegisteredModel
from ...worker import Worker
from ..common import RetrainPage, message_label, ruo_label, show_message, wrapping_label

if TYPE_CHECKING:
    from ..wizard import RetrainWizard


class AcceptPage(RetrainPage):
    def __init__(self, wizard: "RetrainWizard"):
        super().__init__(wizard, "5 · Accept",
                         "Accepting puts the new model into your models with its model card. The bundled model is "
                         "kept; the model manager (Models menu) can switch back at any time.")
        layout = QVBoxLayout(self)
        self.summary = wrapping_label(layout)
        self.activate = QCheckBox("Make it the active model now (new analyses use it)")
        self.activate.setChecked(True)
        layout.addWidget(self.activate)
        self.card = QTextBrowser()
        layout.addWidget(self.card, 1)
        self.error = message_label("#b00020")
        layout.addWidget(self.error)
        layout.addWidget(ruo_label())
        self.setButtonText(QWizard.WizardButton.FinishButton, "Accept")
        self.setFinalPage(True)
        self.accepted_model: RegisteredModel | None = None
        self._accepting: Worker | None = None

    def initializePage(self) -> None:
        show_message(self.error, "")
        session = self.w.ensure_session()
        try:
            self.w.write_card(session.candidate)
            text = (session.candidate / "MODEL_CARD.md").read_text(encoding="utf-8")
        except Exception as e:  # a card that cannot be written is shown, not hidden
            text = f"The model card could not be written: {e}"
        self.card.setMarkdown(text)
        cfg = self.w.config
        self.summary.setText(f"<b>{cfg.name} {cfg.version}</b> will be added to {self.w.registry.directory}. "
                             "It becomes the active model only if you accept with the box below ticked.")

    def validatePage(self) -> bool:
        """Accept: the model folder is moved into the registry and verified in a worker (the window stays
        responsive); the wizard finishes when that is done."""
        if self.accepted_model is not None:
            return True
        if self._accepting is not None and not self._accepting.is_finished():
            return False
        show_message(self.error, "")
        self.summary.setText(self.summary.text().split("<br>")[0] + "<br><i>Adding the model and checking its "
                             "files…</i>")
        self._accepting = self.w.track(Worker(self.w.accept_candidate_files, self.activate.isChecked(),
                                              name="accept-model"))
        self._accepting.signals.returned.connect(self._accepted)
        self._accepting.signals.errored.connect(self._not_accepted)
        self._accepting.start()
        return False

    def _accepted(self, model: RegisteredModel) -> None:
        self.accepted_model = model
        self.w.after_accept(model, self.activate.isChecked())
        self.w.accept()

    def _not_accepted(self, error: Exception) -> None:
        show_message(self.error, f"The model was not added: {error}")

