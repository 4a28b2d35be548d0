"""What the frozen bundle leaves out, in one place: ``build_installer.spec`` applies it, and
``tests/test_installer.py`` runs the app's code paths with these modules blocked to prove none of them is needed.

Every entry says why leaving it out is safe. ``import tensorflow`` itself imports nearly all of TensorFlow's Python
packages (lite, tpu, distribute, profiler, ...), so TensorFlow is trimmed by files, not by modules: its C++ headers,
the three extension modules nothing imports, and the symbol tables of its libraries (``strip``).
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
    # GNU readline (GPL-3.0) is only for interactive prompts (pdb, the REPL); the app has none.
    "readline",
    # Pillow's AVIF codec (libavif, ~5 MB): the app reads BMP, PNG, JPEG and TIFF; Pillow skips a missing codec.
    "PIL._avif",
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
    # matplotlib's example data (only its own tests and galleries read it).
    "matplotlib/mpl-data/sample_data/*",
    # Type stubs and C headers shipped inside wheels.
    "*.pyi", "numpy/_core/include/*", "numpy/core/include/*", "PySide6/include/*", "shiboken6/include/*",
]


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


# Libraries the bundle keeps only while something in it still links to them: after the exclusions above, the
# libraries that only excluded plugins needed (GTK, Pango, Cairo, Kerberos, ...) are dropped too.
PRUNABLE_LIBRARY_DIRS = ("", "PySide6/Qt/lib")
NEVER_PRUNED = ("libpython*",)


def _matches(path: str, patterns) -> bool:
    path = path.replace("\\", "/")
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def is_excluded_file(bundle_path: str) -> bool:
    """True for a path inside the bundle (as PyInstaller names it) that the bundle leaves out."""
    return _matches(bundle_path, EXCLUDED_FILES)


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
