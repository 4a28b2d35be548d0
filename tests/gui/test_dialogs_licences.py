"""Help → About → Licences: every bundled third-party component with its licence text."""
import json
import sys

from PySide6.QtWidgets import QLabel

from leukviewer import RUO_NOTICE
from leukviewer.core.model.classifier import assets_dir
from leukviewer.gui.dialogs import AboutDialog, bundled_licences

LICENCES = assets_dir() / "licenses"


def test_about_dialog_lists_the_licences_and_shows_their_texts(qtbot):
    about = AboutDialog(None, None)
    qtbot.addWidget(about)
    about.show()
    assert [about.tabs.tabText(i) for i in range(about.tabs.count())] == ["Model card", "Licences"]
    rows = {about.licence_table.topLevelItem(i).text(0): about.licence_table.topLevelItem(i).text(2)
            for i in range(about.licence_table.topLevelItemCount())}
    assert rows["Qt"] == "LGPL-3.0-only"
    assert [licence for name, licence in rows.items() if name.startswith("TensorFlow")] == ["Apache-2.0"]
    assert rows["Keras"] == "Apache-2.0"
    assert rows["C-NMC 2019 data (model training, self-test sample)"] == "CC-BY-3.0"
    for name in ("NumPy", "OpenCV", "Pillow", "Matplotlib", "ReportLab", "Python"):
        assert name in rows, name

    about.tabs.setCurrentWidget(about.licences)
    about.licences.select("Qt")
    text = about.licences.text.toPlainText()
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in text and "Version 3" in text
    assert "download.qt.io" in text           # where the LGPL'd source is
    about.licences.select("TensorFlow")
    assert "Apache License" in about.licences.text.toPlainText()
    about.licences.select("C-NMC")
    text = about.licences.text.toPlainText()
    assert "https://doi.org/10.7937/tcia.2019.dc64i46r" in text and "CC BY 3.0" in text
    assert about.findChild(QLabel, "ruo").text() == RUO_NOTICE
    about.close()


def test_licence_index_files_exist_and_cover_every_runtime_dependency():
    entries = bundled_licences(LICENCES)
    assert len(entries) > 20
    for entry in entries:
        assert entry["licence"] and entry["files"], entry["name"]
        for name in entry["files"]:
            assert (LICENCES / name).is_file(), name
    # A new dependency needs its licence collected (packaging/collect_licenses.py) before it can ship.
    sys.path.insert(0, str(LICENCES.parents[1] / "packaging"))
    try:
        import collect_licenses
    finally:
        sys.path.pop(0)
    from packaging.utils import canonicalize_name

    runtime = {canonicalize_name(d.metadata["Name"]) for d in collect_licenses.runtime_distributions()}
    covered = {dist for entry in json.loads((LICENCES / "index.json").read_text())["components"]
               for dist in entry["distributions"]}
    assert runtime - collect_licenses.left_out_distributions() - covered == set()
