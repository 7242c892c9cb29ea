"""The import graph of src/scalevae: no circle, and no arrow back up the declared layers.

The layers are docs/internals.md's "Where things live", from the ground up. A module may import
modules of its own layer's package or of a layer below it, never one above (lazy imports inside
functions count too); module-level imports may never form a circle. A new module belongs to
the layer of its package; a new top-level module must be added to LAYERS.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "scalevae"

# from the ground floor up; modules in one entry may import each other (without circles)
LAYERS = [
    ("scalevae", "config", "errors", "_names"),
    ("_atomic", "_checks", "_lock"),
    ("spectrum",),
    ("io",),
    ("keypoints",),
    ("patches",),
    ("model",),
    ("training",),
    ("store",),
    ("results",),
    ("rundir",),
    ("datasets", "testing"),
    ("analysis",),
    ("plot",),
    ("report",),
    ("napari",),
    ("plan",),
    ("answer",),
    ("pipeline",),
    ("api", "reuse", "descriptors"),  # Run.descriptors hands off to descriptors (lazily)
    ("experiment",),
    ("runs", "saving"),  # old homes, re-exporting what moved
    ("cli", "__main__"),
]


def _modules():
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _imports(mods):
    """{module: {(imported module, at module level)}} for imports of the package itself."""
    graph = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        top = {id(node) for node in tree.body}
        edges = set()
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "scalevae"]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    base = ".".join(base + ([node.module] if node.module else []))
                elif (node.module or "").split(".")[0] == "scalevae":
                    base = node.module
                else:
                    continue
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            edges |= {(t, id(node) in top) for t in targets if t != name}
        graph[name] = edges
    return graph


def _layer(module):
    short = module.split(".", 1)[1] if "." in module else module
    top = short.split(".")[0]
    for i, names in enumerate(LAYERS):
        if short in names or top in names:
            return i, top
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_imports.py "
                         "and to docs/internals.md")


def test_every_module_has_a_layer():
    for module in _modules():
        _layer(module)


def test_no_module_imports_one_above_its_layer():
    graph = _imports(_modules())
    upward = []
    for module, edges in graph.items():
        here, package = _layer(module)
        for target, _ in edges:
            there, other = _layer(target)
            if there > here and other != package:
                upward.append(f"{module} -> {target}")
    assert not upward, "imports up the layers: " + "; ".join(sorted(upward))


def test_module_level_imports_form_no_circle():
    graph = {m: {t for t, top in e if top} for m, e in _imports(_modules()).items()}
    state, circles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles: " + "; ".join(circles)


@pytest.mark.parametrize("module", ["scalevae.config", "scalevae.spectrum"])
def test_the_ground_floor_imports_no_reader_and_no_torch(module):
    """config (and the spectrum above it) are read by everything: importing them must not
    pull in the readers, the atom finder or torch."""
    code = (f"import sys, {module}; heavy = [m for m in ('torch', 'scalevae.io', "
            "'scalevae.keypoints', 'scalevae.patches', 'h5py', 'tifffile') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(SRC.parent)}, check=True).stdout
    assert out.strip() == "[]"


def test_the_checker_sees_an_upward_import_and_a_circle(tmp_path):
    """The checks above can fail: a planted upward import and a planted circle are found."""
    global SRC
    pkg = tmp_path / "scalevae"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("from .api import run\n")
    (pkg / "api.py").write_text("from . import config\n")
    saved, SRC = SRC, pkg
    try:
        graph = _imports(_modules())
        assert ("scalevae.api", True) in graph["scalevae.config"]
        with pytest.raises(AssertionError, match="imports up the layers"):
            test_no_module_imports_one_above_its_layer()
        with pytest.raises(AssertionError, match="import circles"):
            test_module_level_imports_form_no_circle()
    finally:
        SRC = saved
