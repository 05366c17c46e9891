"""FATE 2.x training, stock Paillier vs the he-accel plugin, side by side.

CoordinatedLR and HeteroSecureBoost on scikit-learn's breast-cancer data, three parties in
separate processes (examples/fate2/train.py). The plugin run must give the same model: the
same train AUC and accuracy, and per-sample scores equal within 1e-9 (SecureBoost with a fixed
shuffle seed, since FATE breaks split-gain ties by a random shuffle order). The timings go to
``$HEA_FATE_RESULTS`` (default build/fate2-training.json, so that a test run leaves the committed
records alone; point it at bench/results/ to record a run).
"""
from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fate.arch")
pytest.importorskip("sklearn")

pytestmark = [pytest.mark.fate, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "fate2" / "train.py"
PORTS = iter(range(19100, 19400, 3))


def _run(tmp: Path, model: str, plugin: str, extra: list[str]) -> dict:
    base = next(PORTS)
    out = tmp / f"{model}-{plugin}.json"
    cmd = [sys.executable, str(SCRIPT), "--model", model, "--plugin", plugin, "--backend", "cpu1",
           "--data-dir", str(tmp), "--out", str(out), *extra,
           "--parties", f"guest:{base}", f"host:{base + 1}", f"arbiter:{base + 2}", "--log_level", "WARNING"]
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0 and out.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "train.py: " in proc.stdout and "train AUC" in proc.stdout  # the guest's summary line
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fate2")
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import train  # noqa: PLC0415 - the example's own data split

        train.write_split(str(tmp))
    finally:
        sys.path.remove(str(SCRIPT.parent))
    runs = {}
    for model, extra in (("lr", ["--epochs", "3"]), ("sbt", ["--trees", "2", "--seed", "7"])):
        for plugin in ("stock", "heaccel"):
            runs[(model, plugin)] = _run(tmp, model, plugin, extra)
    record = {
        "device": "cpu (2-core CI/dev machine)" if os.cpu_count() == 2 else f"cpu ({os.cpu_count()} cores)",
        "date": datetime.date.today().isoformat(),
        "command": "bash scripts/test_fate.sh",
        "runs": [{k: v for k, v in r.items() if k != "scores"} for r in runs.values()],
    }
    dest = Path(os.environ.get("HEA_FATE_RESULTS", ROOT / "build" / "fate2-training.json"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(record, indent=1) + "\n")
    return runs


@pytest.mark.parametrize("model", ["lr", "sbt"])
def test_plugin_trains_the_same_model(results, model):
    stock, plugin = results[(model, "stock")], results[(model, "heaccel")]
    assert plugin["train_auc"] == pytest.approx(stock["train_auc"], abs=1e-9)
    assert plugin["train_accuracy"] == pytest.approx(stock["train_accuracy"], abs=1e-9)
    np.testing.assert_allclose(plugin["scores"], stock["scores"], rtol=0, atol=1e-9)
    assert stock["train_auc"] > 0.95  # a real model, not a degenerate one


def test_timings_are_recorded(results):
    for r in results.values():
        assert r["fit_s"] > 0 and r["per_round_s"] == pytest.approx(r["fit_s"] / r["rounds"])
