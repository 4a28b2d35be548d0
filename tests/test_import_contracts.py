"""The package boundaries as tests (read from the source, so every import counts, also those inside functions):
core and the headless commands never import Qt or the GUI, the training library never imports the app, and no
private name crosses from one package into another."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QT = ("PySide6", "shiboken6", "PyQt5", "PyQt6", "matplotlib.backends.backend_qtagg")
# The installation self-test starts Qt to check it and its smoke test opens the window: it imports Qt and the GUI on
# purpose, inside its functions only. Every other command in leukviewer/cli runs without them.
INSTALLATION_CHECK = "leukviewer/cli/selftest.py"
HEADLESS_COMMANDS = tuple(str(p.relative_to(REPO)) for p in sorted((REPO / "leukviewer" / "cli").glob("*.py"))
                          if str(p.relative_to(REPO)) != INSTALLATION_CHECK)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(imported module, names taken from it) for every import statement in the file."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield target, [a.name for a in node.names]


def files(*roots):
    for root in roots:
        path = REPO / root
        yield from ([path] if path.is_file() else sorted(path.rglob("*.py")))


def room(module: str) -> str:
    """The package a module belongs to for these contracts: training, leukviewer (the entry point), leukviewer.cli,
    leukviewer.gui, leukviewer.core (its one-home modules: labels, paths, atomic, settings) and each of core's rooms
    (leukviewer.core.model, .analysis, .review, .reports, .retrain: any package directly under core)."""
    parts = module.split(".")
    if parts[0] != "leukviewer" or len(parts) == 1:
        return parts[0]
    if parts[1] == "core" and len(parts) > 2 and (REPO / "leukviewer" / "core" / parts[2] / "__init__.py").is_file():
        return ".".join(parts[:3])
    if parts[1] in ("core", "gui", "cli"):
        return ".".join(parts[:2])
    return parts[0]


def starts(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_core_and_the_headless_commands_never_import_qt_or_the_gui():
    bad = [f"{p.relative_to(REPO)}: {m}" for p in files("leukviewer/core", *HEADLESS_COMMANDS)
           for m, _ in imports(p) if starts(m, QT + ("leukviewer.gui",))]
    assert not bad, bad


def test_the_training_library_never_imports_the_app():
    """training is the lower layer: the app imports it, never the reverse. What a training step needs of the app
    (its localiser, its scale measure) the app passes in (``leukviewer/cli/training.py``)."""
    bad = [f"{p.relative_to(REPO)}: {m}" for p in files("training") for m, _ in imports(p)
           if starts(m, ["leukviewer"])]
    assert not bad, bad


def test_no_private_name_crosses_a_package_boundary():
    bad = []
    for p in files("leukviewer", "training"):
        mine = room(module_name(p))
        for m, names in imports(p):
            if room(m) != mine and starts(m, ["leukviewer", "training"]):
                bad += [f"{p.relative_to(REPO)}: {m}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
    assert not bad, bad


def test_the_contract_reader_sees_relative_and_late_imports(tmp_path):
    """The checks above would pass vacuously if imports were missed: the reader resolves them as Python does."""
    found = dict(imports(REPO / "leukviewer" / "gui" / "main_window.py"))
    assert "leukviewer.core.review.session" in found and "PySide6.QtWidgets" in found
    assert "leukviewer.gui.export_dialog" in dict(imports(REPO / "leukviewer" / "gui" / "export_control.py"))  # late


def test_the_self_test_imports_qt_and_the_gui_only_inside_its_functions():
    """`leukviewer --self-test` checks Qt, `--smoke-test` opens the window; importing the module loads neither."""
    tree = ast.parse((REPO / INSTALLATION_CHECK).read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [("." * n.level) + (n.module or "") for n in top if isinstance(n, ast.ImportFrom)]
    assert not [m for m in names if starts(m, QT) or "gui" in m.split(".")], names
    assert [m for m, _ in imports(REPO / INSTALLATION_CHECK) if starts(m, ("leukviewer.gui",))]   # it does, late
    assert HEADLESS_COMMANDS and all(c.startswith("leukviewer/cli/") for c in HEADLESS_COMMANDS)
