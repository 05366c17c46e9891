"""Installing he-accel as the README says, into fresh venvs with the pip that Python brings.

A copy of the checkout's files stands in for a fresh clone. The README's install lines run as
written there (see tests/test_readme.py, COMMANDS), then the installed names are checked: one
top-level package, ``accel``; ``service/`` and ``bench/`` as ``accel.service`` and ``accel.bench``
and under no other name, in a wheel and in an editable checkout alike.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEEL = "dist/he_accel-0.1.0-py3-none-any.whl"

# Run in the new venv from a folder outside the clone: the modules have their one name, the
# service and the benchmarks import, and no generic top-level name exists.
NAMES_CHECK = """
import importlib.util, sys
import accel, accel.service.errors, accel.service.server, accel.service.client, accel.bench.suite
import accel.bench.service_demo, accel.service.remote
from accel.backends import _factory
assert _factory("remote") is accel.service.remote.make_backend  # the he_accel.backends entry point
assert importlib.util.find_spec("service") is None and importlib.util.find_spec("bench") is None
assert not [m for m in sys.modules if m.split(".")[0] in ("service", "bench")]
from accel.service import client, errors
assert client.InvalidArgument is errors.InvalidArgument  # one class, one module
print("names ok", accel.__file__)
"""
# From a checkout (or with it on PYTHONPATH) the folders `service` and `bench` are findable as
# top-level names; importing them under those names must fail instead (the guards).
NAMES_CHECK_IN_CHECKOUT = NAMES_CHECK.replace(
    'assert importlib.util.find_spec("service") is None and importlib.util.find_spec("bench") is None\n', "")
assert NAMES_CHECK_IN_CHECKOUT != NAMES_CHECK


def _clone(tmp: Path) -> Path:
    """The checkout's tracked and untracked-but-not-ignored files: what a fresh clone holds."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    dest = tmp / "clone"
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    return dest


def _venv(path: Path) -> dict[str, str]:
    """A fresh venv with the pip that Python's ensurepip brings; env with it first on PATH."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(path)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{path / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def _sh(cmd: str, cwd: Path, env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _no_packaging_warnings(proc: subprocess.CompletedProcess) -> None:
    # A current pip (as scripts/*.sh install) shows the build backend's warnings; ours must have
    # none but setuptools' fixed note on every editable install of a non-src layout.
    lines = (proc.stdout + proc.stderr).splitlines()
    warnings = [x for x in lines if re.search(r"\w+Warning: ", x) and "Editable installation" not in x]
    assert not warnings and not [x for x in lines if "absent from the `packages`" in x], "\n".join(lines[-80:])


def _serve_starts(env: dict[str, str], cwd: Path) -> None:
    proc = subprocess.Popen(["he-accel", "serve", "--address", "127.0.0.1:0", "--backend", "cpu"], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, line = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "serving on port" not in line:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
        assert "serving on port" in line, proc.stderr.read()[-3000:] if proc.poll() is not None else line
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_a_checkout_refuses_the_second_name():
    # From the repository root, `service` and `bench` are folders on sys.path; importing them
    # under that name would load a second copy of every module.
    for name, one in (("service", "accel.service"), ("bench", "accel.bench")):
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode != 0 and f"import this package as {one}, not {name}" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", NAMES_CHECK_IN_CHECKOUT], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "names ok" in proc.stdout, proc.stderr[-3000:]


def test_a_plain_checkout_has_the_same_names(tmp_path):
    # No install at all, as the device machine runs a copy of the tree: PYTHONPATH is the copy.
    clone = _clone(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(clone)}
    proc = subprocess.run([sys.executable, "-c", NAMES_CHECK_IN_CHECKOUT], cwd=clone, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and f"names ok {clone / 'accel'}" in proc.stdout, proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-c", "import accel.service.errors as e; print(e.__file__)"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.stdout.strip() == str(clone / "service" / "errors.py"), proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-m", "accel.cli", "bench", "--help"], cwd=clone, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "--backends" in proc.stdout, proc.stderr[-3000:]
    for name in ("service", "bench"):
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=clone, env=env, capture_output=True,
                              text=True)
        assert proc.returncode != 0 and f"import this package as accel.{name}" in proc.stderr


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_name_with_stock_pip(tmp_path):
    clone = _clone(tmp_path)
    env = _venv(tmp_path / "venv")
    pip = _sh("pip --version", clone, env).stdout
    # the README's lines, as written (pip 23.2 hides the backend's output; the editable test
    # below checks it with a current pip)
    _sh("pip wheel --no-deps -w dist .", clone, env)
    _sh(f"pip install '{WHEEL}[service]'", clone, env)
    record = next((tmp_path / "venv").glob("lib/python*/site-packages/he_accel-*.dist-info/RECORD")).read_text()
    tops = {line.split("/")[0] for line in record.splitlines() if line and not line.startswith("..")}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"accel"}, (tops, pip)
    for folder in ("accel/service/proto/heaccel/v1/heaccel.proto", "accel/bench/suite.py", "accel/kernels/host/emulator.cpp",
                   "accel/backends/gmp_batch.c", "accel/backends/djn_ifma.c", "accel/backends/gmp_pyints.c"):
        assert folder in record
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert "names ok" in _sh(f"python -c '{NAMES_CHECK}'", outside, env).stdout
    # the CPU backend's native engine builds from the wheel's copy of its source
    native = _sh("python -c 'from accel import CpuBackend; print(CpuBackend(workers=1).describe())'", outside,
                 {**env, "HEA_CACHE_DIR": str(tmp_path / "cache")}).stdout
    assert "gmp_batch-" in native and "'native_unavailable': None" in native, native
    assert "_hea_pyints-" in native and "'native_ints_unavailable': None" in native, native
    assert "serve" in _sh("he-accel --help", outside, env).stdout
    _serve_starts(env, outside)
    # every extra resolves with this pip (23.2 on Python 3.11): pre-release peers are pinned
    _sh("pip install --dry-run -q '.[gpu,client,service,bench,test]'", clone, env)


@pytest.mark.slow
def test_the_editable_install_of_a_clone_has_the_same_names(tmp_path):
    clone = _clone(tmp_path)
    env = _venv(tmp_path / "venv")
    _sh("python -m pip install -q --upgrade pip", clone, env)  # as scripts/demo.sh and test.sh do
    _no_packaging_warnings(_sh("pip install -e '.[service]'", clone, env))  # the README's line
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert str(clone / "accel") in _sh(f"python -c '{NAMES_CHECK}'", outside, env).stdout
    proc = subprocess.run(["python", "-c", "import service"], cwd=clone, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "import this package as accel.service" in proc.stderr
    assert "serve" in _sh("he-accel --help", outside, env).stdout
    _serve_starts(env, clone)
