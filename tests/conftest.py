"""Shared fixtures. Data comes only from LEUKVIEWER_DATA (default: ../shared/data beside the repository)."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


def _folder_digest(folder: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(p.relative_to(folder).as_posix().encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def folder_digest():
    """SHA-256 over a folder's file names and contents (to prove a folder was not modified)."""
    return _folder_digest


def data_root() -> Path:
    return Path(os.environ.get("LEUKVIEWER_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = data_root()
    if not (root / "cnmc").is_dir():
        pytest.fail(f"test data not found at {root}: set LEUKVIEWER_DATA or place shared/ beside the repository")
    return root


@pytest.fixture(scope="session")
def cnmc_root(shared_data) -> Path:
    return shared_data / "cnmc"


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Tests never touch the user's real settings, caches or runs."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("LEUKVIEWER_RUNS", str(home / "runs"))
    monkeypatch.setenv("LEUKVIEWER_CONFIG_DIR", str(home / "config"))
    monkeypatch.setenv("LEUKVIEWER_DATA_DIR", str(home / "userdata"))
    monkeypatch.setenv("KERAS_HOME", str(home / "keras"))
    monkeypatch.setenv("LEUKVIEWER_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("LEUKVIEWER_BACKGROUND_CONVERSION", "0")   # windows convert only where a test asks


@pytest.fixture(scope="session")
def tiny_model_dir(cnmc_root, tmp_path_factory) -> Path:
    """A real model folder from the training library: a tiny network, 32 px, one epoch on the C-NMC fixtures.

    Its predictions are meaningless; it exercises the whole model-folder path in seconds.
    """
    from training import TrainConfig, train

    tmp = tmp_path_factory.mktemp("tiny-model")
    result = train(TrainConfig(data=str(cnmc_root), run_dir=str(tmp / "run"), output=str(tmp / "tiny-model"),
                               name="tiny-test-model", version="0.0.1", backbone="tiny", input_size=32, epochs=1,
                               batch_size=16, patience=0, workers=2))
    return result.model_folder


# the multi-class fixture's data: model class (a cell type) -> shared-data folders whose images stand for it
MULTICLASS_SOURCES = {
    "blast": ["cnmc/training_data/fold_1/all"],
    "lymphoid": ["cnmc/training_data/fold_1/hem", "pbc/lymphocyte"],
    "neutrophil": ["pbc/neutrophil"], "monocyte": ["pbc/monocyte"], "eosinophil": ["pbc/eosinophil"],
    "basophil": ["pbc/basophil"], "ig": ["pbc/ig"], "erythroblast": ["pbc/erythroblast"],
    "non_wbc": ["pbc/platelet"],
}


@pytest.fixture(scope="session")
def multiclass_model_dir(shared_data, tmp_path_factory) -> Path:
    """A real multi-class (white-cell type) model folder: tiny network, 32 px, one epoch, one folder per cell type
    (C-NMC ALL as blast, C-NMC HEM + PBC lymphocytes as lymphoid, PBC platelets as non_wbc, PBC's other types).

    Its predictions are meaningless; it exercises the multi-class model-folder path in seconds.
    """
    from training import TrainConfig, train

    tmp = tmp_path_factory.mktemp("multiclass-model")
    data = tmp / "data"
    for cell_type, sources in MULTICLASS_SOURCES.items():
        (data / cell_type).mkdir(parents=True)
        for source in sources:
            for image in sorted((shared_data / source).iterdir()):
                if image.suffix.lower() in (".png", ".jpg", ".bmp"):
                    (data / cell_type / image.name).symlink_to(image)
    result = train(TrainConfig(data=str(data), run_dir=str(tmp / "run"), output=str(tmp / "multiclass-model"),
                               name="tiny-multiclass-model", version="0.0.1", backbone="tiny", input_size=32,
                               epochs=1, batch_size=16, patience=0, workers=2))
    return result.model_folder


@pytest.fixture
def make_window(qtbot, tiny_model_dir):
    """Factory: a shown review window (the tiny model unless told), its model loaded; at the end of the test every
    window is closed and its workers have stopped."""
    from leukviewer.gui.main_window import MainWindow

    windows = []

    def make(model_dir=tiny_model_dir, wait_model=True):
        window = MainWindow(model_dir=model_dir)
        qtbot.addWidget(window)
        window.show()
        if wait_model and model_dir is not None and window.loaded_model is None:
            with qtbot.waitSignal(window.modelLoaded, timeout=120_000):
                pass
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()
    from leukviewer.gui import worker

    worker.wait_for_workers(60_000)


@pytest.fixture
def make_reviewed_case(tiny_model_dir):
    """Factory: a case folder as the review window leaves it — the images copied in, analysed with the tiny model,
    the results stored — with its first cells reviewed as ``labels`` (by "Dr. Test"). Returns its review session
    (``.folder``: the case folder) and every cell found."""
    import shutil

    from leukviewer.core.model.classifier import CellClassifier
    from leukviewer.core.analysis.pipeline import analyze_folder
    from leukviewer.core.review.session import ReviewSession
    from leukviewer.core.analysis.store import ResultsStore

    def make(folder: Path, images, labels=()):
        folder.mkdir(parents=True)
        for image in images:
            shutil.copy2(image, folder / image.name)
        classifier = CellClassifier(tiny_model_dir)
        info = classifier.info
        session = ReviewSession.open(folder, {"name": info.name, "version": info.version, "sha256": info.sha256})
        store = ResultsStore(session.directory, info.sha256)
        cells = []
        for result in analyze_folder(folder, classifier):
            store.put(result)
            cells += result.cells
        assert len(cells) >= len(labels)
        for cell, label in zip(cells, labels):
            session.set_label(cell.cell_id, label, cell.label, "Dr. Test")
        return session, cells

    return make
