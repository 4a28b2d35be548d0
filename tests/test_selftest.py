"""``leukviewer --self-test`` and ``--smoke-test`` from a checkout: the same code the frozen bundle runs
(tests/test_installer.py runs it there)."""
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from leukviewer import RUO_NOTICE
from leukviewer.cli import selftest
from training.modelfolder import read_meta


def run_leukviewer(*args, model=None, timeout=300):
    env = dict(os.environ)
    env.pop("LEUKVIEWER_MODEL", None)
    if model is not None:
        env["LEUKVIEWER_MODEL"] = str(model)
    return subprocess.run([sys.executable, "-m", "leukviewer", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_self_test_classifies_the_bundled_sample_and_verifies_the_weights(tiny_model_dir):
    done = run_leukviewer("--self-test", model=tiny_model_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    meta = read_meta(tiny_model_dir)
    out = done.stdout
    assert f"SHA-256 {meta['weights']['sha256']} verified" in out
    assert "tiny-test-model 0.0.1" in out
    assert "UID_16_12_3_all.png" in out and "reference label ALL" in out
    result = next(line for line in out.splitlines() if line.strip().startswith("result"))
    assert any(label in result for label in ("ALL", "HEM", "UNCERTAIN")) and "P(" in result
    assert "platform 'offscreen'" in out           # no display needed
    assert "networking    none used" in out
    assert "self-test passed" in out
    assert out.rstrip().endswith(RUO_NOTICE)


def test_self_test_fails_clearly_without_the_model(tmp_path):
    done = run_leukviewer("--self-test", model=tmp_path / "no-such-model")
    assert done.returncode == 1
    assert "self-test FAILED: model folder not found" in done.stderr


def test_self_test_names_the_missing_bundled_model(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("LEUKVIEWER_MODEL", raising=False)
    monkeypatch.setattr("leukviewer.core.model.classifier.assets_dir", lambda: tmp_path / "assets")
    assert selftest.run_self_test() == 1
    err = capsys.readouterr().err
    assert "the bundled model is missing" in err and "leukviewer-b3" in err and "--model DIR" in err


def test_self_test_refuses_a_modified_weight_file(tiny_model_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    weights = model / read_meta(model)["weights"]["file"]
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    done = run_leukviewer("--self-test", "--model", str(model))
    assert done.returncode == 1
    assert "does not match its recorded SHA-256" in done.stderr


def test_network_is_refused_while_testing_and_only_then():
    with selftest._NoNetwork():
        with pytest.raises(OSError, match="network access refused"):
            socket.create_connection(("192.0.2.1", 80), timeout=1)   # TEST-NET-1: never routed
        with pytest.raises(OSError, match="network access refused"):
            socket.getaddrinfo("example.org", 443)
    assert selftest._network_attempts
    server = socket.socket()            # afterwards sockets work again (a local connection, no network)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    with socket.create_connection(server.getsockname(), timeout=5):
        pass
    server.close()


def test_smoke_test_opens_the_window_on_the_sample(tiny_model_dir, tmp_path):
    picture = tmp_path / "window.png"
    done = run_leukviewer("--smoke-test", "--screenshot", str(picture), model=tiny_model_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sample analysed" in done.stdout and "image shown: UID_16_12_3_all.png" in done.stdout
    assert "licence entries" in done.stdout
    assert picture.stat().st_size > 10_000
    # The picture is taken after the histogram has drawn the case: the blue tick that marks the shown image's
    # cell (drawn only by the histogram's worker, after the analysis) is in it.
    from PIL import Image

    pixels = np.asarray(Image.open(picture).convert("RGB")).astype(int).reshape(-1, 3)
    tick = np.abs(pixels - [0x00, 0xB4, 0xFF]).max(axis=1) <= 40
    assert tick.sum() >= 5
