"""End to end: vertical logistic regression with encrypted gradients (guest, host, arbiter in
three processes; examples/hetero_lr.py), seconds per epoch on each engine, side by side.

    python -m accel.bench.e2e --data synthetic:100000x30 --epochs 1 \
        --engines phe fate_utils accel:cpu accel:remote --json bench/results/e2e-cpu.json

Engines: ``phe`` (python-paillier per value), ``fate_utils`` (FATE 2.x's Rust vectors),
``accel:cpu``, ``accel:gpu``, ``accel:remote`` (a ``he-accel serve`` started here on
``--serve-backend``); ``+djn`` after an accel engine (``accel:cpu+djn``) encrypts by DJN, opt-in:
it adds the short-exponent assumption to Paillier's. Every engine trains on the same data with the same iterations, and each
run is compared with plaintext training of the same protocol. The model must agree (weights
within ``--tolerance``) or the run fails. An engine that cannot run here is reported with the
reason, not dropped. FATE 2.x CoordinatedLR stock vs plugin is bench/fate2_training.py (it needs
FATE's own venv).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

import hetero_lr  # noqa: E402  (examples/hetero_lr.py: the protocol and the engines)

from .ops import cpu_name, git_commit  # noqa: E402


def _engine(spec: str, target: str | None, workers: int | None):
    name, _, backend = spec.partition(":")
    if name == "accel":  # accel:BACKEND[+djn]: DJN encryption, opt-in (short-exponent assumption)
        backend, _, variant = backend.partition("+")
        return hetero_lr.AccelEngine(backend=backend or "cpu", target=target, workers=workers,
                                     djn=variant == "djn")
    return hetero_lr.make_engine(name)


def _available(spec: str) -> str | None:
    """None if ``spec`` can run here, else why not."""
    name, _, backend = spec.partition(":")
    backend, _, variant = backend.partition("+")
    if name not in ("phe", "fate_utils", "accel") or variant not in ("", "djn"):
        return f"unknown engine {spec!r} (phe, fate_utils, accel:cpu|gpu|remote, +djn for DJN encryption)"
    try:
        if name == "phe":
            import phe  # noqa: F401
        elif name == "fate_utils":
            import fate_utils.paillier  # noqa: F401
        elif name == "accel" and backend in ("gpu",):
            from accel import get_backend
            get_backend("gpu")
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="synthetic:100000x30")
    ap.add_argument("--bits", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=0, help="0: full batch")
    ap.add_argument("--engines", nargs="+", default=["phe", "fate_utils", "accel:cpu", "accel:gpu", "accel:remote"])
    ap.add_argument("--workers", type=int, help="accel:cpu processes per party (default: all cores)")
    ap.add_argument("--serve-backend", default="auto", help="backend of the service for accel:remote")
    ap.add_argument("--tolerance", type=float, default=1e-6)
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    cfg = hetero_lr.Config(data=a.data, bits=a.bits, epochs=a.epochs, batch_size=a.batch_size)
    n_train = len(hetero_lr.load_data(a.data, cfg.seed)[1])
    common = {"commit": git_commit(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(shlex.quote(x) for x in ["python", "-m", "accel.bench.e2e", *sys.argv[1:]])}
    print(f"reference: plaintext training of the same protocol on {a.data} ...", flush=True)
    ref = hetero_lr.run(hetero_lr.PlainEngine(), cfg)
    rows, missing, failed = [], {}, False
    for spec in a.engines:
        why = _available(spec)
        if why:
            missing[spec] = why
            print(f"{spec}: not measured ({why})", flush=True)
            continue
        print(f"{spec}: training ...", flush=True)
        if spec.partition("+")[0] == "accel:remote":
            from .service_demo import running_server, wait_healthy
            with running_server("--backend", a.serve_backend) as (_proc, port, _m):
                wait_healthy(f"127.0.0.1:{port}")
                res = hetero_lr.run(_engine(spec, f"127.0.0.1:{port}", a.workers), cfg, spec)
        else:
            res = hetero_lr.run(_engine(spec, None, a.workers), cfg, spec)
        dw = max(np.abs(np.subtract(res.w_guest, ref.w_guest)).max(),
                 np.abs(np.subtract(res.w_host, ref.w_host)).max())
        same = bool(dw <= a.tolerance)
        failed |= not same
        sec = float(np.median(res.sec_per_epoch))
        rows.append({"device": f"{cpu_name()} x{os.cpu_count()} cores" if "gpu" not in spec else spec,
                     "backend": spec, "op": "hetero_lr_epoch", "key_bits": a.bits, "batch": n_train,
                     "ops_per_s": round(n_train / sec, 2), **common, "sec_per_epoch": round(sec, 3),
                     "epochs": a.epochs, "data": a.data, "auc": res.auc, "max_abs_dw": float(dw),
                     "same_model": same, "loss": res.loss})
        print(f"{spec}: {sec:.2f} s/epoch, AUC {res.auc:.5f}, max |dw| vs plaintext {dw:.1e}", flush=True)
    by = {r["backend"]: r["sec_per_epoch"] for r in rows}
    print(f"\nvertical LR, {a.data}, {a.bits}-bit, {a.epochs} epoch(s), full batch" if not a.batch_size else
          f"\nvertical LR, {a.data}, {a.bits}-bit, {a.epochs} epoch(s), batch {a.batch_size}")
    print(f"{'engine':<16}{'s/epoch':>10}{'x phe':>8}{'x fate_utils':>14}{'AUC':>9}  same model")
    for r in rows:
        xp = f"{by['phe'] / r['sec_per_epoch']:.2f}" if "phe" in by else "-"
        xf = f"{by['fate_utils'] / r['sec_per_epoch']:.2f}" if "fate_utils" in by else "-"
        r["speedup_vs_phe"] = None if xp == "-" else float(xp)
        r["speedup_vs_fate_utils"] = None if xf == "-" else float(xf)
        print(f"{r['backend']:<16}{r['sec_per_epoch']:>10.2f}{xp:>8}{xf:>14}{r['auc']:>9.5f}  {r['same_model']}")
    print(f"plaintext reference AUC {ref.auc:.5f}")
    for spec, why in missing.items():
        print(f"not measured: {spec}: {why}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"records": rows, "missing": missing,
                                            "reference_auc": ref.auc}, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
