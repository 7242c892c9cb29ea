"""docs/internals.md names every module of src/scalevae (issue 22).

A module ``pkg/name.py`` counts as named when the page holds its path ``pkg/name.py``, or when
the table row of its package (a table row holding ``` `pkg/` ```) holds ``name.py``; a
module at the top (``name.py``) when the page holds it in backquotes. A package's
``__init__.py`` counts as named with its package's row, the top ``__init__.py`` with the page.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "scalevae"
PAGE = ROOT / "docs" / "internals.md"


def package_rows(text):
    """{package path: its table row} for rows that start with a backquoted ``pkg/``."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("|"):  # any cell of a table row may name the package
            for package in re.findall(r"`([\w/]+)/`", line):
                rows.setdefault(package, line)
    return rows


def unnamed_modules(text):
    rows = package_rows(text)
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        parent, name = rel.parent.as_posix(), rel.name
        if parent == ".":
            if name != "__init__.py" and f"`{name}`" not in text:
                missing.append(rel.as_posix())
        elif parent not in rows:
            missing.append(rel.as_posix())
        elif name != "__init__.py" and rel.as_posix() not in text and name not in rows[parent]:
            missing.append(rel.as_posix())
    return missing


def test_internals_names_every_module():
    missing = unnamed_modules(PAGE.read_text())
    assert not missing, f"docs/internals.md does not name: {', '.join(missing)}"


def test_the_check_finds_a_module_missing_from_the_page():
    text = PAGE.read_text().replace("`model.py`", "the model")
    assert "model.py" in unnamed_modules(text)
