"""scripts/gpu_checks.sh stops loudly, before any phase, when the device run cannot be trusted:
no carried wheels, wheels that do not install, no GPU. (Its phases need a GPU: tests/gpu.)"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_checks.sh"


def run_checks(tmp_path: Path, wheels: Path) -> tuple[int, str]:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "HEA_WHEEL_DIR": str(wheels), "HEA_SITE_DIR": str(tmp_path / "site"),
           # this interpreter as python3; no nvidia-smi on the PATH (as on a machine without a GPU)
           "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    failed = (out / "FAILED.txt").read_text() if (out / "FAILED.txt").exists() else ""
    return proc.returncode, failed


def tiny_wheel(tmp_path: Path) -> Path:
    """A real, installable pure-Python wheel of one module (zipfile: no build backend needed)."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    info = "hea_probe-1.dist-info"
    files = {
        "hea_probe/__init__.py": "VALUE = 1\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: hea-probe\nVersion: 1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(wheels / "hea_probe-1-py3-none-any.whl", "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr(f"{info}/RECORD", record)
    return wheels


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU machine: the script would go on")
def test_no_wheels_no_install_no_gpu_each_stop_the_script(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, failed = run_checks(tmp_path, empty)
    assert rc == 1 and "no wheels" in failed

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "gmpy2-2.3.2-cp312-cp312-manylinux_2_17_x86_64.whl").write_bytes(b"not a zip file")
    rc, failed = run_checks(tmp_path, broken)
    assert rc == 1 and "installing the carried wheels failed" in failed

    rc, failed = run_checks(tmp_path, tiny_wheel(tmp_path))
    assert rc == 1 and "no GPU" in failed, failed
