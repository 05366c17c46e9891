"""FATE 2.x CoordinatedLR seconds per epoch, stock (fate_utils) vs the he-accel plugin, side by
side: runs examples/fate2/train.py alternately for each configuration, ``--repeats`` times, and
reports the median per-epoch time, min and max, the ratio to stock, and whether every run gave
the stock model (train AUC/accuracy equal, scores within 1e-9).

Needs the FATE environment (scripts/test_fate.sh builds .venv-fate):

    .venv-fate/bin/python bench/fate2_training.py --epochs 5 --repeats 3 \
        --configs stock heaccel:cpu1 heaccel:cpu [heaccel:gpu] --json bench/results/fate2-lr.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from accel.bench.ops import git_commit as _commit

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "fate2" / "train.py"




def run_once(tmp: Path, config: str, args, port: int) -> dict:
    plugin, _, backend = config.partition(":")
    out = tmp / f"{config.replace(':', '-')}-{port}.json"
    cmd = [sys.executable, str(SCRIPT), "--model", args.model, "--plugin", plugin, "--backend", backend or "cpu",
           "--epochs", str(args.epochs), "--key-size", str(args.key_size), "--seed", "7", "--data-dir", str(tmp),
           "--out", str(out), "--parties", f"guest:{port}", f"host:{port + 1}", f"arbiter:{port + 2}",
           "--log_level", "WARNING"]
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{config} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["lr", "sbt"], default="lr")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--key-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--configs", nargs="+", default=["stock", "heaccel:cpu1", "heaccel:cpu"])
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.configs[0] != "stock":
        a.configs.insert(0, "stock")
    runs: dict[str, list[dict]] = {c: [] for c in a.configs}
    port = 19500
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sys.path.insert(0, str(SCRIPT.parent))
        import train  # noqa: PLC0415 - the example's own data split
        train.write_split(str(tmp))
        for rep in range(a.repeats):
            for c in a.configs:  # interleaved, so drift in the machine hits every config alike
                r = run_once(tmp, c, a, port)
                port += 3
                runs[c].append(r)
                print(f"[{rep + 1}/{a.repeats}] {c}: {r['per_round_s']:.3f} s/{r['round']}", flush=True)
    ref = runs["stock"][0]
    rows = []
    base = statistics.median(r["per_round_s"] for r in runs["stock"])
    for c, rs in runs.items():
        per = [r["per_round_s"] for r in rs]
        same = all(r["train_auc"] == ref["train_auc"] and r["train_accuracy"] == ref["train_accuracy"]
                   and max(abs(x - y) for x, y in zip(r["scores"], ref["scores"])) <= 1e-9 for r in rs)
        rows.append({"config": c, "median_s_per_epoch": statistics.median(per), "min_s": min(per),
                     "max_s": max(per), "speedup_vs_stock": base / statistics.median(per),
                     "train_auc": rs[0]["train_auc"], "same_model_as_stock": same, "repeats": len(rs)})
    print(f"\nFATE 2.x {a.model}, {a.key_size}-bit, {a.epochs} epochs, {a.repeats} repeats "
          f"({os.cpu_count()} cores)")
    print(f"{'config':<16}{'s/epoch (median)':>18}{'min':>8}{'max':>8}{'vs stock':>10}  same model")
    for r in rows:
        print(f"{r['config']:<16}{r['median_s_per_epoch']:>18.3f}{r['min_s']:>8.3f}{r['max_s']:>8.3f}"
              f"{r['speedup_vs_stock']:>9.2f}x  {r['same_model_as_stock']}")
    if a.json:
        rec = {"device": f"cpu ({os.cpu_count()} cores)", "date": datetime.date.today().isoformat(),
               "commit": _commit(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
               "model": a.model, "key_bits": a.key_size, "epochs": a.epochs, "rows": rows}
        Path(a.json).write_text(json.dumps(rec, indent=1) + "\n")
    return 0 if all(r["same_model_as_stock"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
