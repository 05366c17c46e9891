"""The benchmark suite: schema, peers side by side on the same inputs with their results
checked, missing peers reported, the time budget, derived figures labelled, plots, and the GPU
bound model against the figures of performance-anchors.md."""
from __future__ import annotations

import json

import pytest

from accel.bench import bounds, peers, suite
from accel.bench.peers import Inputs, PeerCheckError, PeerUnavailable

SCHEMA = {"device", "backend", "op", "key_bits", "batch", "ops_per_s", "commit", "date", "command"}


def _installed(name):
    try:
        peers.load(name, 512)
        return True
    except PeerUnavailable:
        return False


@pytest.fixture(scope="module")
def result():
    return suite.run_suite(backends=["cpu:1"], peers=["phe", "fate_utils", "heu"],
                           ops=suite.SUITE_OPS, bits_list=[1024], batches=[8, 24], repeats=1,
                           time_budget=600, progress=False)


def test_records_follow_the_schema_and_include_every_installed_peer(result):
    recs = result["records"]
    assert all(SCHEMA <= r.keys() and r["ops_per_s"] > 0 for r in recs)
    backends = {r["backend"] for r in recs}
    assert "cpu x1" in backends and "gmpy2-1core" in backends
    for name in ("phe", "fate_utils", "heu"):
        assert (name in backends) == _installed(name)
        assert (name in backends) != (name in result["missing"])   # measured, or said why not
    ops = {r["op"] for r in recs if r["backend"] == "cpu x1"}
    assert set(suite.SUITE_OPS) <= ops
    # keygen once per key size; matvec counted per element with the batch as rows
    assert len([r for r in recs if r["backend"] == "cpu x1" and r["op"] == "keygen"]) == 1
    mv = [r for r in recs if r["op"] == "matvec"]
    assert mv and all(r["batch"] in (8, 24) for r in mv)


def test_table_shows_ratios_and_reports_missing(result):
    text = suite.table({**result, "missing": {**result["missing"], "imaginary": "not installed"}})
    assert "x base" in text and "encrypt" in text and "imaginary: not installed" in text


def test_json_plot_and_derived(tmp_path, result):
    src = tmp_path / "peers.json"
    src.write_text(json.dumps(result["records"]))
    derived = suite.derive_peers(str(src), cores=16)
    assert derived and all(r["kind"] == "derived" and "DERIVED" in r["note"] and "(derived)" in r["backend"]
                           for r in derived)
    one = next(r for r in result["records"] if r["kind"] == "peer" and r["threads"] == 1)
    twin = next(r for r in derived if r["op"] == one["op"] and r["batch"] == one["batch"]
                and r["backend"].startswith(one["backend"]))
    assert twin["ops_per_s"] == pytest.approx(one["ops_per_s"] * 16, rel=1e-3)
    files = suite.plot(result, str(tmp_path / "plots"))
    assert any("throughput-1024" in f for f in files) and any("speedup-1024" in f for f in files)
    assert all((tmp_path / "plots" / f.split("/")[-1]).stat().st_size > 10_000 for f in files)


def test_time_budget_skips_and_says_so():
    res = suite.run_suite(backends=["cpu:1"], peers=["phe"], ops=["encrypt"], bits_list=[1024],
                          batches=[4, 4000], repeats=1, time_budget=0.5, progress=False)
    assert any(s["op"] == "encrypt" and s["batch"] == 4000 for s in res["skipped"])
    assert "skipped over the time budget" in suite.table(res)


def test_a_peer_that_computes_wrongly_fails_the_check():
    p = peers.load("phe", 512)
    inp = Inputs.random(6)
    fn, verify = p.op("add", inp)
    out = fn()
    verify(out)
    with pytest.raises(PeerCheckError):   # E(x)^2 = E(2x): every element now wrong
        verify([c * c % p.pub.nsquare for c in out])


def test_cli_runs_the_suite(tmp_path, capsys):
    from accel.cli import main
    path = tmp_path / "s.json"
    assert main(["bench", "--backends", "cpu:1", "--peers", "phe", "--bits", "1024", "--batch", "8",
                 "--repeats", "1", "--ops", "encrypt,decrypt,add", "--json", str(path), "--no-progress"]) == 0
    recs = json.loads(path.read_text())
    assert {r["backend"] for r in recs} >= {"cpu x1", "phe"}
    assert main(["bench", "--peers", "nonesuch"]) == 2
    # an earlier run re-rendered, nothing measured
    capsys.readouterr()
    assert main(["bench", "--from-json", str(path), "--plot", str(tmp_path / "p")]) == 0
    assert "x base" in capsys.readouterr().out and (tmp_path / "p" / "throughput-1024.png").exists()


def test_bound_model_matches_the_anchor_table():
    # performance-anchors.md, 2048-bit key, sqr = mul column: 155M and 39M IMAD
    assert bounds.imad_per_op("encrypt", 2048) == pytest.approx(155e6, rel=0.01)
    assert bounds.imad_per_op("decrypt", 2048) == pytest.approx(39e6, rel=0.02)
    assert bounds.imad_per_op("add", 2048) == 65536
    h100 = {"imad_per_s": 132 * 64 * 1.98e9}
    assert bounds.bound_ops_per_s(h100, "encrypt", 2048) == pytest.approx(108e3, rel=0.01)
    assert bounds.bound_ops_per_s(h100, "decrypt", 2048) == pytest.approx(425e3, rel=0.02)
    assert bounds.bound_ops_per_s(None, "encrypt", 2048) is None


def test_end_to_end_bench_same_model_and_reports_missing(tmp_path):
    import subprocess
    import sys
    pytest.importorskip("sklearn")
    out = tmp_path / "e2e.json"
    proc = subprocess.run([sys.executable, "-m", "accel.bench.e2e", "--data", "breast_cancer", "--epochs", "1",
                           "--engines", "phe", "accel:cpu", "accel:cpu+djn", "nonesuch_gpu:gpu", "accel:cpu+nope",
                           "--workers", "1", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    got = {r["backend"]: r for r in doc["records"]}
    assert set(got) == {"phe", "accel:cpu", "accel:cpu+djn"}
    assert {"nonesuch_gpu:gpu", "accel:cpu+nope"} <= set(doc["missing"])
    for r in got.values():
        assert r["same_model"] and r["max_abs_dw"] < 1e-6 and SCHEMA <= r.keys()
    assert got["accel:cpu"]["speedup_vs_phe"] > 0


def test_remote_backend_through_a_service_started_for_the_run():
    res = suite.run_suite(backends=["remote:cpu"], peers=[], ops=["encrypt", "add", "decrypt"], bits_list=[1024],
                          batches=[8], repeats=1, time_budget=600, progress=False)
    got = {(r["backend"], r["op"]) for r in res["records"] if r["kind"] == "ours"}
    assert got == {("remote", "encrypt"), ("remote", "add"), ("remote", "decrypt")}, res["missing"]


def test_time_budget_estimates_a_new_key_size_from_a_smaller_one():
    t = suite.Target("phe", "peer", lambda: None)
    assert suite._estimate(t, "encrypt", 2048, 1024, 3) is None        # nothing measured yet: run it
    t.rates[("encrypt", 1024)] = [(64, 100.0), (256, 120.0)]
    t.rates[("add", 1024)] = [(256, 1000.0)]
    t.rates[("matvec", 1024)] = [(256, 800.0)]
    # same key size: from the largest smaller batch; warm-up + 3 repeats
    assert suite._estimate(t, "encrypt", 1024, 1024, 3) == pytest.approx(1024 / 120 * 4)
    # a larger key: exponentiations scale as bits^3, multiplications as bits^2
    assert suite._estimate(t, "encrypt", 2048, 1024, 3) == pytest.approx(1024 / (120 / 8) * 4)
    assert suite._estimate(t, "add", 2048, 1024, 3) == pytest.approx(1024 / (1000 / 4) * 4)
    # matvec rates count element products: a batch of rows costs rows x columns
    assert suite._estimate(t, "matvec", 1024, 512, 1, per_row=8) == pytest.approx(512 * 8 / 800 * 2)
    assert suite._estimate(t, "keygen", 4096, 1, 3) is None             # never skipped
    assert suite._estimate(t, "encrypt", 512, 1024, 3) is None          # no smaller key to scale from


def test_a_batch_over_budget_skips_every_larger_one():
    t = suite.Target("phe", "peer", lambda: None)
    t.rates[("encrypt", 1024)] = [(64, 10.0)]
    assert suite._over_budget(t, "encrypt", 1024, 128, 3, 1, budget=100.0) is None      # ~51 s
    assert "budget" in suite._over_budget(t, "encrypt", 1024, 256, 3, 1, budget=100.0)  # ~102 s
    # a larger batch with no rate of its own at a smaller size is still skipped
    t.rates.clear()
    assert "already over" in suite._over_budget(t, "encrypt", 1024, 1024, 3, 1, budget=100.0)


def test_a_capped_peer_skipped_at_the_cap_is_reported_once():
    res = suite.run_suite(backends=[], peers=["phe"], ops=["encrypt"], bits_list=[1024],
                          batches=[2, 8, 16, 32], repeats=1, time_budget=1e-4, peer_max_batch=8, progress=False)
    skips = [(s["backend"], s["batch"]) for s in res["skipped"] if s["op"] == "encrypt"]
    assert skips == [("phe", 8)]


def test_cpu_clock_measures_one_process_only():
    """--clock cpu times this process: a pool's workers would be left out, so it is refused."""
    from accel.bench.suite import run_suite

    with pytest.raises(ValueError, match="cpu:1"):
        run_suite(backends=["cpu:2"], peers=[], ops=["add"], bits_list=[1024], batches=[8], repeats=1,
                  time_budget=10, progress=False, clock="cpu")
    recs = run_suite(backends=["cpu:1", "cpu:1:gmpy2", "cpu:1:mpn", "cpu:1:ctypes"], peers=[], ops=["add"],
                     bits_list=[1024], batches=[8], repeats=1, time_budget=10, progress=False, clock="cpu")["records"]
    assert {r["backend"] for r in recs} >= {"cpu x1", "cpu x1 gmpy2", "cpu x1 mpn", "cpu x1 ctypes"}
    assert {r["clock"] for r in recs} == {"cpu"} and all("load_avg_1m" in r for r in recs)


def test_packed_ops_measure_our_packed_form_against_the_peers_own_vectors():
    """add_packed, add_plain_packed, sum_packed: our backends on packed blobs in and out (checked
    like every op), the peers' same ops on their own vectors, recorded under the packed op's name."""
    ops = ["add", "add_packed", "add_plain_packed", "sum_packed"]
    res = suite.run_suite(backends=["cpu:1"], peers=["phe", "fate_utils"], ops=ops, bits_list=[1024],
                          batches=[9], repeats=1, time_budget=600, progress=False, clock="cpu")
    recs = res["records"]
    ours = {r["op"] for r in recs if r["backend"] == "cpu x1"}
    assert ours >= set(ops)
    for r in recs:
        if r["backend"] == "cpu x1" and r["op"].endswith("_packed"):
            assert "packed blobs in and out" in r["note"]
    installed = [p for p in ("phe", "fate_utils") if p not in res["missing"]]
    for name in installed:
        got = {r["op"]: r["note"] for r in recs if r["backend"] == name}
        assert set(got) == set(ops)
        assert "its add on its own vectors" in got["add_packed"] and "its sum" in got["sum_packed"]
    assert "add_plain_packed" in suite.table(res)
