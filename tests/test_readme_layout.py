"""The README's layout section is the tree: every room (package) and every module of the application is named
there, and everything it names exists (a newcomer finds each concept where the README says it lives)."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def layout_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1]


def test_every_room_and_module_of_the_app_is_in_the_readme_layout_and_nothing_else():
    block = layout_block()
    packages = sorted(p.parent for p in (REPO / "leukviewer").rglob("__init__.py"))
    missing_rooms = [str(p.relative_to(REPO)) for p in packages[1:] if not re.search(rf"\b{p.name}/", block)]
    assert not missing_rooms, f"rooms missing from README's layout: {missing_rooms}"
    modules = {p.stem for p in (REPO / "leukviewer").rglob("*.py") if p.name != "__init__.py"}
    missing = sorted(m for m in modules if not re.search(rf"\b{re.escape(m)}(\.py)?\b", block))
    assert not missing, f"modules missing from README's layout: {missing}"
    named = set(re.findall(r"\b([a-z_]+)\.py\b", block))
    assert not named - modules - {"__main__"}, f"README names modules that do not exist: {named - modules}"
