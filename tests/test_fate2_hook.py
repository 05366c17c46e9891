"""The FATE 2.x start-up hook (accel/integrations/_fate2_hook.py, loaded by the line that
``python -m accel.integrations.fate2_activation enable`` writes into he_accel_fate2.pth) without
FATE: a stand-in ``fate.arch.context._cipher`` on a temporary path shows that the .pth line
imports nothing of accel, that the hook patches FATE's cipher kit only when that module is
imported, and that it is off with HEA_FATE_AUTO=0. The real thing runs through FATE's launcher
in tests/fate."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from accel.integrations.fate2_activation import PTH_LINE

ROOT = Path(__file__).resolve().parents[1]

STAND_IN = '''
class CipherKit:
    def __init__(self, device):
        self._device, self._cipher_mapping = device, {}
    def set_phe(self, device, options):
        self._cipher_mapping.setdefault("phe", {})[device] = options
    def _set_default_phe(self):
        pass
    @property
    def phe(self):
        return PHECipherBuilder(None, **self._cipher_mapping["phe"][self._device])

class PHECipherBuilder:
    def __init__(self, ctx, kind, key_length):
        self.ctx, self.kind, self.key_length = ctx, kind, key_length
    def setup(self, options=None):
        return ("stock", (options or {}).get("kind", self.kind))
'''


@pytest.fixture
def stand_in(tmp_path):
    pkg = tmp_path / "fate" / "arch" / "context"
    pkg.mkdir(parents=True)
    for d in (tmp_path / "fate", tmp_path / "fate" / "arch", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "_cipher.py").write_text(STAND_IN)
    return tmp_path


def _run(path: Path, code: str, **env) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("HEA_")}
    full.update(env, PYTHONPATH=os.pathsep.join([str(path), str(ROOT)]))
    proc = subprocess.run([sys.executable, "-c", PTH_LINE + code],
                          capture_output=True, text=True, env=full, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip()


def test_the_hook_patches_fates_cipher_kit_on_import(stand_in):
    out = _run(stand_in, "import sys\n"
                         "print('accel' in sys.modules)\n"
                         "import fate.arch.context._cipher as c\n"
                         "print(c.CipherKit.set_phe.__module__)\n"
                         "kit = c.CipherKit('cpu'); kit.set_phe('cpu', {'kind': 'paillier', 'key_length': 1024})\n"
                         "print(kit.phe.setup())")
    lazy, patched, setup = out.splitlines()
    assert lazy == "False"  # nothing of he-accel is imported before FATE is
    assert patched == "accel.integrations.fate2_activation"
    assert setup == "('stock', 'paillier')"  # a CPU paillier task stays stock


def test_the_hook_is_off_with_hea_fate_auto_0(stand_in):
    out = _run(stand_in, "import fate.arch.context._cipher as c\nprint(c.CipherKit.set_phe.__module__)",
               HEA_FATE_AUTO="0")
    assert out == "fate.arch.context._cipher"


def test_other_imports_are_untouched(stand_in):
    out = _run(stand_in, "import json, fate.arch\nimport sys\nprint(type(sys.meta_path[0]).__name__)\n"
                         "print('accel' in sys.modules)")
    assert out.splitlines() == ["_Finder", "False"]
