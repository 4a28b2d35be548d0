"""The window converts a model without a LiteRT conversion in the background (a child process, the one worker
pattern) and its analyses run on LiteRT from then on."""


def test_the_window_converts_in_the_background_and_switches_to_litert(make_window, qtbot, monkeypatch, tmp_path):
    from leukviewer.core.model.engine import find_conversion

    monkeypatch.setenv("LEUKVIEWER_BACKGROUND_CONVERSION", "1")
    monkeypatch.setenv("LEUKVIEWER_CACHE_DIR", str(tmp_path / "fresh-cache"))
    from leukviewer.gui import jobs

    window = make_window(wait_model=False)
    with qtbot.waitSignal(window.engineConverted, timeout=180_000):
        pass
    model = window.loaded_model
    assert model.classifier.engine.backend == "tflite" and "LiteRT" in window.device_label.text()
    assert find_conversion(model.folder) is not None
    jobs._models.clear()   # the next tests load the model afresh (on TensorFlow, as they expect)
