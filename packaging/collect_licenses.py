"""Copy the licence texts of everything the installer bundles into assets/licenses/ and write its index.json (read
by the About dialog and checked by build_installer.spec). Run by hand after the dependencies change; the outputs
are committed:

    .venv/bin/python packaging/collect_licenses.py

Python packages: the runtime dependencies of leukviewer (recursively, as installed in this environment), less the
ones packaging/bundle.py leaves out, each with the licence files its wheel ships. Where a wheel ships none
(TensorFlow, PySide6, Shiboken6, FlatBuffers) the standard text of its declared licence is used. Also: Qt (inside
PySide6), Python, the PyInstaller bootloader and the C-NMC 2019 data. The system libraries of the build machine are
added at build time (build_installer.spec), since they differ from one machine to the next.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "assets" / "licenses"
sys.path.insert(0, str(ROOT / "packaging"))
import bundle  # noqa: E402

COMMON_LICENSES = Path("/usr/share/common-licenses")  # Debian's standard licence texts
STANDARD_TEXTS = {"Apache-2.0": "Apache-2.0", "LGPL-3.0": "LGPL-3", "GPL-3.0": "GPL-3", "GPL-2.0": "GPL-2"}

# Where the wheel's metadata names no licence, or a whole paragraph instead of one.
DECLARED = {
    "tensorflow": "Apache-2.0", "tensorflow-cpu": "Apache-2.0", "keras": "Apache-2.0", "namex": "Apache-2.0",
    "flatbuffers": "Apache-2.0", "opencv-python-headless": "Apache-2.0", "google-pasta": "Apache-2.0",
    "pyside6-essentials": "LGPL-3.0-only OR GPL-2.0-only OR GPL-3.0-only",
    "shiboken6": "LGPL-3.0-only OR GPL-2.0-only OR GPL-3.0-only",
    "matplotlib": "Matplotlib licence (PSF-based)", "reportlab": "BSD-3-Clause", "scipy": "BSD-3-Clause",
    "kiwisolver": "BSD-3-Clause", "cycler": "BSD-3-Clause", "contourpy": "BSD-3-Clause", "protobuf": "BSD-3-Clause",
    "gast": "BSD-3-Clause", "astunparse": "BSD-3-Clause AND PSF-2.0", "markdown-it-py": "MIT", "mdurl": "MIT",
    "keras-nightly": "Apache-2.0", "ml-dtypes": "Apache-2.0",
}
# Wheels without licence files: the standard texts of their licence (and TensorFlow's own notices).
FALLBACK_TEXTS = {
    "tensorflow": ["Apache-2.0"], "tensorflow-cpu": ["Apache-2.0"], "flatbuffers": ["Apache-2.0"],
    "pyside6-essentials": ["LGPL-3.0", "GPL-3.0"], "shiboken6": ["LGPL-3.0", "GPL-3.0"],
}
EXTRA_PACKAGE_FILES = {"tensorflow": ["tensorflow/THIRD_PARTY_NOTICES.txt"],
                       "tensorflow-cpu": ["tensorflow/THIRD_PARTY_NOTICES.txt"]}
TITLES = {"tensorflow-cpu": "TensorFlow (CPU)", "tensorflow": "TensorFlow", "keras": "Keras",
          "pyside6-essentials": "PySide6 (Qt for Python)", "shiboken6": "Shiboken6 (Qt for Python)",
          "opencv-python-headless": "OpenCV", "numpy": "NumPy", "scipy": "SciPy", "scikit-learn": "scikit-learn",
          "pillow": "Pillow", "matplotlib": "Matplotlib", "reportlab": "ReportLab", "h5py": "h5py"}
FIRST = ["qt", "pyside6-essentials", "shiboken6", "tensorflow-cpu", "tensorflow", "keras", "c-nmc-2019", "python"]
LICENCE_FILE = re.compile(r"(licen[cs]e|copying|notice|copyright)", re.IGNORECASE)

C_NMC = """# C-NMC 2019 — ALL Challenge dataset of ISBI 2019

The bundled model was trained on cell images of this data set (training fold_1; see the model card), and the
self-test sample `assets/samples/UID_16_12_3_all.png` is one of its images (subject 16, image 12, cell 3, label
ALL), saved losslessly as PNG from the original BMP; the pixels are unchanged.

- Citation: Gupta, A., & Gupta, R. (2019). ALL Challenge dataset of ISBI 2019 [Data set]. The Cancer Imaging
  Archive. https://doi.org/10.7937/tcia.2019.dc64i46r
- Collection: https://www.cancerimagingarchive.net/collection/c-nmc-2019/
- Creators: SBILab, Indraprastha Institute of Information Technology Delhi (IIIT-Delhi), and the Department of
  Laboratory Oncology, All India Institute of Medical Sciences (AIIMS), New Delhi.
- Licence: Creative Commons Attribution 3.0 Unported (CC BY 3.0),
  https://creativecommons.org/licenses/by/3.0/ (legal code: https://creativecommons.org/licenses/by/3.0/legalcode)

Under CC BY 3.0 you may share and adapt the material for any purpose, provided you give appropriate credit (the
citation above), link to the licence, and indicate if changes were made. The images carry no warranty.
"""

QT = """# Qt 6

leukviewer uses the Qt libraries (Qt Core, Qt Gui, Qt Widgets, Qt Svg, their platform plugins and ICU) as shipped
in the PySide6-Essentials wheel, under the GNU Lesser General Public License version 3 (LGPL-3.0), whose text
follows in LGPL-3.0.txt; the LGPL-3.0 adds permissions to the GNU GPL version 3 (GPL-3.0.txt).

- The Qt libraries are separate, unmodified shared libraries in the installation folder (`_internal/PySide6/Qt/`
  on Linux and Windows, `Contents/Frameworks/PySide6/Qt/` on macOS). You may replace them with your own
  compatible build of the same Qt version; leukviewer loads whatever is in that folder.
- Source code of Qt: https://download.qt.io/official_releases/qt/ (and https://code.qt.io/). Source code of
  PySide6 and Shiboken6: https://download.qt.io/official_releases/QtForPython/ (and https://code.qt.io/).
- Copyright (C) The Qt Company Ltd. and other contributors.
"""


def runtime_distributions() -> list[metadata.Distribution]:
    """leukviewer's runtime dependencies, recursively, as installed here (extras and markers respected)."""
    env = default_environment()
    seen: dict[str, metadata.Distribution] = {}
    todo = [req for req in (metadata.requires("leukviewer") or [])]
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[name] = dist
        todo += [r for r in (dist.requires or []) if "extra ==" not in r]
    return list(seen.values())


def left_out_distributions() -> set[str]:
    """Distributions whose every top-level module the bundle excludes (bundle.EXCLUDED_MODULES)."""
    excluded = {m for m in bundle.EXCLUDED_MODULES if "." not in m}
    owners: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            owners.setdefault(canonicalize_name(dist), set()).add(module)
    return {dist for dist, modules in owners.items()
            if not {m for m in modules if not m.startswith("_") or m in excluded} - excluded}


def declared_licence(dist: metadata.Distribution) -> str:
    name = canonicalize_name(dist.metadata["Name"])
    meta = dist.metadata
    if name in DECLARED:
        return DECLARED[name]
    if meta.get("License-Expression"):
        return meta["License-Expression"]
    short = (meta.get("License") or "").strip()
    if short and "\n" not in short and len(short) <= 40:
        return short
    classifiers = [c.split("::")[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    return " / ".join(classifiers) or "see the licence file"


def standard_text(key: str, dest: Path) -> Path:
    source = COMMON_LICENSES / STANDARD_TEXTS[key]
    if not source.is_file():
        raise SystemExit(f"the standard text of {key} is needed but {source} is missing (run this on Debian/Ubuntu)")
    target = dest / f"{key}.txt"
    shutil.copyfile(source, target)
    return target


def licence_files(dist: metadata.Distribution) -> list[Path]:
    files = []
    for item in dist.files or []:
        parts = Path(str(item)).parts
        if parts and parts[0].endswith(".dist-info") and LICENCE_FILE.search(Path(str(item)).name):
            path = Path(dist.locate_file(item))
            if path.is_file():
                files.append((Path(*parts[1:]), path))
    return files


def collect_distribution(dist: metadata.Distribution) -> dict:
    name = canonicalize_name(dist.metadata["Name"])
    dest = OUT / name
    dest.mkdir(parents=True)
    written = []
    for relative, source in licence_files(dist):
        if relative.parts and relative.parts[0] == "licenses" and len(relative.parts) > 1:
            relative = Path(*relative.parts[1:])
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)
    for extra in EXTRA_PACKAGE_FILES.get(name, []):
        source = Path(dist.locate_file(extra))
        if source.is_file():
            shutil.copyfile(source, dest / source.name)
            written.append(dest / source.name)
    if not any(LICENCE_FILE.search(p.name) and "NOTICES" not in p.name for p in written):
        for key in FALLBACK_TEXTS.get(name, []):
            written.append(standard_text(key, dest))
    if not written:
        raise SystemExit(f"{name} {dist.version} ships no licence file and has no fallback text: add one to "
                         "FALLBACK_TEXTS")
    meta = dist.metadata
    url = meta.get("Home-page") or next((u.split(",", 1)[1].strip() for u in meta.get_all("Project-URL") or []
                                         if u.lower().startswith(("homepage", "home", "source"))), "")
    return {"id": name, "name": TITLES.get(name, meta["Name"]), "version": dist.version,
            "licence": declared_licence(dist), "kind": "software", "distributions": [name], "url": url,
            "files": sorted(p.relative_to(OUT).as_posix() for p in written)}


def write_text(relative: str, text: str) -> str:
    path = OUT / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return relative


def extra_components() -> list[dict]:
    qt_dir = OUT / "qt"
    qt_dir.mkdir(parents=True)
    qt_files = [write_text("qt/README.md", QT), standard_text("LGPL-3.0", qt_dir).relative_to(OUT).as_posix(),
                standard_text("GPL-3.0", qt_dir).relative_to(OUT).as_posix()]
    from PySide6 import QtCore

    python_licence = Path(sys.base_prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / \
        "LICENSE.txt"
    if not python_licence.is_file():
        raise SystemExit(f"Python's licence text is missing: {python_licence}")
    (OUT / "python").mkdir()
    shutil.copyfile(python_licence, OUT / "python" / "LICENSE.txt")
    pyinstaller = metadata.distribution("pyinstaller")
    (OUT / "pyinstaller-bootloader").mkdir()
    copying = next(source for relative, source in licence_files(pyinstaller) if "COPYING" in relative.name)
    shutil.copyfile(copying, OUT / "pyinstaller-bootloader" / "COPYING.txt")
    return [
        {"id": "qt", "name": "Qt", "version": QtCore.qVersion(), "licence": "LGPL-3.0-only", "kind": "software",
         "distributions": [], "url": "https://www.qt.io/", "files": qt_files},
        {"id": "python", "name": "Python", "version": ".".join(map(str, sys.version_info[:3])),
         "licence": "PSF-2.0", "kind": "software", "distributions": [], "url": "https://www.python.org/",
         "files": ["python/LICENSE.txt"]},
        {"id": "pyinstaller-bootloader", "name": "PyInstaller bootloader", "version": pyinstaller.version,
         "licence": "GPL-2.0-or-later WITH Bootloader-exception", "kind": "software", "distributions": [],
         "url": "https://pyinstaller.org/", "files": ["pyinstaller-bootloader/COPYING.txt"]},
        {"id": "c-nmc-2019", "name": "C-NMC 2019 data (model training, self-test sample)", "version": "",
         "licence": "CC-BY-3.0", "kind": "data", "distributions": [],
         "url": "https://doi.org/10.7937/tcia.2019.dc64i46r",
         "files": [write_text("c-nmc-2019/ATTRIBUTION.md", C_NMC)]},
    ]


README = """# Licences of what leukviewer bundles

leukviewer's installer ships third-party software and data; their licence texts are in this folder, one
sub-folder per component, listed in `index.json` (the About dialog shows the same list, under Licences). The
system libraries of the build machine are added by the build (`system/`, in the installed bundle only).

Written by `packaging/collect_licenses.py` from the installed packages; do not edit by hand.

For Research Use Only. Not for use in diagnostic procedures.

| component | version collected | licence |
|---|---|---|
"""


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    left_out = left_out_distributions()
    dists = [d for d in runtime_distributions() if canonicalize_name(d.metadata["Name"]) not in left_out]
    components = extra_components() + [collect_distribution(d) for d in dists]
    order = {key: i for i, key in enumerate(FIRST)}
    components.sort(key=lambda c: (order.get(c["id"], len(order)), c["name"].lower()))
    (OUT / "index.json").write_text(json.dumps({"components": components}, indent=1) + "\n", encoding="utf-8")
    rows = "".join(f"| {c['name']} | {c['version']} | {c['licence']} |\n" for c in components)
    (OUT / "README.md").write_text(README + rows, encoding="utf-8")
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"{len(components)} components, {size // 1024} KiB in {OUT.relative_to(ROOT)}; left out of the bundle: "
          f"{', '.join(sorted(left_out & {canonicalize_name(d.metadata['Name']) for d in runtime_distributions()}))}")


if __name__ == "__main__":
    main()
