import json

from accel.cli import main


def test_demo_runs_and_checks_itself(capsys):
    assert main(["demo", "--backend", "cpu", "--bits", "1024", "--size", "24", "--cols", "3"]) == 0
    out = capsys.readouterr().out
    assert "all results match" in out and "MISMATCH" not in out


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
