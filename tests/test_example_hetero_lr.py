"""examples/hetero_lr.py: three party processes, encrypted gradients; the model must be the
one plaintext training gives (the example's own --check), on our CPU backend, on the offload
service (key generated and kept there), and with stock python-paillier."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "hetero_lr.py"


def _run(tmp_path, *args):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--epochs", "2", "--check", "--json", str(out), *args],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "same model" in proc.stdout, proc.stdout
    enc, plain = json.loads(out.read_text())
    assert plain["engine"] == "plain"
    assert enc["loss"][-1] < enc["loss"][0] < 0.7   # it learns: log 2 = 0.693 at w = 0
    assert enc["auc"] > 0.95 and len(enc["sec_per_epoch"]) == 2
    return enc


def test_cpu_backend_trains_the_plaintext_model(tmp_path):
    enc = _run(tmp_path, "--workers", "1")
    assert enc["backend"] == "accel-cpu"


def test_djn_encryption_with_the_pool_trains_the_plaintext_model(tmp_path):
    enc = _run(tmp_path, "--djn", "--workers", "2")
    assert enc["backend"] == "accel-cpu-djn"


def test_minibatches_through_the_offload_service(tmp_path, service_server):
    enc = _run(tmp_path, "--backend", "remote", "--target", f"127.0.0.1:{service_server.port}",
               "--batch-size", "200")
    assert enc["backend"] == "accel-remote" and enc["config"]["batch_size"] == 200


def test_stock_phe_baseline_trains_the_same_model(tmp_path):
    pytest.importorskip("phe")
    enc = _run(tmp_path, "--engine", "phe")
    assert enc["backend"] == "phe"
