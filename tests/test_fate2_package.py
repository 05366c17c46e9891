"""The FATE 2.x plugin's layout (accel/integrations/fate2/), read statically so that it is
checked without FATE installed: each module imports only the modules listed above it in the
package docstring's table, none reaches another module's private names, and input is
validated with real errors, never ``assert`` (which ``python -O`` drops)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "accel" / "integrations" / "fate2"


def _layers() -> list[str]:
    """The module order of the docstring's table (the lowest first)."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    return re.findall(r"^``(\w+)``\s{2,}", doc, flags=re.M)


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.glob("*.py"))}


def _sibling_imports(tree: ast.Module) -> dict[str, set[str]]:
    """Sibling modules imported (``from . import x``, ``from .x import y``) -> names taken."""
    out: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                out.setdefault(node.module.split(".")[0], set()).update(a.name for a in node.names)
            else:
                for a in node.names:
                    out.setdefault(a.name, set())
    return out


def test_every_module_is_in_the_table_once():
    layers = _layers()
    assert len(layers) == len(set(layers))
    assert set(layers) == set(_modules()) - {"__init__"}


@pytest.mark.parametrize("name", sorted(set(_modules()) - {"__init__"}))
def test_modules_import_only_downwards(name):
    layers = _layers()
    below = set(layers[:layers.index(name)])
    imported = set(_sibling_imports(_modules()[name]))
    assert imported <= below, f"{name} imports {sorted(imported - below)}, not listed above it"


@pytest.mark.parametrize("name", sorted(_modules()))
def test_no_private_names_across_modules_and_no_asserts(name):
    tree = _modules()[name]
    module_aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level and node.module is None:  # from . import x, from .. import _batch: modules
                module_aliases.update(a.asname or a.name for a in node.names)
            elif node.level == 1:  # from .x import y: a sibling's names, never its private ones
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{name} imports {private} from .{node.module}"
        elif isinstance(node, ast.Import):
            module_aliases.update((a.asname or a.name).split(".")[0] for a in node.names)
        assert not isinstance(node, ast.Assert), f"{name}:{getattr(node, 'lineno', '?')} validates with assert"
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            raise AssertionError(f"{name}:{node.lineno} reaches {node.value.id}.{node.attr}")


def test_the_plain_operand_methods_come_from_one_rule():
    """add/sub/rsub x tensor/scalar: six methods, none written out by hand."""
    tree = _modules()["tensor_evaluator"]
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "evaluator")
    defined = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assigned = {t.id for n in cls.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    six = {f"{op}_plain{s}" for op in ("add", "sub", "rsub") for s in ("", "_scalar")}
    assert six <= assigned and not six & defined
