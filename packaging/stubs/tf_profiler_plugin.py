"""Stand-in for TensorFlow's remote-profiler client extension (``_pywrap_profiler_plugin``, 21 MB), which
``import tensorflow`` loads for ``tf.profiler.experimental.client`` (gRPC traces of a TensorFlow server). leukviewer
never profiles a server; packaging/bundle.py lists why this module is replaced in the bundle."""


def _left_out(*args, **kwargs):
    raise RuntimeError("tf.profiler.experimental.client is not part of the leukviewer bundle "
                       "(packaging/bundle.py, STUBBED_MODULES)")


trace = monitor = xspace_to_tools_data = xspace_to_tools_data_from_byte_string = _left_out
