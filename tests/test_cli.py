import json

import pytest

from accel.cli import main


def test_demo_runs_and_checks_itself(capsys):
    assert main(["demo", "--backend", "cpu", "--bits", "1024", "--size", "24", "--cols", "3"]) == 0
    out = capsys.readouterr().out
    assert "all results match" in out and "MISMATCH" not in out
    assert "running on backend cpu (workers" in out
    # the pooled rate comes with the precomputation it leaves out, and their total
    assert "pool: precompute r^n" in out and "(precompute + encrypt)" in out


def test_demo_auto_names_the_backend_it_chose(capsys):
    from accel import BackendUnavailableError, get_backend

    try:
        get_backend("gpu")
        want = "running on backend gpu"
    except BackendUnavailableError:
        want = "running on backend cpu (workers"
    assert main(["demo", "--backend", "auto", "--bits", "1024", "--size", "8", "--cols", "2"]) == 0
    out = capsys.readouterr().out
    assert want in out and ("'auto' found no usable GPU" in out) == want.endswith("(workers")


def test_bench_writes_records_in_the_schema(tmp_path, capsys):
    path = tmp_path / "bench.json"
    rc = main(["bench", "--backend", "cpu", "--bits", "1024", "--batch", "16", "--repeats", "1",
               "--workers", "2", "--ops", "all", "--json", str(path)])
    assert rc == 0
    recs = json.loads(path.read_text())
    ops = {r["op"] for r in recs}
    assert {"encrypt", "decrypt", "add", "mul", "sum", "matvec", "powmod_1core"} <= ops
    for r in recs:
        assert {"device", "backend", "op", "key_bits", "batch", "ops_per_s", "commit", "date",
                "command"} <= r.keys()
        assert r["ops_per_s"] > 0 and r["key_bits"] == 1024
    out = capsys.readouterr().out
    assert "CRT decrypt" in out and "single-core powmod" in out


def test_bench_rejects_unknown_ops(capsys):
    assert main(["bench", "--ops", "encrypt,teleport"]) == 2


def test_service_demo_names_the_backend_the_server_runs(capsys):
    pytest.importorskip("grpc")
    assert main(["service-demo", "--backend", "cpu", "--bits", "1024", "--size", "16", "--cols", "2"]) == 0
    out = capsys.readouterr().out
    assert "the service computes on backend cpu" in out and "all results match" in out
    assert "found no usable GPU" not in out  # cpu was asked for: nothing fell back


def test_health_probes_the_address_serve_listens_on_by_default():
    from accel.cli import build_parser
    from accel.service.config import config_from_args

    parser = build_parser()
    serving = config_from_args(parser.parse_args(["serve"]), env={})
    assert parser.parse_args(["health"]).address == serving.address == "127.0.0.1:50051"
