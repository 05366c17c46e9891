"""The layers import only downwards, and the backends outside the core find their way in by name.

pyproject's ``[tool.importlinter]`` states the layers; scripts/lint_imports.py lays the Python
files out as the wheel holds them and runs import-linter on that copy. The contract must hold
on this tree and must fail on a tree with an upward import (function-local ones included).
"""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import accel
import accel.backends as backends
from accel import _checkout
from accel.backends import BackendUnavailableError, CpuBackend

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import lint_imports  # noqa: E402

sys.path.pop(0)

try:
    import tomllib
except ImportError:  # Python < 3.11: import-linter brings tomli
    import tomli as tomllib

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
(CONTRACT,) = PYPROJECT["tool"]["importlinter"]["contracts"]
LAYERS = [[m.strip() for m in layer.split("|")] for layer in CONTRACT["layers"]]


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> Path:
    return lint_imports.stage(tmp_path_factory.mktemp("layers"))


def test_the_contract_holds_on_this_tree(staged):
    proc = lint_imports.lint(staged)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_the_layers_are_in_the_documented_order():
    assert LAYERS == [
        ["accel.cli"], ["accel.bench"], ["accel.service"], ["accel.integrations"],
        ["accel.ciphertext", "accel.packed", "accel.obfuscators"], ["accel.backends"], ["accel.gpu"],
        ["accel.djn", "accel.encoding", "accel.packing"], ["accel.keys"],
    ]
    # the one exception, and it is a deprecated alias
    assert CONTRACT["ignore_imports"] == ["accel.backends.remote -> accel.service.remote"]


def test_every_module_has_a_layer(staged):
    """A new top-level module cannot escape the contract: it must be placed in a layer."""
    placed = {m.split(".")[1] for layer in LAYERS for m in layer}
    found = {p.stem if p.is_file() else p.name for p in (staged / "accel").iterdir()
             if p.suffix == ".py" or (p / "__init__.py").is_file()}
    # the package's own __init__ (the public names), the checkout's finder, the kernel sources
    assert found - placed == {"__init__", "_checkout", "kernels"}
    assert placed <= found


# (file in the wheel's layout, an import it must not make, the chain import-linter reports)
UPWARD = [
    ("accel/keys.py", "from accel.service import client", "accel.keys -> accel.service.client"),
    ("accel/backends/base.py", "from accel import ciphertext", "accel.backends.base -> accel.ciphertext"),
    ("accel/backends/cpu.py", "import accel.integrations.phe", "accel.backends.cpu -> accel.integrations.phe"),
    ("accel/service/codec.py", "from accel.bench import ops", "accel.service.codec -> accel.bench.ops"),
    ("accel/bench/bounds.py", "import accel.cli", "accel.bench.bounds -> accel.cli"),
    ("accel/gpu/limbs.py", "from accel.backends import base", "accel.gpu.limbs -> accel.backends.base"),
    # siblings of one layer are independent
    ("accel/ciphertext.py", "from accel.packed import PackedVector", "accel.ciphertext -> accel.packed"),
    ("accel/packing.py", "from accel import encoding", "accel.packing -> accel.encoding"),
]


@pytest.mark.parametrize("path, statement, chain", UPWARD, ids=[u[2] for u in UPWARD])
def test_the_contract_fails_on_an_upward_import(tmp_path, path, statement, chain):
    tree = lint_imports.stage(tmp_path)
    with open(tree / path, "a") as f:  # function-local, as the ones the review found were
        f.write(f"\n\ndef _upward():\n    {statement}  # noqa\n")
    proc = lint_imports.lint(tree)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 kept, 1 broken" in proc.stdout
    assert chain in proc.stdout


def test_the_core_runs_without_the_service_or_the_benchmarks():
    """At run time too: importing every core module loads neither the service, nor the
    benchmarks, nor gRPC."""
    core = [m for layer in LAYERS[3:] for m in layer]
    code = (f"import sys, importlib\nfor m in {core!r}: importlib.import_module(m)\n"
            "import accel.integrations.phe, accel.integrations.fate1, accel.integrations._batch\n"
            "bad = sorted(m for m in sys.modules\n"
            "             if m.startswith(('accel.service', 'accel.bench', 'accel.cli', 'grpc')))\n"
            "assert not bad, bad\nprint('core ok')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "core ok" in proc.stdout, proc.stderr


# -- private names stay in their module ------------------------------------------------------
# the wheel's package of each source folder
PACKAGE_DIRS = {"accel": ROOT / "accel", "accel.service": ROOT / "service", "accel.bench": ROOT / "bench"}
# (module, name) pairs allowed to cross anyway: none today; an entry needs a reason beside it.
KNOWN_PRIVATE_IMPORTS: set = set()


def _package_dir(path: Path, node: ast.ImportFrom) -> Path | None:
    """The folder of the package that ``node`` imports from (None: outside he-accel)."""
    if node.level:
        folder = path.parent
        for _ in range(node.level - 1):
            folder = folder.parent
        return folder.joinpath(*(node.module or "").split(".")) if node.module else folder
    for name in sorted(PACKAGE_DIRS, key=len, reverse=True):
        if node.module == name or (node.module or "").startswith(name + "."):
            rest = node.module[len(name):].lstrip(".")
            return PACKAGE_DIRS[name].joinpath(*rest.split(".")) if rest else PACKAGE_DIRS[name]
    return None


def private_imports(path: Path, source: str) -> list[str]:
    """The private names (``_x``) that ``source`` imports from another he-accel module. A
    package's private modules (``from . import _gmp_ops``) are the package's own and allowed."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom):
            continue
        folder = _package_dir(path, node)
        if folder is None:
            continue
        for alias in node.names:
            name = alias.name
            if not name.startswith("_") or name.startswith("__"):
                continue
            if (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file():
                continue  # a private module of the package
            found.append(name)
    return found


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for top in PACKAGE_DIRS.values():
        for path in sorted(top.rglob("*.py")):
            if "proto" in path.relative_to(ROOT).parts:
                continue  # generated by grpcio-tools
            rel = path.relative_to(ROOT).as_posix()
            offenders += [(rel, name) for name in private_imports(path, path.read_text())
                          if (rel, name) not in KNOWN_PRIVATE_IMPORTS]
    assert not offenders


def test_a_private_import_across_modules_is_found():
    here = ROOT / "service" / "remote.py"
    assert private_imports(here, "from accel.backends.base import Backend, _need_djn\n") == ["_need_djn"]
    assert private_imports(here, "from .ops import _x\nfrom . import _nothing_here\n") == ["_x", "_nothing_here"]
    assert private_imports(ROOT / "accel" / "backends" / "cpu.py", "from . import _gmp_ops\n") == []
    assert private_imports(ROOT / "accel" / "integrations" / "fate2" / "arithmetic.py",
                           "from .. import _batch\nfrom ..phe import _engine\n") == ["_engine"]
    assert private_imports(here, "from grpc import _channel\n") == []  # not ours


# -- the backend registry --------------------------------------------------------------------
def test_the_checkout_entry_points_are_pyprojects():
    assert _checkout.ENTRY_POINTS == PYPROJECT["project"]["entry-points"]
    # this test runs from a checkout (plain or editable): the fallback is active
    assert _checkout.entry_points("he_accel.backends") == {"remote": "accel.service.remote:make_backend [client]"}
    assert _checkout.entry_points("no.such.group") == {}


def test_remote_resolves_through_its_entry_point(monkeypatch):
    from accel.service import remote

    assert "remote" in backends.backend_names()
    assert backends._factory("remote") is remote.make_backend
    monkeypatch.delenv("HEA_TARGET", raising=False)
    with pytest.raises(BackendUnavailableError, match="HEA_TARGET"):
        backends.get_backend("remote")
    with pytest.raises(BackendUnavailableError, match="HEA_TARGET"):
        backends.get_backend("REMOTE")


def test_a_plugin_with_missing_packages_says_what_to_install(monkeypatch):
    monkeypatch.setitem(_checkout.ENTRY_POINTS, "he_accel.backends",
                        {**_checkout.ENTRY_POINTS["he_accel.backends"],
                         "ghost": "accel_no_such_module.backend:make [ghost, cuda]"})
    assert "ghost" in backends.backend_names()
    with pytest.raises(BackendUnavailableError, match=r"pip install 'he-accel\[ghost, cuda\]'.*accel_no_such_module"):
        backends.get_backend("ghost", target="x")


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="unknown backend 'tpu'; choose from cpu, gpu, auto, remote"):
        backends.get_backend("tpu")


def test_register_backend_shared_and_private_instances(monkeypatch):
    monkeypatch.setattr(backends, "_registered", {})
    monkeypatch.setattr(backends, "_shared", {})
    made = []

    def factory(**kwargs):
        be = CpuBackend(workers=1)
        made.append((be, kwargs))
        return be

    backends.register_backend("Mine", factory)
    try:
        shared = backends.get_backend("mine")
        assert backends.get_backend("MINE") is shared and len(made) == 1
        private = backends.get_backend("mine", workers=1)
        assert private is not shared and made[-1][1] == {"workers": 1}
        assert "mine" in backends.backend_names()
    finally:
        for be, _ in made:
            be.close()
    with pytest.raises(ValueError, match="built-in"):
        backends.register_backend("cpu", factory)
    with pytest.raises(ValueError, match="built-in"):
        backends.register_backend("auto", factory)
    with pytest.raises(TypeError, match="callable"):
        backends.register_backend("other", "not a factory")


def test_the_default_backend_is_one_visible_choice(monkeypatch):
    from accel import EncryptedVector, PackedCodec, generate_keypair

    monkeypatch.setattr(backends, "_default", "auto")
    assert backends.default_backend() is backends.get_backend("auto")
    mine = CpuBackend(workers=1)
    try:
        backends.set_default_backend(mine)
        assert backends.default_backend() is mine
        pk, sk = generate_keypair(512, allow_insecure=True)
        v = EncryptedVector.encrypt(pk, [1.5, -2.0])
        assert v.backend is mine and list(v.decrypt(sk)) == [1.5, -2.0]
        assert PackedCodec(pk, value_bits=16).encrypt_quantised([3, -4]).backend is mine
        other = CpuBackend(workers=1)
        try:  # an explicit backend= still wins
            assert EncryptedVector.encrypt(pk, [1.0], backend=other).backend is other
        finally:
            other.close()
        backends.set_default_backend("CPU")
        assert backends.default_backend() is backends.get_backend("cpu")
    finally:
        mine.close()
    with pytest.raises(ValueError, match="unknown backend"):
        backends.set_default_backend("tpu")
    with pytest.raises(TypeError, match="Backend or a backend name"):
        backends.set_default_backend(42)


def test_the_old_remote_module_is_a_deprecated_alias():
    from accel.service.remote import RemoteBackend

    sys.modules.pop("accel.backends.remote", None)
    with pytest.warns(DeprecationWarning, match="accel.service.remote"):
        old = importlib.import_module("accel.backends.remote")
    assert old.RemoteBackend is RemoteBackend
    sys.modules.pop("accel.backends.remote", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert accel.get_backend is backends.get_backend  # the public names stay where they were
