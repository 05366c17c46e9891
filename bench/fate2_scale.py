"""FATE 2.x at scale, stock vs the he-accel plugin: HeteroSecureBoost and CoordinatedLR on seeded
synthetic data through FATE's multiprocess launcher, three parties in separate processes.

Reports seconds per tree and per epoch, the Paillier share of each party's time (seconds inside
FATE's PHE calls, summed over the party's processes, over the fit's wall time; computing
workers run in parallel, so a share can pass 100%), and the same-model check against stock
(train AUC and accuracy equal, scores within 1e-9). Configurations: ``stock`` (fate_utils),
``heaccel:cpu1`` (CPU backend in each process), ``heaccel:cpu`` (with its process pool),
``heaccel:remote:cpu`` (an offload service on its CPU backend, started here), ``heaccel:gpu``;
a ``+djn`` suffix (``heaccel:cpu1+djn``) turns on the plugin's DJN opt-in (``HEA_FATE_DJN=1``).

Needs the FATE environment (scripts/test_fate.sh builds .venv-fate). The issue's full size:

    .venv-fate/bin/python -m accel.bench.fate2_scale --samples 100000 --key-size 2048 --trees 1 --epochs 1 \
        --configs stock heaccel:cpu1 heaccel:remote:cpu [heaccel:gpu] --json bench/results/fate2-scale-100k.json
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from accel.bench import fate2_profile
from accel.bench.ops import git_commit as _commit

ROOT = Path(__file__).resolve().parents[1]
JOB = Path(__file__).with_name("fate2_scale_job.py")
GUEST_FEATURES, HOST_FEATURES = 10, 20


def write_synthetic(directory: str | Path, samples: int, seed: int) -> dict:
    """``samples`` x 30 standard-normal features, a logistic label from all 30 (so that both
    parties' features matter); the guest holds 10 and the label, the host 20. Seeded."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, GUEST_FEATURES + HOST_FEATURES))
    w = rng.standard_normal(GUEST_FEATURES + HOST_FEATURES)
    logits = X @ w / np.sqrt(len(w)) * 3.0
    y = (rng.random(samples) < 1.0 / (1.0 + np.exp(-logits))).astype("float32")
    ids = [f"id{i}" for i in range(samples)]
    guest = pd.DataFrame(X[:, :GUEST_FEATURES], columns=[f"x{i}" for i in range(GUEST_FEATURES)])
    guest.insert(0, "y", y)
    guest.insert(0, "id", ids)
    host = pd.DataFrame(X[:, GUEST_FEATURES:], columns=[f"x{i}" for i in range(GUEST_FEATURES, 30)])
    host.insert(0, "id", ids)
    d = Path(directory)
    guest.to_csv(d / "guest.csv", index=False)
    host.to_csv(d / "host.csv", index=False)
    return {"samples": samples, "guest_features": GUEST_FEATURES, "host_features": HOST_FEATURES, "seed": seed,
            "positive_rate": float(y.mean())}




DJN_SUFFIX = "+djn"


def config_options(config: str) -> tuple[str, dict]:
    """``heaccel:cpu1+djn`` -> (``heaccel:cpu1``, the plugin's DJN opt-in in the environment)."""
    if config.endswith(DJN_SUFFIX):
        if not config.startswith("heaccel"):
            raise SystemExit(f"{config}: {DJN_SUFFIX} is an option of the he-accel plugin")
        return config[:-len(DJN_SUFFIX)], {"HEA_FATE_DJN": "1"}
    return config, {"HEA_FATE_DJN": "0"}


def run_one(tmp: Path, model: str, config: str, a, port: int, env: dict) -> dict:
    base_config, option_env = config_options(config)
    plugin, _, backend = base_config.partition(":")
    backend = backend or "cpu"
    tag = f"{model}-{config.replace(':', '-')}-{port}"
    out, prof = tmp / f"{tag}.json", tmp / f"{tag}-profile"
    prof.mkdir()
    cmd = [sys.executable, str(JOB), "--model", model, "--plugin", plugin,
           "--backend", "remote" if backend.startswith("remote") else backend,
           "--epochs", str(a.epochs), "--trees", str(a.trees), "--key-size", str(a.key_size), "--seed", "7",
           "--data-dir", str(tmp), "--out", str(out),
           "--parties", f"guest:{port}", f"host:{port + 1}", f"arbiter:{port + 2}", "--log_level", "WARNING"]
    run_env = {**os.environ, **env, **option_env, fate2_profile.ENV_DIR: str(prof), "PYTHONPATH": str(ROOT)}
    log = tmp / f"{tag}.log"
    with open(log, "w") as f:  # a file, not a pipe: a lingering grandchild cannot hold the run open
        proc = subprocess.run(cmd, cwd=tmp, stdout=f, stderr=subprocess.STDOUT, timeout=a.timeout, env=run_env)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{model} {config} failed:\n{log.read_text()[-5000:]}")
    r = json.loads(out.read_text())
    prof_sum = fate2_profile.summarise(prof)
    r["phe_s_by_role"] = prof_sum["phe_s_by_role"]
    r["phe_share_by_role"] = {k: v / r["fit_s"] for k, v in prof_sum["phe_s_by_role"].items()}
    r["ops"] = prof_sum["ops"]
    r["config"] = config
    return r


@contextlib.contextmanager
def _service_env(config: str):
    """remote:BACKEND: an he-accel service on BACKEND for the run, its address in HEA_TARGET."""
    parts = config.split(":")
    if len(parts) >= 2 and parts[1] == "remote":
        from accel.bench.service_demo import running_server, wait_healthy

        with running_server("--backend", parts[2] if len(parts) > 2 else "auto") as (_proc, port, _m):
            target = f"127.0.0.1:{port}"
            wait_healthy(target)
            yield {"HEA_TARGET": target}
    else:
        yield {}


def _row(model: str, config: str, r: dict, ref: dict, same: bool) -> dict:
    row = {"model": model, "config": config, "round": r["round"], "rounds": r["rounds"],
           "fit_s": r["fit_s"], "per_round_s": r["per_round_s"],
           "speedup_vs_stock": ref["per_round_s"] / r["per_round_s"],
           "train_auc": r["train_auc"], "train_accuracy": r["train_accuracy"],
           "same_model_as_stock": same, "phe_s_by_role": r["phe_s_by_role"],
           "phe_share_by_role": r["phe_share_by_role"], "ops": r["ops"]}
    if "reference" in r:
        row["reference"] = r["reference"]
    return row


def load_reference(path: str, a) -> dict:
    """A kept stock run, checked against this invocation (same samples, key size, rounds)."""
    r = json.loads(Path(path).read_text())
    want = {"config": "stock", "key_size": a.key_size, "rounds": a.trees if r.get("model") == "sbt" else a.epochs}
    got = {k: r.get(k) for k in want}
    if got != want or len(r.get("scores", ())) != a.samples:
        raise SystemExit(f"--reference {path}: a stock run of {a.samples} samples, {want} expected; "
                         f"it holds {len(r.get('scores', ()))} samples, {got}")
    r["reference"] = f"{path} (an earlier invocation)"
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--key-size", type=int, default=2048)
    ap.add_argument("--trees", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--models", nargs="+", choices=["sbt", "lr"], default=["sbt", "lr"])
    ap.add_argument("--configs", nargs="+", default=["stock", "heaccel:cpu1"])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--timeout", type=float, default=6 * 3600)
    ap.add_argument("--json")
    ap.add_argument("--keep", metavar="DIR", help="write each run's result (scores, profile) to DIR/MODEL-CONFIG.json")
    ap.add_argument("--reference", action="append", default=[], metavar="MODEL=PATH",
                    help="a stock run kept (--keep) by an earlier invocation on the same data: compared against "
                         "instead of running stock again")
    a = ap.parse_args(argv)
    for config in a.configs:
        config_options(config)  # a bad option is refused before hours of runs, not after
    references = {}
    for item in a.reference:
        model, _, path = item.partition("=")
        if model not in a.models or not path:
            raise SystemExit(f"--reference {item}: want MODEL=PATH with MODEL one of {a.models}")
        references[model] = load_reference(path, a)
    a.configs = [c for c in a.configs if c != "stock"]
    port = 19800
    rows: list[dict] = []
    rec = {"device": f"cpu ({os.cpu_count()} cores)", "date": datetime.date.today().isoformat(),
           "commit": _commit(), "command": " ".join(["python -m accel.bench.fate2_scale", *(argv or sys.argv[1:])]),
           "key_bits": a.key_size, "trees": a.trees, "epochs": a.epochs, "rows": rows}
    with tempfile.TemporaryDirectory(prefix="hea-fate2-scale-") as d:
        tmp = Path(d)
        rec["data"] = write_synthetic(tmp, a.samples, a.seed)
        for model in a.models:
            ref = references.get(model)
            if ref is not None:
                rows.append(_row(model, "stock", ref, ref, True))
            for config in ([] if ref else ["stock"]) + a.configs:
                with _service_env(config_options(config)[0]) as env:
                    r = run_one(tmp, model, config, a, port, env)
                port += 3
                if a.keep:
                    Path(a.keep).mkdir(parents=True, exist_ok=True)
                    (Path(a.keep) / f"{model}-{config.replace(':', '-')}.json").write_text(json.dumps(r) + "\n")
                ref = ref or r  # stock runs first, unless an earlier run is the reference
                same = (r["train_auc"] == ref["train_auc"] and r["train_accuracy"] == ref["train_accuracy"]
                        and len(r["scores"]) == len(ref["scores"])
                        and max(abs(x - y) for x, y in zip(r["scores"], ref["scores"])) <= 1e-9)
                rows.append(_row(model, config, r, ref, same))
                print(f"{model} {config}: {r['per_round_s']:.2f} s/{r['round']}, AUC {r['train_auc']:.5f}, "
                      f"PHE share {', '.join(f'{k} {v:.0%}' for k, v in sorted(r['phe_share_by_role'].items()))}, "
                      f"same model {same}", flush=True)
                if a.json:  # after every run: a long benchmark that is cut short keeps what it measured
                    Path(a.json).write_text(json.dumps(rec, indent=1) + "\n")
    print(f"\nFATE 2.x at {a.samples} x 30, {a.key_size}-bit keys ({os.cpu_count()} cores)")
    print(f"{'model':<6}{'config':<22}{'s/round':>10}{'vs stock':>10}{'PHE share guest/host':>24}  same model")
    for r in rows:
        sh = r["phe_share_by_role"]
        print(f"{r['model']:<6}{r['config']:<22}{r['per_round_s']:>10.2f}{r['speedup_vs_stock']:>9.2f}x"
              f"{sh.get('guest', 0):>12.0%}/{sh.get('host', 0):<11.0%}  {r['same_model_as_stock']}")
    return 0 if all(r["same_model_as_stock"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
