"""FATE 2.x activation through FATE's own configuration (accel.integrations.fate2_activation).

A job that never imports he-accel (tests/fate/auto_activation_job.py), run through FATE's
multiprocess launcher with three parties on seeded synthetic data (600 x 30): a CUDA task, or kind "heaccel", is served by
he-accel in every party (here the CPU backend, with the warning, since there is no GPU and no
HEA_TARGET); a CPU task with kind "paillier" stays on stock FATE. All give the same model.
The in-process tests cover the engine order and the opt-out.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fate.arch")
pytest.importorskip("sklearn")

pytestmark = pytest.mark.fate

ROOT = Path(__file__).resolve().parents[2]
JOB = Path(__file__).with_name("auto_activation_job.py")
PORTS = iter(range(19400, 19500, 3))


def _hook_installed() -> bool:
    out = subprocess.run([sys.executable, "-c", "import sys; print(any(getattr(f, 'he_accel_fate2_hook', False) "
                          "for f in sys.meta_path))"], capture_output=True, text=True, env=_env())
    return out.stdout.strip() == "True"


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEA_")}
    env.update(extra)
    return env


def _run(tmp: Path, mode: str, **env) -> dict:
    base = next(PORTS)
    out = tmp / f"out-{mode}-{base}"
    out.mkdir()
    cmd = [sys.executable, str(JOB), "--mode", mode, "--data-dir", str(tmp), "--out-dir", str(out),
           "--parties", f"guest:{base}", f"host:{base + 1}", f"arbiter:{base + 2}", "--log_level", "WARNING"]
    log = out / "log.txt"
    with open(log, "w") as f:  # a file, not a pipe: a lingering grandchild cannot hold the run open
        proc = subprocess.run(cmd, cwd=tmp, stdout=f, stderr=subprocess.STDOUT, timeout=600, env=_env(**env))
    text = log.read_text()
    reports = {p.stem.split("-")[-1]: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert proc.returncode == 0 and set(reports) == {"guest", "host", "arbiter"}, text[-5000:]
    return {"reports": reports, "log": text}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not _hook_installed():
        pytest.fail("he_accel_fate2.pth is not in this environment's site-packages "
                    "(python -m accel.integrations.fate2_activation enable; scripts/test_fate.sh runs it)")
    tmp = tmp_path_factory.mktemp("fate2-activation")
    # not examples/fate2/train.py's split: importing that script installs the plugin in this process
    from accel.bench.fate2_scale import write_synthetic  # noqa: PLC0415

    write_synthetic(tmp, 600, seed=11)
    return {mode: _run(tmp, mode) for mode in ("cuda", "kind", "cpu")}


@pytest.mark.parametrize("mode", ["cuda", "kind"])
def test_a_cuda_task_or_kind_heaccel_is_served_by_heaccel_in_every_party(runs, mode):
    reports = runs[mode]["reports"]
    for role, r in reports.items():
        assert r["installed"], f"{mode}: he-accel did not serve the {role}"
        assert r["engine"] == "cpu1"  # no GPU, no HEA_TARGET on this machine: the in-process CPU backend
    # the CPU fallback says so (FATE's logger prints our warning)
    assert "no GPU here" in " ".join(runs[mode]["log"].split())  # rich wraps lines


def test_a_cpu_paillier_task_stays_on_stock_fate(runs):
    for r in runs["cpu"]["reports"].values():
        assert not r["installed"] and r["engine"] is None


def test_this_process_was_left_alone(runs):
    from accel.integrations import fate2

    assert not fate2.installed()


@pytest.mark.parametrize("mode", ["cuda", "kind"])
def test_same_model_as_stock(runs, mode):
    ours, stock = runs[mode]["reports"]["guest"]["scores"], runs["cpu"]["reports"]["guest"]["scores"]
    np.testing.assert_allclose(ours, stock, rtol=0, atol=1e-9)


# -- in process ----------------------------------------------------------------------------------
def test_engine_order(monkeypatch, caplog):
    from accel.integrations import fate2_activation as act

    for k in ("HEA_FATE_BACKEND", "HEA_TARGET"):
        monkeypatch.delenv(k, raising=False)
    with caplog.at_level(logging.WARNING, logger=act.__name__):
        assert act.select_engine() == "cpu1"  # no CuPy in this environment
    assert "no GPU here" in caplog.text
    monkeypatch.setenv("HEA_TARGET", "127.0.0.1:1")
    assert act.select_engine() == "remote"
    monkeypatch.setenv("HEA_FATE_BACKEND", "gpu")
    assert act.select_engine() == "gpu"


def test_opt_out_leaves_stock_fate():
    code = ("import sys; import fate.arch.context._cipher as c; "
            "print(c.CipherKit.set_phe.__module__)")
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env())
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(HEA_FATE_AUTO="0"))
    assert on.stdout.strip() == "accel.integrations.fate2_activation", on.stderr[-2000:]
    assert off.stdout.strip() == "fate.arch.context._cipher", off.stderr[-2000:]


def test_unknown_kinds_still_fail_as_in_stock_fate():
    from fate.arch.context import Context

    from accel.integrations import fate2_activation as act

    act.patch_cipher_kit()
    ctx = Context()
    ctx.cipher.set_phe(ctx.device, {"kind": "nonsense", "key_length": 1024})
    with pytest.raises(ValueError, match="Unknown PHE keygen kind"):
        ctx.cipher.phe.setup()
