"""What the frozen bundle leaves out, in one place: ``build_installer.spec`` applies it, and
``tests/test_installer.py`` runs the app's code paths with these modules blocked to prove none of them is needed.

Every entry says why leaving it out is safe. ``import tensorflow`` itself imports nearly all of TensorFlow's Python
packages (lite, tpu, distribute, profiler, ...), so TensorFlow is trimmed by files, not by modules: its C++ headers,
the three extension modules nothing imports, and the symbol tables of its libraries (``strip``).

What is loaded but never run is replaced by a stand-in of the same name: a Python module whose functions raise
(STUBBED_MODULES), or on Linux a generated shared library with the same SONAME, symbol versions and functions, each
of which prints what was called and aborts (STUBBED_LIBRARIES); Qt's ICU data keeps only what Qt's ICU calls read
(ICU_DATA_LEFT_OUT). The test runs the app with these stand-ins and the trimmed ICU data too.
"""
from __future__ import annotations

import fnmatch
import posixpath

# Python modules the app never imports (left out of the analysis, with everything only they pull in).
EXCLUDED_MODULES = [
    # Other GUI toolkits and interactive shells that optional code paths of matplotlib, tqdm or rich could reach.
    "tkinter", "_tkinter", "PyQt5", "PyQt6", "PySide2", "wx", "gi", "IPython", "ipykernel", "ipywidgets",
    "jupyter_client", "notebook", "tqdm.notebook", "tqdm.contrib.telegram", "tqdm.contrib.discord",
    "tqdm.contrib.slack",
    "matplotlib.backends.backend_tkagg", "matplotlib.backends.backend_tkcairo", "matplotlib.backends._backend_tk",
    "matplotlib.backends.backend_gtk3agg", "matplotlib.backends.backend_gtk4agg", "matplotlib.backends.backend_wxagg",
    "matplotlib.backends.backend_webagg", "matplotlib.backends.backend_nbagg", "matplotlib.backends.backend_macosx",
    # Qt modules the app does not use: it imports QtCore, QtGui and QtWidgets (matplotlib adds QtSvg).
    "PySide6.QtNetwork", "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuickWidgets", "PySide6.QtQuickControls2",
    "PySide6.QtSql", "PySide6.QtTest", "PySide6.QtDesigner", "PySide6.QtHelp", "PySide6.QtUiTools", "PySide6.QtXml",
    "PySide6.QtConcurrent", "PySide6.QtDBus", "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets",
    "PySide6.QtSvgWidgets", "PySide6.QtPrintSupport", "PySide6.QtWebEngineCore", "PySide6.QtWebEngineWidgets",
    "PySide6.QtMultimedia", "PySide6.QtPdf", "PySide6.QtCharts", "PySide6.QtQuickTest",
    # Test, build and packaging tools: installed in .venv for development, never run by the app.
    "pytest", "_pytest", "pytestqt", "hypothesis", "pypdf", "pypdfium2", "pypdfium2_raw", "PyInstaller",
    "pip", "setuptools", "pkg_resources", "wheel",
    # Ray (the optional cluster extra, ~0.2 GB): only `leukviewer batch --cluster` imports it, on a cluster's nodes
    # where leukviewer is pip-installed; the installer's app never runs there.
    "ray",
    # Ray's own dependencies PyYAML and attrs: numpy.__config__.show_config (yaml) and rich.pretty / optree (attrs)
    # import them only when present, and the app calls none of that; bundling them would grow the installer.
    "yaml", "_yaml", "attr", "attrs",
    # GNU readline (GPL-3.0) is only for interactive prompts (pdb, the REPL); the app has none.
    "readline",
    # Pillow's AVIF codec (libavif, ~5 MB): the app reads BMP, PNG, JPEG and TIFF; Pillow skips a missing codec.
    "PIL._avif",
    # SciPy and scikit-learn (~0.1 GB): training/metrics.py computes every metric with numpy; they are only in
    # the development environment, as the test extra's reference for those metrics. Keras imports scikit-learn
    # for its optional wrappers (``try: import sklearn``) and SciPy only for STFT windows; neither runs here.
    "scipy", "sklearn", "joblib", "threadpoolctl",
    # Keras's other backends (the app runs Keras on TensorFlow; JAX, PyTorch and OpenVINO are not installed, and
    # the NumPy backend needs SciPy) and Pygments (rich's syntax highlighting; Keras prints with rich tables only).
    "keras.src.backend.jax", "keras.src.backend.torch", "keras.src.backend.openvino", "keras.src.backend.numpy",
    "pygments",
    # TensorFlow's dependencies that only its development tools import (clang: op wrapper generation;
    # grpc: distributed runtime servers; tensorboard: the dashboard).
    "clang", "grpc", "tensorboard",
    # TensorFlow extension modules nothing imports (TensorFlow 2.21's Python code names them nowhere; inference
    # and a training run work without them): StableHLO Python bindings and the standalone XLA op library.
    "tensorflow.compiler.mlir.stablehlo", "tensorflow.compiler.tf2xla.ops._xla_ops",
]

# Files dropped from the bundle after the analysis (glob patterns on the path inside the bundle, "/" separated).
EXCLUDED_FILES = [
    # TensorFlow's C++ headers and XLA ahead-of-time sources (for building extensions, not for running).
    "tensorflow/include/*", "tensorflow/xla_aot_runtime_src/*",
    # A protobuf helper library loaded by nothing in TensorFlow's Python code.
    "tensorflow/python/framework/lib_native_proto_caster.so",
    # TensorFlow's third-party notices: read by nothing; the bundle carries them in assets/licenses/tensorflow-cpu.
    "tensorflow/THIRD_PARTY_NOTICES.txt",
    # Qt translations of Qt's own dialogs: the app's text is English, which needs none.
    "PySide6/Qt/translations/*",
    # Qt plugins for modules the app does not use: printing, SQL, TLS/network information, QML tooling,
    # PDF images, the Qt Designer plugin, virtual keyboards.
    "PySide6/Qt/plugins/printsupport/*", "PySide6/Qt/plugins/sqldrivers/*", "PySide6/Qt/plugins/tls/*",
    "PySide6/Qt/plugins/networkinformation/*", "PySide6/Qt/plugins/qmltooling/*", "PySide6/Qt/plugins/qmllint/*",
    "PySide6/Qt/plugins/designer/*", "PySide6/Qt/plugins/imageformats/libqpdf.*",
    "PySide6/Qt/plugins/imageformats/qpdf.*", "PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboard*",
    # Linux platform plugins for screens without a desktop (embedded framebuffers, KMS, VNC, Vulkan displays) and
    # their input plugins; desktops use xcb or wayland, the self-test uses offscreen.
    "PySide6/Qt/plugins/platforms/libqeglfs.so", "PySide6/Qt/plugins/platforms/libqlinuxfb.so",
    "PySide6/Qt/plugins/platforms/libqvnc.so", "PySide6/Qt/plugins/platforms/libqvkkhrdisplay.so",
    "PySide6/Qt/plugins/platforms/libqminimalegl.so", "PySide6/Qt/plugins/egldeviceintegrations/*",
    "PySide6/Qt/plugins/generic/*",
    # The GTK3 platform theme: it would bring the build machine's GTK, Pango, Cairo and GLib into the bundle, where
    # they can clash with the workstation's own; Qt falls back to its xdg-desktop-portal or built-in theme.
    "PySide6/Qt/plugins/platformthemes/libqgtk3.so",
    # LiteRT's WebGPU accelerator, NPU compiler plugins and command-line tools: the app runs its interpreter on
    # the CPU (XNNPACK), which needs only the interpreter wrapper, libLiteRt and libpywrap_litert_common.
    "ai_edge_litert/libLiteRtWebGpuAccelerator.so", "ai_edge_litert/vendors/*", "ai_edge_litert/tools/*",
    # matplotlib's example data (only its own tests and galleries read it).
    "matplotlib/mpl-data/sample_data/*",
    # matplotlib's fonts other than its default DejaVu Sans (and its last-resort glyph font): serif, monospace and
    # TeX-math faces and the PostScript/PDF core-font metrics. The app's figures (training figures, report charts)
    # are PNGs in the default sans-serif without mathematical text.
    "matplotlib/mpl-data/fonts/ttf/STIX*", "matplotlib/mpl-data/fonts/ttf/cm*",
    "matplotlib/mpl-data/fonts/ttf/DejaVuSerif*", "matplotlib/mpl-data/fonts/ttf/DejaVuSansMono*",
    "matplotlib/mpl-data/fonts/ttf/DejaVuSansDisplay.ttf", "matplotlib/mpl-data/fonts/afm/*",
    "matplotlib/mpl-data/fonts/pdfcorefonts/*",
    # Type stubs and C headers shipped inside wheels.
    "*.pyi", "numpy/_core/include/*", "numpy/core/include/*", "PySide6/include/*", "shiboken6/include/*",
]

STUBS = posixpath.join(posixpath.dirname(__file__.replace("\\", "/")), "stubs")

# Python extension modules replaced by a pure-Python stand-in (module name: file in packaging/stubs/).
STUBBED_MODULES = {
    # TensorFlow's remote-profiler client (tf.profiler.experimental.client: gRPC traces of a TensorFlow server),
    # 21 MB, imported by ``import tensorflow`` and called by nothing in the app or in Keras.
    "tensorflow.python.profiler.internal._pywrap_profiler_plugin": "tf_profiler_plugin.py",
}

# Shared libraries (glob on the path inside the bundle) that OpenCV or Pillow link to, so importing them needs a
# file of that name, for features the app never calls; replaced on Linux by generated stand-ins
# (make_stub_library). The app calls ~45 cv2 functions (imgproc drawing, morphology, contours, watershed, resize,
# colour maps; imwrite of PNG), none of which reaches them. What only they link to goes too
# (prune_unneeded_libraries): libswresample, libvpx, OpenSSL 1.1, libdrm, libgfortran, libquadmath from
# opencv_python_headless.libs, libXau from pillow.libs. (libavif stays: cv2.imwrite creates every image encoder,
# AVIF's included, before writing a PNG.)
STUBBED_LIBRARIES = {
    # FFmpeg: video files and cameras (cv2.VideoCapture/VideoWriter); the app reads still images with Pillow.
    "opencv_python_headless.libs/libavcodec-*": "OpenCV video I/O (FFmpeg)",
    "opencv_python_headless.libs/libavformat-*": "OpenCV video I/O (FFmpeg)",
    "opencv_python_headless.libs/libavutil-*": "OpenCV video I/O (FFmpeg)",
    "opencv_python_headless.libs/libswscale-*": "OpenCV video I/O (FFmpeg)",
    # LAPACK: OpenCV calls it only for large matrices (solve/invert/SVD/eigen above its size thresholds, e.g.
    # 100x100 for LU), which no imgproc function the app calls builds.
    "opencv_python_headless.libs/libopenblas*": "OpenCV LAPACK for large matrices",
    # AV1 codec behind libavif: used only to encode or decode AVIF pictures (libavif itself stays: cv2.imwrite
    # creates its encoder object, which calls no AV1 function, before writing a PNG).
    "opencv_python_headless.libs/libaom-*": "AVIF encoding and decoding (libaom)",
    # X11 client library of Pillow, for PIL.ImageGrab's screenshots (with libXau, 2 MB); the app grabs no screen.
    "pillow.libs/libxcb-*": "Pillow's X11 screen grabs (ImageGrab)",
}

# Qt's ICU data (libicudata, 32 MB) keeps only what the ICU functions Qt calls can read. Qt 6 calls ICU for
# collation (ucol_*: QCollator, e.g. sorting in file dialogs), character-set converters (ucnv_*), time-zone names
# (ucal_*) and case mapping (u_strToUpper/Lower, whose data is built into libicuuc); none of them opens these
# trees, which serve ICU's formatting, break-iteration and transliteration APIs that nothing in the bundle links
# to (tests/test_installer.py checks the list of ICU functions Qt imports).
ICU_DATA_LIBRARY = "PySide6/Qt/lib/libicudata.so.*"
ICU_DATA_LEFT_OUT = ("brkitr/*", "unit/*", "curr/*", "lang/*", "region/*", "translit/*", "rbnf/*",
                     "unames.icu", "*.spp", "*.cfu")
ICU_FUNCTIONS_QT_CALLS = ("u_strToLower", "u_strToUpper", "ucal_", "ucnv_", "UCNV_", "ucol_")


# On Linux every library is stripped of its symbol tables (``strip --strip-unneeded``; TensorFlow's alone carry
# ~240 MB), except where stripping breaks it: GNU strip misplaces the segments
# of libraries that auditwheel patched (numpy's OpenBLAS then fails with "ELF load command address/offset not
# page-aligned"), so each stripped copy is checked and the original kept when its segments moved.
PAGE = 4096


def load_segments_aligned(path: str) -> bool:
    """True when every PT_LOAD segment of an ELF file can be mapped (offset and address agree modulo the page)."""
    import subprocess

    result = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True)
    segments = [line.split() for line in result.stdout.splitlines() if line.strip().startswith("LOAD")]
    if result.returncode != 0 or not segments:
        return False
    return all((int(seg[2], 16) - int(seg[1], 16)) % PAGE == 0 for seg in segments)


def strip_copy(source: str, target: str, strip: str) -> bool:
    """Write a stripped copy of ``source`` to ``target``; False (and no copy) when it is not safe to use."""
    import os
    import subprocess

    done = subprocess.run([strip, "--strip-unneeded", "-o", target, source], capture_output=True)
    if done.returncode == 0 and load_segments_aligned(target):
        return True
    if os.path.exists(target):
        os.remove(target)
    return False


# Libraries the bundle keeps only while something in it still links to them: after the exclusions and stand-ins
# above, the libraries that only excluded plugins or replaced libraries needed (GTK, Pango, Cairo, Kerberos, ...;
# OpenCV's libvpx, libswresample, OpenSSL 1.1, libdrm, libgfortran and libquadmath; Pillow's libXau) are dropped
# too.
PRUNABLE_LIBRARY_DIRS = ("", "PySide6/Qt/lib", "opencv_python_headless.libs", "pillow.libs")
NEVER_PRUNED = ("libpython*",)


def _matches(path: str, patterns) -> bool:
    path = path.replace("\\", "/")
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def is_excluded_file(bundle_path: str) -> bool:
    """True for a path inside the bundle (as PyInstaller names it) that the bundle leaves out."""
    return _matches(bundle_path, EXCLUDED_FILES)


def stubbed_library_reason(bundle_path: str) -> str | None:
    """Why the library at this path inside the bundle is replaced by a stand-in, or None when it is kept."""
    path = bundle_path.replace("\\", "/")
    return next((why for pattern, why in STUBBED_LIBRARIES.items() if fnmatch.fnmatch(path, pattern)), None)


def stub_module_entries() -> list[tuple[str, str, str]]:
    """PyInstaller TOC entries (name, source, "PYMODULE") of the Python stand-ins."""
    return [(name, posixpath.join(STUBS, file), "PYMODULE") for name, file in STUBBED_MODULES.items()]


def dynamic_symbols(path: str) -> list[tuple[str, str, str, str]]:
    """(name, version, type, section index) of every dynamic symbol of an ELF file; version "" when unversioned."""
    import subprocess

    result = subprocess.run(["readelf", "--dyn-syms", "-W", path], capture_output=True, text=True)
    symbols = []
    for line in result.stdout.splitlines():
        fields = line.split()
        if len(fields) < 8 or not fields[0].rstrip(":").isdigit() or fields[3] == "SECTION":
            continue
        name, _, version = fields[7].partition("@")
        symbols.append((name, version.lstrip("@"), fields[3], fields[6]))
    return symbols


def elf_soname(path: str) -> str | None:
    """The SONAME of an ELF shared library (``readelf -d``), or None."""
    import subprocess

    result = subprocess.run(["readelf", "-d", path], capture_output=True, text=True)
    for line in result.stdout.splitlines():
        if "(SONAME)" in line:
            return line.split("[", 1)[1].split("]", 1)[0]
    return None


def make_stub_library(real: str, users: list[str], target: str, why: str, compiler: str) -> list[str]:
    """Build at ``target`` a stand-in for the shared library ``real``: same SONAME, same version nodes, and every
    function that one of ``users`` (the bundled files that stay) imports from it, each printing its name and
    aborting. Returns the exported names; raises RuntimeError when the stand-in cannot replace ``real``."""
    import os
    import subprocess
    import tempfile

    soname = elf_soname(real)
    defined = {name: (version, kind) for name, version, kind, index in dynamic_symbols(real) if index != "UND"}
    wanted = sorted({name for user in users for name, _, _, index in dynamic_symbols(user)
                     if index == "UND" and name in defined})
    if soname is None:
        raise RuntimeError(f"{real} has no SONAME")
    not_functions = [name for name in wanted if defined[name][1] != "FUNC"]
    if not_functions:
        raise RuntimeError(f"{real}: the bundle uses data, not only functions, from it: {', '.join(not_functions)}")
    versions: dict[str, list[str]] = {}
    for name in wanted:
        versions.setdefault(defined[name][0], []).append(name)
    with tempfile.TemporaryDirectory() as work:
        source = os.path.join(work, "stub.c")
        with open(source, "w", encoding="utf-8") as f:
            f.write("#include <stdio.h>\n#include <stdlib.h>\n"
                    "static void left_out(const char *function) {\n"
                    f'    fprintf(stderr, "leukviewer: %s() of {soname} was called, but {why} is not part of this '
                    'bundle (packaging/bundle.py, STUBBED_LIBRARIES)\\n", function);\n'
                    "    abort();\n}\n")
            for name in wanted:
                f.write(f'void {name}(void) {{ left_out("{name}"); }}\n')
        command = [compiler, "-shared", "-fPIC", "-O1", "-s", "-o", target, source, f"-Wl,-soname,{soname}"]
        if any(versions):
            script = os.path.join(work, "versions.map")
            with open(script, "w", encoding="utf-8") as f:
                for version, names in versions.items():
                    if version:
                        f.write(f"{version} {{ global: {'; '.join(names)}; }};\n")
            command.append(f"-Wl,--version-script={script}")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building the stand-in for {real} failed: {done.stderr.strip()}")
    exported = {(name, version) for name, version, _, index in dynamic_symbols(target) if index != "UND"}
    missing = [name for name in wanted if (name, defined[name][0]) not in exported]
    if missing or elf_soname(target) != soname:
        raise RuntimeError(f"the stand-in for {real} lacks {', '.join(missing) or 'its SONAME'}")
    return wanted


def _read_icu_package(data: bytes) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(header, [(name, item bytes)]) of an ICU common data package (ICU's ucmndata.h: a data header, then a table
    of contents of (name offset, data offset) pairs relative to its start, the names, and the items)."""
    import struct

    header_size = struct.unpack_from("<H", data, 0)[0]
    count = struct.unpack_from("<I", data, header_size)[0]
    offsets = [struct.unpack_from("<II", data, header_size + 4 + 8 * i) for i in range(count)]
    names = [data[header_size + n:data.index(b"\0", header_size + n)].decode("ascii") for n, _ in offsets]
    starts = [header_size + d for _, d in offsets] + [len(data)]
    return data[:header_size], [(names[i], data[starts[i]:starts[i + 1]]) for i in range(count)]


def _write_icu_package(header: bytes, items: list[tuple[str, bytes]]) -> bytes:
    """An ICU common data package of ``items`` (names sorted as given; every item 16-byte aligned)."""
    import struct

    names = b"".join(name.encode("ascii") + b"\0" for name, _ in items)
    toc_size = 4 + 8 * len(items)
    first = len(header) + toc_size + len(names)
    first += -first % 16
    name_offsets, data_offsets, body, position = [], [], [], first
    offset = toc_size
    for name, item in items:
        name_offsets.append(offset)
        offset += len(name) + 1
        data_offsets.append(position - len(header))
        body.append(item + b"\0" * (-len(item) % 16))
        position += len(body[-1])
    toc = struct.pack("<I", len(items)) + b"".join(struct.pack("<II", n, d) for n, d in zip(name_offsets,
                                                                                             data_offsets))
    out = header + toc + names
    return out + b"\0" * (first - len(out)) + b"".join(body)


def _exported_object(path: str) -> tuple[str, bytes]:
    """(name, bytes) of the one data object an ICU data library exports (icudtNN_dat)."""
    import re
    import subprocess

    symbols = [s for s in dynamic_symbols(path) if s[3] != "UND" and s[2] == "OBJECT"]
    if len(symbols) != 1 or not re.fullmatch(r"icudt\d+_dat", symbols[0][0]):
        raise RuntimeError(f"{path} does not look like ICU's data library")
    name = symbols[0][0]
    table = subprocess.run(["readelf", "--dyn-syms", "-W", path], capture_output=True, text=True).stdout
    fields = next(line.split() for line in table.splitlines() if line.split()[-1:] == [name])
    address, size = int(fields[1], 16), int(fields[2], 0)
    sections = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True).stdout
    for line in sections.splitlines():
        parts = line.replace("[ ", "[").split()
        if len(parts) > 5 and parts[0].startswith("[") and parts[1] == ".rodata":
            section_address, section_offset = int(parts[3], 16), int(parts[4], 16)
            with open(path, "rb") as f:
                f.seek(section_offset + address - section_address)
                return name, f.read(size)
    raise RuntimeError(f"{path} has no .rodata section")


def make_trimmed_icu_data(real: str, target: str, compiler: str) -> tuple[int, int]:
    """Build at ``target`` ICU's data library ``real`` without the items ICU_DATA_LEFT_OUT names (same SONAME and
    symbol). Returns (items kept, items left out); raises RuntimeError when it cannot."""
    import os
    import subprocess
    import tempfile

    symbol, data = _exported_object(real)
    header, items = _read_icu_package(data)
    prefix = items[0][0].split("/", 1)[0] + "/"
    kept = [(name, item) for name, item in items
            if not any(fnmatch.fnmatch(name[len(prefix):], pattern) for pattern in ICU_DATA_LEFT_OUT)]
    with tempfile.TemporaryDirectory() as work:
        package, source = os.path.join(work, "icudt.dat"), os.path.join(work, "icudt.s")
        with open(package, "wb") as f:
            f.write(_write_icu_package(header, kept))
        with open(source, "w", encoding="utf-8") as f:
            f.write(f'  .section .rodata\n  .globl {symbol}\n  .type {symbol}, @object\n  .balign 16\n{symbol}:\n'
                    f'  .incbin "{package}"\n  .size {symbol}, . - {symbol}\n'
                    '  .section .note.GNU-stack,"",@progbits\n')
        done = subprocess.run([compiler, "-shared", "-nostdlib", "-o", target, source,
                               f"-Wl,-soname,{elf_soname(real)}"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building the trimmed ICU data failed: {done.stderr.strip()}")
    if _read_icu_package(_exported_object(target)[1])[1] != [(n, i + b"\0" * (-len(i) % 16)) for n, i in kept]:
        raise RuntimeError("the trimmed ICU data does not read back")
    return len(kept), len(items) - len(kept)


def prune_unneeded_libraries(binaries: list, needed_by) -> tuple[list, list]:
    """(kept, dropped) TOC entries: repeatedly drop the libraries in PRUNABLE_LIBRARY_DIRS that no remaining file
    links to.

    ``binaries`` is PyInstaller's TOC ((dest, source, typecode) tuples; a SYMLINK's source is its relative
    target); ``needed_by(source)`` gives the library names (DT_NEEDED) a file links to. Python extensions and Qt
    plugins are loaded by path at run time, so only plain shared libraries are ever pruned.
    """
    def split(dest: str) -> tuple[str, str]:
        folder, _, name = dest.replace("\\", "/").rpartition("/")
        return folder, name

    def link_target(entry) -> str:
        return posixpath.normpath(posixpath.join(split(entry[0])[0], entry[1].replace("\\", "/")))

    needs = {e[0]: set() if e[2] == "SYMLINK" else set(needed_by(e[1])) for e in binaries}
    kept = list(binaries)
    while True:
        wanted = set().union(*(needs[e[0]] for e in kept))
        links = [e for e in kept if e[2] == "SYMLINK"]
        linked = {link_target(e) for e in links if split(e[0])[1] in wanted}

        def unneeded(entry) -> bool:
            folder, name = split(entry[0])
            if (entry[2] not in ("BINARY", "SYMLINK") or folder not in PRUNABLE_LIBRARY_DIRS or ".so" not in name
                    or _matches(name, NEVER_PRUNED)):
                return False
            return name not in wanted and (entry[2] == "SYMLINK" or entry[0] not in linked)

        gone = {e[0] for e in kept if unneeded(e)}
        gone |= {e[0] for e in links if link_target(e) in gone}
        if not gone:
            return kept, [e for e in binaries if e not in kept]
        kept = [e for e in kept if e[0] not in gone]


def elf_needed(path: str) -> list[str]:
    """The DT_NEEDED names of an ELF file (``readelf -d``); [] for anything else."""
    import subprocess

    result = subprocess.run(["readelf", "-d", path], capture_output=True, text=True)
    return [line.split("[", 1)[1].split("]", 1)[0] for line in result.stdout.splitlines() if "(NEEDED)" in line]


def bundled_distributions(modules: list, binaries: list) -> set[str]:
    """The installed distributions (canonical names) that own something in the bundle: pure modules from the
    analysis' ``pure`` TOC and extension modules from its ``binaries`` TOC."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    owners = metadata.packages_distributions()
    tops = {entry[0].split(".")[0] for entry in modules}
    for dest, _source, typecode in binaries:
        if typecode == "EXTENSION":
            tops.add(dest.replace("\\", "/").split("/")[0].split(".")[0])
    return {canonicalize_name(dist) for top in tops for dist in owners.get(top, [])}


SYSTEM_PREFIXES = ("/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/")


def system_library_licences(binaries: list, workdir: str) -> tuple[list, list]:
    """(datas TOC entries, libraries without a known licence) for the build machine's own libraries in the bundle,
    from the Debian packages that installed them: ``system/<package>/copyright`` per package and
    ``system/index.json`` for the About dialog, under ``assets/licenses/`` in the bundle."""
    import json
    import os
    import subprocess

    packages: dict[str, list[str]] = {}
    unknown = []
    for dest, source, typecode in binaries:
        if typecode == "SYMLINK" or not source.startswith(SYSTEM_PREFIXES):
            continue
        candidates = {source, os.path.realpath(source)}
        candidates |= {c.replace("/usr/lib/", "/lib/", 1) for c in candidates if c.startswith("/usr/lib/")}
        package = None
        for candidate in sorted(candidates):
            found = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if found.returncode == 0:
                package = found.stdout.split(":", 1)[0].strip()
                break
        if package and os.path.isfile(f"/usr/share/doc/{package}/copyright"):
            packages.setdefault(package, []).append(os.path.basename(dest))
        else:
            unknown.append(os.path.basename(dest))
    out = os.path.join(workdir, "system-licences")
    os.makedirs(out, exist_ok=True)
    datas, components = [], []
    for package, libraries in sorted(packages.items()):
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                                 text=True).stdout.strip()
        datas.append((f"assets/licenses/system/{package}/copyright", f"/usr/share/doc/{package}/copyright", "DATA"))
        components.append({"id": f"system-{package}", "name": f"{package} (system library: {', '.join(libraries)})",
                           "version": version, "licence": "see the Debian copyright file", "kind": "system",
                           "distributions": [], "url": "", "files": [f"system/{package}/copyright"]})
    index = os.path.join(out, "index.json")
    with open(index, "w", encoding="utf-8") as f:
        json.dump({"components": components}, f, indent=1)
    datas.append(("assets/licenses/system/index.json", index, "DATA"))
    return datas, unknown
