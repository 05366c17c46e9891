"""A FATE 2.x job that never mentions he-accel: CoordinatedLR through FATE's multiprocess
launcher, asking for PHE through FATE's own configuration only (tests/fate/test_fate2_activation.py).

    python auto_activation_job.py --mode cuda|kind|cpu --data-dir D --out-dir O \
        --parties guest:P host:P+1 arbiter:P+2

``cuda``: the task's device is CUDA (the context FATE's component runner builds for a GPUSpec
task), kind "paillier". ``kind``: a CPU task with kind "heaccel". ``cpu``: a CPU task with kind
"paillier" (stock FATE must keep it). Each party writes which engine served it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import pandas as pd


def _options():
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--mode", choices=["cuda", "kind", "cpu"], required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out-dir", required=True)
    return ap.parse_known_args()[0]


def _frame(ctx, path: str, label: bool):
    from fate.arch.dataframe import PandasReader

    df = pd.read_csv(path)
    df["sample_id"] = list(range(len(df)))
    kw = {"label_name": "y"} if label else {}
    return PandasReader(sample_id_name="sample_id", match_id_name="id", dtype="float32", **kw).to_frame(ctx, df)


def run(ctx) -> None:
    from fate.arch.context import Context
    from fate.arch.unify import device

    opt = _options()
    if opt.mode == "cuda":
        # what fate.components' execute_cli builds for a task whose conf.device is a GPUSpec
        ctx = Context(device=device.CUDA, computing=ctx.computing, federation=ctx.federation)
    kind = "heaccel" if opt.mode == "kind" else "paillier"
    ctx.cipher.set_phe(ctx.device, {"kind": kind, "key_length": 1024})

    from fate.ml.glm.hetero.coordinated_lr import (
        CoordinatedLRModuleArbiter,
        CoordinatedLRModuleGuest,
        CoordinatedLRModuleHost,
    )

    common = dict(epochs=2, batch_size=None,
                  optimizer_param={"method": "sgd", "penalty": "l2", "alpha": 0.01, "optimizer_params": {"lr": 0.5}},
                  learning_rate_param={"method": "constant", "scheduler_params": {"factor": 1.0, "total_iters": 100}})
    init = {"method": "zeros", "fit_intercept": True}
    scores = None
    if ctx.is_on_arbiter:
        CoordinatedLRModuleArbiter(early_stop="diff", tol=1e-9, **common).fit(ctx)
        role = "arbiter"
    else:
        role = "guest" if ctx.is_on_guest else "host"
        data = _frame(ctx, os.path.join(opt.data_dir, f"{role}.csv"), ctx.is_on_guest)
        module = (CoordinatedLRModuleGuest(init_param=init, **common) if ctx.is_on_guest
                  else CoordinatedLRModuleHost(init_param=init, **common))
        module.fit(ctx, data)
        pred = module.predict(ctx, data)
        if ctx.is_on_guest:
            scores = pred.as_pd_df()["predict_score"].astype(float).tolist()
    fate2 = sys.modules.get("accel.integrations.fate2")
    report = {"role": role, "installed": bool(fate2 and fate2.installed()),
              "engine": os.environ.get("HEA_FATE_ENGINE"), "scores": scores}
    with open(os.path.join(opt.out_dir, f"{opt.mode}-{role}.json"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    from fate.arch.launchers.multiprocess_launcher import launch

    launch(run)
