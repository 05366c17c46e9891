"""bench/fate2_scale.py at a small size: the machinery of the at-scale FATE benchmark (seeded
synthetic data, both models through FATE's launcher, stock vs plugin, the Paillier profile and
the same-model check) within CI's budget. The full size is a benchmark command, not a test."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("fate.arch")

from accel.bench import fate2_scale  # noqa: E402

pytestmark = pytest.mark.fate

# ops SecureBoost's host runs on ciphertexts: each must be a bounded number of whole-vector
# backend calls, not one per element
BATCHED = ("i_update_with_masks", "intervals_sum_with_step", "chunking_cumsum_with_step", "pack_squeeze",
           "i_shuffle", "intervals_slice", "i_add", "i_sub")


def test_synthetic_data_is_seeded_and_split(tmp_path):
    import pandas as pd

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    info = fate2_scale.write_synthetic(a, 500, seed=3)
    fate2_scale.write_synthetic(b, 500, seed=3)
    assert (a / "guest.csv").read_bytes() == (b / "guest.csv").read_bytes()
    guest, host = pd.read_csv(a / "guest.csv"), pd.read_csv(a / "host.csv")
    assert list(guest.columns) == ["id", "y"] + [f"x{i}" for i in range(10)]
    assert list(host.columns) == ["id"] + [f"x{i}" for i in range(10, 30)]
    assert len(guest) == len(host) == 500 and (guest["id"] == host["id"]).all()
    assert 0.3 < info["positive_rate"] < 0.7


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("scale") / "scale.json"
    rc = fate2_scale.main(["--samples", "400", "--key-size", "1024", "--trees", "1", "--epochs", "1",
                           "--models", "sbt", "lr", "--configs", "stock", "heaccel:cpu1", "heaccel:cpu1+djn",
                           "--timeout", "900",
                           "--json", str(out)])
    rec = json.loads(out.read_text())
    rec["rc"] = rc
    return rec


def test_same_model_and_timings(record):
    assert record["rc"] == 0
    rows = {(r["model"], r["config"]): r for r in record["rows"]}
    assert set(rows) == {(m, c) for m in ("sbt", "lr") for c in ("stock", "heaccel:cpu1", "heaccel:cpu1+djn")}
    for r in rows.values():
        assert r["same_model_as_stock"], r["config"]
        assert r["per_round_s"] > 0 and r["train_auc"] > 0.7
        # every party that holds ciphertexts spent measurable time in PHE calls
        assert r["phe_s_by_role"].get("guest", 0) > 0 and r["phe_s_by_role"].get("host", 0) > 0
    assert rows[("sbt", "stock")]["round"] == "tree" and rows[("lr", "stock")]["round"] == "epoch"


def test_secureboost_guest_encrypts_per_partition_not_per_sample(record):
    rows = {r["config"]: r for r in record["rows"] if r["model"] == "sbt"}
    samples = record["data"]["samples"]
    stock = rows["stock"]["ops"]["encrypt_encoded"]
    assert stock["calls"] == stock["elems"] == samples  # FATE's own loop: one call per sample
    for config in ("heaccel:cpu1", "heaccel:cpu1+djn"):
        ours = rows[config]["ops"]["encrypt_encoded"]
        # one call per partition of the guest's frame (FATE's default: a handful), all samples
        assert ours["elems"] == ours["backend_elems"] == samples, (config, ours)
        assert ours["calls"] == ours["backend_calls"] <= 16, (config, ours)
        assert rows[config]["ops"]["pack_floats"]["calls"] == ours["calls"]


def test_config_options():
    assert fate2_scale.config_options("heaccel:cpu1+djn") == ("heaccel:cpu1", {"HEA_FATE_DJN": "1"})
    assert fate2_scale.config_options("heaccel:cpu1") == ("heaccel:cpu1", {"HEA_FATE_DJN": "0"})
    with pytest.raises(SystemExit, match="option of the he-accel plugin"):
        fate2_scale.config_options("stock+djn")


def test_secureboost_ops_are_batched(record):
    plugin = next(r for r in record["rows"] if r["model"] == "sbt" and r["config"] == "heaccel:cpu1")
    ops = plugin["ops"]
    assert "i_update_with_masks" in ops and "pack_squeeze" in ops and "pack_floats" in ops
    for name in BATCHED:
        if name in ops:
            o = ops[name]
            # a handful of whole-vector calls per op call (log-depth reductions), never one per element
            assert o["max_backend_calls_per_call"] <= 64, (name, o)
            if o["backend_calls"]:
                assert o["backend_elems"] / o["backend_calls"] > 1, (name, o)
