"""``python -m training fit --strategy multiworker``: two workers on this machine (TF_CONFIG on 127.0.0.1) train
the tiny network 2 steps under MultiWorkerMirroredStrategy; the chief writes a model folder the app loads, the
other worker leaves nothing behind; batch size and learning rate are scaled as training/distribute.py says."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.mark.slow
def test_two_multiworker_workers_train_the_tiny_model_into_a_folder_the_app_loads(cnmc_root, tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    cmd = [sys.executable, "-m", "training", "fit", "--data", str(cnmc_root), "--backbone", "tiny",
           "--input-size", "32", "--epochs", "1", "--batch-size", "8", "--lr", "0.001", "--max-steps-per-epoch",
           "2", "--patience", "0", "--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "model"),
           "--name", "tiny-multiworker", "--strategy", "multiworker"]
    procs = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                   TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}),
                   TMPDIR=str(tmp_path / f"tmp{index}"))
        (tmp_path / f"tmp{index}").mkdir()
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=400) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]

    from leukviewer.core.model.classifier import CellClassifier
    from training.modelfolder import verify

    folder = tmp_path / "model"
    verify(folder)   # the same self-describing format: weights and manifest check out
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    assert meta["training"]["distribution"] == {"strategy": "multiworker", "replicas": 2, "workers": 2,
                                                "batch_size_per_replica": 8, "global_batch_size": 16,
                                                "learning_rate_factor": 2}
    assert meta["training"]["config"]["batch_size"] == 8 and meta["training"]["epochs_trained"] == 1
    assert meta["training"]["history"]["lr"] == [pytest.approx(0.002)]   # 2 replicas: twice --lr
    assert CellClassifier(folder).info.name == "tiny-multiworker"   # loads in the app
    assert not any((tmp_path / "tmp1").iterdir())   # the other worker's scratch run is gone


def test_mirrored_training_stops_after_an_epoch_and_resumes_to_the_usual_model_folder(cnmc_root, tmp_path):
    from training import TrainConfig, train

    cfg = TrainConfig(data=str(cnmc_root), run_dir=str(tmp_path / "run"), output=str(tmp_path / "model"),
                      name="tiny-mirrored", backbone="tiny", input_size=32, epochs=2, batch_size=8, patience=0,
                      max_steps_per_epoch=2, workers=2)
    epochs = []

    def progress(e):
        if e.stage == "train" and e.message.startswith("epoch"):
            epochs.append(e.epoch)

    first = train(cfg, progress, should_stop=lambda: len(epochs) >= 1, strategy="mirrored")
    assert first.cancelled and not (tmp_path / "model").exists()
    second = train(cfg, resume=True, strategy="mirrored")   # from the epoch-1 checkpoint
    assert not second.cancelled and len(second.history["loss"]) == 2
    meta = json.loads((second.model_folder / "model.json").read_text(encoding="utf-8"))
    assert meta["training"]["distribution"]["strategy"] == "mirrored"
    assert sorted(p.name for p in second.model_folder.iterdir()) == \
        ["MODEL_CARD.md", "figures", "manifest.sha256", "model.json", "model.keras"]
