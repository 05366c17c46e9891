"""FATE 2.x CoordinatedLR or HeteroSecureBoost on scikit-learn's breast-cancer data, three
parties in separate processes (FATE's multiprocess launcher), stock Paillier or he-accel.

    python examples/fate2/train.py --model lr  --plugin heaccel --backend cpu --out lr.json \
        --parties guest:9999 host:10000 arbiter:10001

The guest holds 10 features and the label, the host the other 20. With ``--plugin heaccel``
every party calls :func:`accel.integrations.fate2.install` before training: the one-line
change. On success the guest prints one line (model, engine, time per round, train AUC and
accuracy), and writes it with the per-sample scores to ``--out`` as JSON when given.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import pandas as pd


def _options():
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--model", choices=["lr", "sbt"], default="lr")
    ap.add_argument("--plugin", choices=["stock", "heaccel"], default="heaccel")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--trees", type=int, default=2)
    ap.add_argument("--key-size", type=int, default=1024)
    ap.add_argument("--data-dir", default=os.environ.get("HEA_EXAMPLE_DATA", ""))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", default="")
    return ap.parse_known_args()[0]


def write_split(directory: str) -> None:
    """breast-cancer: 569 samples, 30 features; guest 10 + label, host 20."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    ids = [f"id{i}" for i in range(len(y))]
    guest = pd.DataFrame(X[:, :10], columns=[f"x{i}" for i in range(10)])
    guest.insert(0, "y", y.astype("float32"))
    guest.insert(0, "id", ids)
    host = pd.DataFrame(X[:, 10:], columns=[f"x{i}" for i in range(10, 30)])
    host.insert(0, "id", ids)
    guest.to_csv(os.path.join(directory, "guest.csv"), index=False)
    host.to_csv(os.path.join(directory, "host.csv"), index=False)


def _frame(ctx, path: str, label: bool):
    from fate.arch.dataframe import PandasReader

    df = pd.read_csv(path)
    df["sample_id"] = list(range(len(df)))
    kw = {"label_name": "y"} if label else {}
    return PandasReader(sample_id_name="sample_id", match_id_name="id", dtype="float32", **kw).to_frame(ctx, df)


# The one-line change, at the top level so that FATE's spawned computing workers (which
# re-import this script) run on he-accel too.
if _options().plugin == "heaccel":
    from accel.integrations import fate2

    _name = _options().backend
    # "cpu1": the CPU backend inline in each process (FATE already spreads partitions over
    # processes, so a pool per process only adds start-up cost on a small machine)
    fate2.install("cpu", workers=1) if _name == "cpu1" else fate2.install(_name)


def run(ctx) -> None:
    opt = _options()
    ctx.cipher.set_phe(ctx.device, {"kind": "paillier", "key_length": opt.key_size})
    if opt.seed is not None:
        # SecureBoost's host shuffles histograms with seeds from os.urandom; split-gain ties are
        # then broken by that order, so two runs can differ in a tied split. A fixed seed makes
        # stock and plugin runs comparable sample by sample.
        ctx.cipher.set_allow_custom_random_seed(True)
        ctx.cipher.set_custom_random_seed(opt.seed)
    data = None
    if ctx.is_on_guest:
        data = _frame(ctx, os.path.join(opt.data_dir, "guest.csv"), True)
    elif ctx.is_on_host:
        data = _frame(ctx, os.path.join(opt.data_dir, "host.csv"), False)

    t0 = time.perf_counter()
    if opt.model == "lr":
        from fate.ml.glm.hetero.coordinated_lr import (
            CoordinatedLRModuleArbiter,
            CoordinatedLRModuleGuest,
            CoordinatedLRModuleHost,
        )

        common = dict(epochs=opt.epochs, batch_size=None,
                      optimizer_param={"method": "sgd", "penalty": "l2", "alpha": 0.01,
                                       "optimizer_params": {"lr": 0.5}},
                      learning_rate_param={"method": "constant",
                                           "scheduler_params": {"factor": 1.0, "total_iters": 100}})
        init = {"method": "zeros", "fit_intercept": True}
        if ctx.is_on_arbiter:
            CoordinatedLRModuleArbiter(early_stop="diff", tol=1e-9, **common).fit(ctx)
            return
        module = (CoordinatedLRModuleGuest(init_param=init, **common) if ctx.is_on_guest
                  else CoordinatedLRModuleHost(init_param=init, **common))
        module.fit(ctx, data)
        fit_s = time.perf_counter() - t0
        pred = module.predict(ctx, data)
        rounds = opt.epochs
    else:
        if ctx.is_on_arbiter:
            return
        from fate.ml.ensemble.algo.secureboost.hetero.guest import HeteroSecureBoostGuest
        from fate.ml.ensemble.algo.secureboost.hetero.host import HeteroSecureBoostHost

        if ctx.is_on_guest:
            module = HeteroSecureBoostGuest(num_trees=opt.trees, max_depth=3, learning_rate=0.3,
                                            objective="binary:bce")
        else:
            module = HeteroSecureBoostHost(num_trees=opt.trees, max_depth=3)
        module.fit(ctx, data)
        fit_s = time.perf_counter() - t0
        pred = module.predict(ctx, data)
        rounds = opt.trees

    if ctx.is_on_guest:
        from sklearn.metrics import accuracy_score, roc_auc_score

        df = pred.as_pd_df()
        label = df["label"].astype(float).to_numpy()
        score = df["predict_score"].astype(float).to_numpy()
        result = {"model": opt.model, "plugin": opt.plugin, "backend": opt.backend if opt.plugin == "heaccel" else "fate_utils",
                  "key_size": opt.key_size, "rounds": rounds, "round": "epoch" if opt.model == "lr" else "tree",
                  "fit_s": fit_s, "per_round_s": fit_s / rounds,
                  "train_auc": float(roc_auc_score(label, score)),
                  "train_accuracy": float(accuracy_score(label, score > 0.5)),
                  "scores": score.tolist()}
        if opt.out:
            with open(opt.out, "w") as f:
                json.dump(result, f)
        print(summary(result) + (f"; wrote {opt.out}" if opt.out else ""), flush=True)


def summary(result: dict) -> str:
    """One line on success, printed by the guest (the party that holds the labels)."""
    model = {"lr": "CoordinatedLR", "sbt": "HeteroSecureBoost"}[result["model"]]
    engine = ("stock FATE Paillier (fate_utils)" if result["plugin"] == "stock"
              else f"he-accel plugin, backend {result['backend']}")
    return (f"train.py: {model} with {engine}, {result['key_size']}-bit key: {result['rounds']} "
            f"{result['round']}{'s' if result['rounds'] != 1 else ''} in {result['fit_s']:.1f} s "
            f"({result['per_round_s']:.2f} s per {result['round']}); train AUC {result['train_auc']:.4f}, "
            f"accuracy {result['train_accuracy']:.4f}")


def main() -> None:
    from fate.arch.launchers.multiprocess_launcher import launch

    opt = _options()
    if not opt.data_dir:
        opt.data_dir = tempfile.mkdtemp(prefix="hea-fate2-")
        sys.argv += ["--data-dir", opt.data_dir]
    if not os.path.exists(os.path.join(opt.data_dir, "guest.csv")):
        write_split(opt.data_dir)
    launch(run)


if __name__ == "__main__":
    main()
