"""docs/ARCHITECTURE.md lists every module of the package, and nothing that is not there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "vidcolor"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
INDENT = 2  # spaces per level in the documented tree


def documented_tree() -> tuple[set[str], set[str]]:
    """(paths documented as present, paths documented as planned), relative to the package."""
    block = DOC.read_text().split("```\nsrc/vidcolor/\n", 1)[1].split("```", 1)[0]
    present, planned, stack = set(), set(), []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // INDENT - 1
        name = line.split()[0]
        stack[depth:] = [name.rstrip("/")]
        path = "/".join(stack)
        (planned if "(planned)" in line else present).add(path)
    return present, planned


def actual_tree() -> set[str]:
    paths = set()
    for file in PACKAGE.rglob("*.py"):
        relative = file.relative_to(PACKAGE)
        if "__pycache__" in relative.parts or (relative.name == "__init__.py" and relative.parent.parts):
            continue
        paths.add(relative.as_posix())
        paths.update(parent.as_posix() for parent in relative.parents if parent.parts)
    return paths


def test_every_module_is_documented_and_every_documented_module_exists():
    present, planned = documented_tree()
    actual = actual_tree()
    assert sorted(actual - present - planned) == [], "modules missing from docs/ARCHITECTURE.md"
    assert sorted(present - actual) == [], "documented modules that do not exist"


def test_the_data_path_names_real_modules():
    diagram = DOC.read_text().split("```", 2)[1]
    for module in set(re.findall(r"\b(?:io|pipeline|engines|color)/[a-z_]+", diagram)):
        assert (PACKAGE / f"{module}.py").exists() or (PACKAGE / module).is_dir(), module
