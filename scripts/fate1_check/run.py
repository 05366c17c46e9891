"""One party of a small HeteroLR or HeteroSecureBoost job on FATE 1.x's standalone engine
(what FATE Flow's task executor does, without FATE Flow), and the comparison of two runs.

    python run.py party ALGO ROLE JOB_ID OUT_DIR     # one party; writes OUT_DIR/ROLE.json
    python run.py compare STOCK_DIR PLUGIN_DIR       # the models of two runs, party by party
    python run.py unittest FILE                      # one of FATE's own test files, in-process

Data: scikit-learn's bundled breast-cancer set (569 x 30), split as FATE's breast_hetero
example is: the guest holds the label and 10 features, the host 20, standardised."""
import json
import os
import runpy
import sys
import time
from types import SimpleNamespace

GUEST, HOST, ARBITER = 9999, 10000, 10000
ROWS = int(os.environ.get("HEA_FATE1_ROWS", "200"))


def _plugin_state():
    from federatedml.optim.gradient.hetero_linear_model_gradient import HeteroGradientBase
    from federatedml.secureprotol.encrypt import PaillierEncrypt
    return {"encrypt_list": PaillierEncrypt.encrypt_list.__module__,
            "compute_gradient": HeteroGradientBase.compute_gradient.__module__}


def _check_plugin():
    want = os.environ.get("HEA_FATE1_PLUGIN")
    state = _plugin_state()
    active = all(m == "accel.integrations.fate1" for m in state.values())
    if bool(want) != active:
        raise SystemExit(f"plugin expected {'on' if want else 'off'}, found {state}")


class _Tracker:
    """FATE Flow's tracker: metrics and summaries go nowhere here."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def _table(role):
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    from fate_arch.session import computing_session
    from federatedml.feature.instance import Instance
    from federatedml.util.anonymous_generator_util import Anonymous

    X, y = load_breast_cancer(return_X_y=True)
    X, y = X[:ROWS], y[:ROWS]
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    cols = range(10) if role == "guest" else range(10, 30)
    rows = [(str(i), Instance(inst_id=str(i), features=X[i, list(cols)].astype(np.float64),
                              label=int(y[i]) if role == "guest" else None)) for i in range(len(X))]
    table = computing_session.parallelize(rows, include_key=True, partition=4)
    schema = {"header": [f"x{j}" for j in cols], "sid": "id"}
    if role == "guest":
        schema["label_name"] = "y"
    # what FATE's DataTransform adds to a schema: role-qualified anonymous column names
    party_id = GUEST if role == "guest" else HOST
    table.schema = Anonymous(role=role, party_id=party_id).generate_anonymous_header(schema)
    return table


def _params(algo):
    if algo == "lr":
        return {"penalty": "L2", "optimizer": "rmsprop", "alpha": 0.01, "max_iter": 3, "batch_size": -1,
                "learning_rate": 0.15, "init_param": {"init_method": "zeros"},
                "encrypt_param": {"key_length": 1024}}
    return {"task_type": "classification", "num_trees": 2, "bin_num": 16,
            "tree_param": {"max_depth": 3}, "encrypt_param": {"key_length": 1024},
            "objective_param": {"objective": "cross_entropy"}}


def _component(algo, role):
    from federatedml.components import hetero_lr, hetero_secure_boost
    meta = hetero_lr.hetero_lr_cpn_meta if algo == "lr" else hetero_secure_boost.hetero_secure_boost_cpn_meta
    return meta.get_run_obj(role)


def party(algo, role, job_id, out_dir):
    from fate_arch.session import Session
    _check_plugin()
    roles = {"guest": [GUEST], "host": [HOST]}
    if algo == "lr":
        roles["arbiter"] = [ARBITER]
    local = {"role": role, "party_id": {"guest": GUEST, "host": HOST, "arbiter": ARBITER}[role]}
    runtime_conf = {"local": local, "role": roles}
    with Session(session_id=f"{job_id}_{role}") as sess:
        sess.as_global()
        sess.init_computing(f"{job_id}_{role}", record=False)
        sess.init_federation(job_id, runtime_conf=runtime_conf, record=False)
        cpn = _component(algo, role)
        cpn.set_flowid(job_id)
        datasets = {"reader_0": {"train_data": None if role == "arbiter" else _table(role)}}
        cpn_input = SimpleNamespace(task_version_id="0", tracker=_Tracker(), checkpoint_manager=None,
                                    models={}, parameters=_params(algo), roles=runtime_conf,
                                    datasets=datasets, caches=None, job_parameters=None, flow_feeded_parameters={})
        out = cpn.run(cpn_input, retry=False)
        model = {k: as_json for k, (_, _, as_json) in out.model.items()}
        with open(os.path.join(out_dir, f"{role}.json"), "w") as f:
            json.dump({"plugin": _plugin_state(), "model": model}, f, indent=1, sort_keys=True)
        # Leaving the session deletes this party's tables; a peer may still be reading one it
        # was sent (the guest reads the host's predictions), so wait for every party first.
        _barrier(out_dir, role, list(roles))


def _barrier(out_dir, role, roles, timeout_s=300):
    open(os.path.join(out_dir, f"{role}.done"), "w").close()
    deadline = time.monotonic() + timeout_s
    while not all(os.path.exists(os.path.join(out_dir, f"{r}.done")) for r in roles):
        if time.monotonic() > deadline:
            raise SystemExit(f"{role}: the other parties did not finish within {timeout_s} s")
        time.sleep(0.2)


def compare(stock_dir, plugin_dir):
    same = True
    for name in sorted(n for n in os.listdir(stock_dir) if n.endswith(".json")):
        with open(os.path.join(stock_dir, name)) as f:
            stock = json.load(f)
        with open(os.path.join(plugin_dir, name)) as f:
            plugin = json.load(f)
        equal = stock["model"] == plugin["model"]
        same &= equal
        print(f"  {name[:-5]:8s} model {'identical' if equal else 'DIFFERS'} "
              f"(plugin run: {plugin['plugin']['compute_gradient']})")
        if not equal:
            print("    stock :", json.dumps(stock["model"])[:600])
            print("    plugin:", json.dumps(plugin["model"])[:600])
    return same


def unit(path):
    from fate_arch.session import computing_session
    _check_plugin()
    computing_session.init("hea_fate1_unittest")
    sys.argv = [path]
    try:
        import unittest
        mod = runpy.run_path(path, run_name="fate1_test")
        suite = unittest.TestSuite()
        for obj in mod.values():
            if isinstance(obj, type) and issubclass(obj, unittest.TestCase) and obj.__module__ == "fate1_test":
                suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(obj))
        result = unittest.TextTestRunner(verbosity=1).run(suite)
        return result.wasSuccessful() and result.testsRun > 0
    finally:
        computing_session.stop()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "party":
        party(*args)
    elif cmd == "compare":
        sys.exit(0 if compare(*args) else 1)
    elif cmd == "unittest":
        sys.exit(0 if unit(*args) else 1)
    else:
        raise SystemExit(__doc__)
