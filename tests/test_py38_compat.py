"""The parts FATE 1.x loads (its interpreter is Python 3.8): the library, the FATE 1.x plugin
and the gRPC client stay 3.8-compatible. CI runs a newer Python, so this is static: vermin
(stdlib and syntax by version), vermin again with annotations evaluated for modules that lack
``from __future__ import annotations``, and the 3.9+ keyword arguments vermin cannot see on an
instance (``executor.shutdown(cancel_futures=...)``) only behind a ``sys.version_info`` test."""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# what ``accel.service.client`` loads: the package, the client and its modules, the generated code
SCOPE = ["accel", "service/__init__.py", "service/client.py", "service/call_core.py", "service/plans.py",
         "service/channel.py", "service/remote_keys.py", "service/errors.py", "service/codec.py", "service/ops.py",
         "service/proto"]
TARGET = "3.8-"
# keyword arguments added after 3.8 to methods vermin cannot resolve on an instance
NEWER_KEYWORDS = {"cancel_futures": "3.9"}


def _files() -> list[Path]:
    out: list[Path] = []
    for entry in SCOPE:
        p = ROOT / entry
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return out


def _vermin(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    if exe is None:
        pytest.fail("vermin is not installed (it is in the test extra)")
    return subprocess.run([exe, f"--target={TARGET}", "--violations", "--no-tips", "--no-parse-comments",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_library_plugin_and_client_need_nothing_newer_than_python_38():
    res = _vermin(*SCOPE)
    assert res.returncode == 0, res.stdout + res.stderr


def test_modules_without_postponed_annotations_use_no_newer_annotation_syntax():
    plain = [str(p.relative_to(ROOT)) for p in _files()
             if "from __future__ import annotations" not in p.read_text()]
    assert plain, "expected some modules without the __future__ import (package __init__s, generated code)"
    res = _vermin("--eval-annotations", *plain)
    assert res.returncode == 0, res.stdout + res.stderr


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "version_info" in ast.dump(node.test):
            return True
    return False


def test_newer_keyword_arguments_only_behind_a_version_test():
    unguarded = []
    for path in _files():
        tree = ast.parse(path.read_text(), str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg in NEWER_KEYWORDS and not _guarded(node, parents):
                        unguarded.append(f"{path.relative_to(ROOT)}:{node.lineno} {kw.arg}= "
                                         f"(Python {NEWER_KEYWORDS[kw.arg]}+)")
    assert not unguarded, unguarded


def test_the_package_declares_python_38():
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^requires-python = ">=3\.8"$', text, re.M)


def _python38() -> str | None:
    """A working 3.8 interpreter: pyenv's build first (pyenv's shims may point elsewhere)."""
    candidates = [str(p) for p in sorted(Path.home().glob(".pyenv/versions/3.8*/bin/python3.8"))]
    candidates += [c for c in [shutil.which("python3.8")] if c]
    for exe in candidates:
        try:
            ok = subprocess.run([exe, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                                capture_output=True, timeout=60).returncode == 0
        except OSError:
            ok = False
        if ok:
            return exe
    return None


@pytest.mark.skipif(_python38() is None, reason="no Python 3.8 interpreter on this machine")
def test_the_wheel_runs_the_library_and_the_fate1_plugin_on_python_38(tmp_path):
    """A real 3.8: the wheel built here (pure Python) installs there, and the encoding, key and
    FATE 1.x plugin tests pass on it against the installed package (not this checkout)."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("he_accel-*.whl"))
    venv = tmp_path / "venv38"
    subprocess.run([_python38(), "-m", "venv", str(venv)], check=True, timeout=300)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", f"{wheel}[client]", "pytest", "hypothesis", "cloudpickle"],
                   check=True, capture_output=True, timeout=900)
    # the tests beside the project's pytest settings, away from the checkout's accel/
    work = tmp_path / "work"
    shutil.copytree(ROOT / "tests", work / "tests", ignore=shutil.ignore_patterns("__pycache__", "fate", "gpu"))
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    run = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_integration_fate1.py",
                          "tests/test_encoding.py", "tests/test_keys.py"], cwd=work, capture_output=True,
                         text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    where = subprocess.run([py, "-c", "import accel, sys; print(accel.__file__, sys.version_info[:2])"],
                           cwd=work, capture_output=True, text=True, check=True).stdout
    assert "site-packages" in where and "(3, 8)" in where
