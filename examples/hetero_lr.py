"""Vertical (hetero) logistic regression with encrypted gradients, three parties in three
processes: the FATE HeteroLR protocol (Taylor-approximated loss, arbiter holds the key).

    python examples/hetero_lr.py                                   # he-accel CPU backend
    python examples/hetero_lr.py --backend gpu                     # the local GPU
    python examples/hetero_lr.py --backend remote --target HOST:PORT   # the offload service
    python examples/hetero_lr.py --djn                             # DJN encryption (extra assumption)
    python examples/hetero_lr.py --engine phe                      # stock python-paillier, per value
    python examples/hetero_lr.py --check                           # + plaintext run, same model?

Data: scikit-learn's breast-cancer set (569 x 30, standardised, 80/20 split) by default, the
guest holding 10 features and the label, the host the other 20; ``--data synthetic:100000x30``
makes a larger one. Per batch:

1. host:    u_h = X_h w_h; sends [[u_h]], [[u_h^2]] to the guest
2. guest:   [[d]] = 0.25 ([[u_h]] + u_g) - 0.5 y      (y in {-1, 1}); sends [[d]] to the host
            [[loss]] = mean(log 2 - 0.5 y u + 0.125 u^2) from [[u_h]], [[u_h^2]], u_g -> arbiter
3. both:    [[g]] = X^T [[d]] / batch, masked with fresh random r: [[g + r]] -> arbiter
4. arbiter: decrypts g + r and the loss, sends g + r back; each party removes r and updates w

Ciphertexts cross process boundaries pickled (an EncryptedVector carries no backend or device
handle; the receiver binds its own). The arbiter's private key never leaves it: with
``--backend remote`` it is generated on the service, which decrypts for its owner only.
Engines: ``accel`` (EncryptedVector on a he-accel backend), ``phe`` (python-paillier objects,
one value at a time: the common baseline), ``fate_utils`` (FATE 2.x's Rust vector API: stock
FATE's engine) and ``plain`` (no encryption: the reference model).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

GUEST_FEATURES = 10  # the guest's share of the columns (it also holds the label)


# -- engines: the handful of operations the protocol needs --------------------------------------
class PlainEngine:
    """No encryption: the same protocol on numpy arrays, the reference for the model."""

    name = "plain"

    def keygen(self, bits):
        return None, None

    def encrypt(self, pk, x):
        return np.asarray(x, dtype=np.float64)

    def decrypt(self, sk, c):
        return np.asarray(c, dtype=np.float64)

    def mul(self, c, k):
        return c * k

    def add(self, a, b):
        return a + b

    def add_plain(self, c, x):
        return c + x

    def dot(self, c, X):
        return c @ X

    def sum(self, c):
        return np.array([c.sum()])

    def received(self, c):
        return c

    def close(self):
        pass


class AccelEngine:
    """he-accel: one backend call per operation on the whole batch."""

    name = "accel"

    def __init__(self, backend: str = "cpu", target: str | None = None, workers: int | None = None,
                 djn: bool = False):
        self.backend_name, self.target, self.workers, self.djn = backend, target, workers, djn
        self._backend = None
        self._djn_keys: dict = {}

    def __getstate__(self):  # ship the choice, never a pool, channel or device handle
        return {"backend_name": self.backend_name, "target": self.target, "workers": self.workers,
                "djn": self.djn, "_backend": None, "_djn_keys": {}}

    @property
    def backend(self):
        if self._backend is None:
            from accel import get_backend
            kw: dict[str, Any] = {}
            if self.backend_name == "remote":
                kw["target"] = self.target
            elif self.backend_name == "cpu" and self.workers:
                kw["workers"] = self.workers
            self._backend = get_backend(self.backend_name, **kw)
        return self._backend

    def keygen(self, bits):
        if self.backend_name == "remote":  # the key is born on the service and stays there
            return self.backend.client.generate_keypair(bits)
        from accel import generate_keypair
        return generate_keypair(bits)

    def encrypt(self, pk, x):
        from accel import EncryptedVector
        djn = None
        if self.djn:
            # DJN (opt-in): hs^r with a short r instead of r^n. Its parameters need only the
            # public key, so the encrypting party makes them once per key. Semantic security then
            # also rests on the short-exponent assumption (see accel.djn).
            from accel.djn import DjnKey
            djn = self._djn_keys.get(pk) or self._djn_keys.setdefault(pk, DjnKey.generate(pk))
        return EncryptedVector.encrypt(pk, np.asarray(x, dtype=np.float64), backend=self.backend, djn=djn)

    def decrypt(self, sk, c):
        return c.decrypt(sk)

    def mul(self, c, k):
        return c * np.asarray(k, dtype=np.float64)

    def add(self, a, b):
        return a + b

    def add_plain(self, c, x):
        return c + np.asarray(x, dtype=np.float64)

    def dot(self, c, X):
        return c.dot(X)

    def sum(self, c):
        return c.sum()

    def received(self, c):
        c.backend = self.backend
        return c

    def close(self):
        if self._backend is not None:
            self._backend.close()  # a private instance: its worker pool ends with the party
            self._backend = None


class PheEngine:
    """python-paillier, per value (gmpy2 underneath when installed): the common baseline."""

    name = "phe"

    def keygen(self, bits):
        from phe import paillier
        return paillier.generate_paillier_keypair(n_length=bits)

    def encrypt(self, pk, x):
        return [pk.encrypt(float(v)) for v in np.asarray(x, dtype=np.float64)]

    def decrypt(self, sk, c):
        return np.array([sk.decrypt(v) for v in c], dtype=np.float64)

    def mul(self, c, k):
        return [a * float(b) for a, b in zip(c, np.asarray(k, dtype=np.float64))]

    def add(self, a, b):
        return [x + y for x, y in zip(a, b)]

    def add_plain(self, c, x):
        return [a + float(b) for a, b in zip(c, np.asarray(x, dtype=np.float64))]

    def dot(self, c, X):
        X = np.asarray(X, dtype=np.float64)
        out = []
        for j in range(X.shape[1]):
            acc = c[0] * float(X[0, j])
            for i in range(1, len(c)):
                acc = acc + c[i] * float(X[i, j])
            out.append(acc)
        return out

    def sum(self, c):
        acc = c[0]
        for v in c[1:]:
            acc = acc + v
        return [acc]

    def received(self, c):
        return c

    def close(self):
        pass


class _FU:
    """A fate_utils CiphertextVector with the key and coder it needs for arithmetic."""

    def __init__(self, ev, pk, coder, size):
        self.ev, self.pk, self.coder, self.size = ev, pk, coder, size


class FateUtilsEngine:
    """fate_utils 0.1.0 (FATE 2.x's Rust Paillier), its vector API: the stock FATE 2.x engine."""

    name = "fate_utils"

    def keygen(self, bits):
        from fate_utils.paillier import keygen
        sk, pk, coder = keygen(bits)
        return (pk, coder), (sk, coder)

    def _enc(self, coder, x):
        return coder.encode_f64_vec(np.ascontiguousarray(x, dtype=np.float64).ravel())

    def encrypt(self, pkc, x):
        pk, coder = pkc
        x = np.asarray(x, dtype=np.float64)
        return _FU(pk.encrypt_encoded(self._enc(coder, x), True), pk, coder, len(x))

    def decrypt(self, skc, c):
        sk, coder = skc
        return np.asarray(coder.decode_f64_vec(sk.decrypt_to_encoded(c.ev)), dtype=np.float64)

    def mul(self, c, k):
        k = np.broadcast_to(np.asarray(k, dtype=np.float64), (c.size,))
        return _FU(c.ev.mul(c.pk, self._enc(c.coder, k)), c.pk, c.coder, c.size)

    def add(self, a, b):
        return _FU(a.ev.add(a.pk, b.ev), a.pk, a.coder, a.size)

    def add_plain(self, c, x):
        x = np.asarray(x, dtype=np.float64)
        # E(x) without obfuscation is (1 + x n): adding it is a plaintext add, as FATE does
        return self.add(c, _FU(c.pk.encrypt_encoded(self._enc(c.coder, x), False), c.pk, c.coder, c.size))

    def dot(self, c, X):
        X = np.asarray(X, dtype=np.float64)  # X^T c as FATE does it: rmatmul(X^T, c)
        out = c.ev.rmatmul(c.pk, self._enc(c.coder, X.T), [X.shape[0], 1], [X.shape[1], X.shape[0]])
        return _FU(out, c.pk, c.coder, X.shape[1])

    def sum(self, c):
        return self.dot(c, np.ones((c.size, 1)))

    def received(self, c):
        return c

    def close(self):
        pass


def make_engine(name: str, **kw) -> Any:
    if name == "plain":
        return PlainEngine()
    if name == "phe":
        return PheEngine()
    if name == "fate_utils":
        return FateUtilsEngine()
    if name == "accel":
        return AccelEngine(**kw)
    raise ValueError(f"unknown engine {name!r}")


# -- data -------------------------------------------------------------------------------------
def load_data(spec: str, seed: int = 0):
    """(X_train, y_train, X_test, y_test), standardised on the training part; y in {0, 1}."""
    rng = np.random.default_rng(seed)
    if spec == "breast_cancer":
        from sklearn.datasets import load_breast_cancer
        X, y = load_breast_cancer(return_X_y=True)
    elif spec.startswith("synthetic:"):
        n, d = (int(v) for v in spec.split(":", 1)[1].lower().split("x"))
        X = rng.standard_normal((n, d))
        w = rng.standard_normal(d) / math.sqrt(d) * 3
        y = (rng.random(n) < 1 / (1 + np.exp(-(X @ w)))).astype(np.int64)
    else:
        raise ValueError(f"unknown data {spec!r}: breast_cancer or synthetic:NxD")
    order = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    tr, te = order[:cut], order[cut:]
    mu, sd = X[tr].mean(0), X[tr].std(0) + 1e-12
    X = (X - mu) / sd
    return X[tr], y[tr], X[te], y[te]


@dataclass
class Config:
    data: str = "breast_cancer"
    bits: int = 1024
    epochs: int = 5
    batch_size: int = 0  # 0: full batch
    lr: float = 0.15
    alpha: float = 0.01  # L2
    seed: int = 0


@dataclass
class Result:
    engine: str
    backend: str
    config: dict
    loss: list = field(default_factory=list)
    sec_per_epoch: list = field(default_factory=list)
    w_guest: list = field(default_factory=list)
    w_host: list = field(default_factory=list)
    auc: float = float("nan")
    accuracy: float = float("nan")


def _batches(n: int, size: int):
    size = size or n
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def _mask(n: int) -> np.ndarray:
    # masks from the OS CSPRNG, uniform in [-1, 1): they hide the gradient from the arbiter
    return np.frombuffer(os.urandom(8 * n), dtype=np.uint64) / 2.0**64 * 2 - 1


# -- parties ----------------------------------------------------------------------------------
# One queue per direction (ch["g2a"]: guest to arbiter, ...): messages from one sender arrive in
# order, which two senders sharing a queue would not guarantee.
def _arbiter(engine, cfg: Config, n_batches: int, ch, results) -> None:
    pk, sk = engine.keygen(cfg.bits)
    ch["a2g"].put(pk)
    ch["a2h"].put(pk)
    losses = []
    for _epoch in range(cfg.epochs):
        epoch_loss = 0.0
        for _ in range(n_batches):
            epoch_loss += float(engine.decrypt(sk, engine.received(ch["g2a"].get()))[0])
            ch["a2g"].put(engine.decrypt(sk, engine.received(ch["g2a"].get())))
            ch["a2h"].put(engine.decrypt(sk, engine.received(ch["h2a"].get())))
        losses.append(epoch_loss / n_batches)
    results.put(("arbiter", losses))


def _host(engine, cfg: Config, X, X_test, ch, results) -> None:
    pk = ch["a2h"].get()
    w = np.zeros(X.shape[1])
    for _epoch in range(cfg.epochs):
        for s, e in _batches(len(X), cfg.batch_size):
            Xb = X[s:e]
            u = Xb @ w
            ch["h2g"].put((engine.encrypt(pk, u), engine.encrypt(pk, u * u)))
            d = engine.received(ch["g2h"].get())
            g = engine.dot(d, Xb / (e - s))
            r = _mask(X.shape[1])
            ch["h2a"].put(engine.add_plain(g, r))
            grad = ch["a2h"].get() - r + cfg.alpha * w
            w = w - cfg.lr * grad
    ch["h2g"].put(X_test @ w)  # prediction: the host's share of the score, as FATE's predict does
    results.put(("host", w.tolist()))


def _guest(engine, cfg: Config, X, y, X_test, y_test, ch, results) -> None:
    ch["a2g"].get()  # the public key: the guest encrypts nothing itself in this protocol
    n, k = X.shape
    X1 = np.hstack([X, np.ones((n, 1))])  # the intercept as a last column
    w = np.zeros(k + 1)
    ys = 2.0 * y - 1  # {-1, 1}
    times = []
    for _epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        for s, e in _batches(n, cfg.batch_size):
            Xb, yb, m = X1[s:e], ys[s:e], e - s
            ug = Xb @ w
            enc_uh, enc_uh2 = (engine.received(c) for c in ch["h2g"].get())
            d = engine.add_plain(engine.mul(enc_uh, np.full(m, 0.25)), 0.25 * ug - 0.5 * yb)
            ch["g2h"].put(d)
            loss_terms = engine.add(engine.mul(enc_uh, 0.25 * ug - 0.5 * yb),
                                    engine.mul(enc_uh2, np.full(m, 0.125)))
            loss_terms = engine.add_plain(loss_terms, math.log(2) - 0.5 * yb * ug + 0.125 * ug * ug)
            ch["g2a"].put(engine.mul(engine.sum(loss_terms), np.array([1.0 / m])))
            g = engine.dot(d, Xb / m)
            r = _mask(k + 1)
            ch["g2a"].put(engine.add_plain(g, r))
            reg = cfg.alpha * np.append(w[:k], 0.0)
            grad = ch["a2g"].get() - r + reg
            w = w - cfg.lr * grad
        times.append(time.perf_counter() - t0)
    score = X_test @ w[:k] + w[k] + ch["h2g"].get()
    from sklearn.metrics import roc_auc_score
    prob = 1 / (1 + np.exp(-score))
    results.put(("guest", {"w": w.tolist(), "sec_per_epoch": times,
                           "auc": float(roc_auc_score(y_test, prob)),
                           "accuracy": float(((prob > 0.5) == y_test).mean())}))


def _party(role, engine, *args) -> None:
    try:
        {"arbiter": _arbiter, "host": _host, "guest": _guest}[role](engine, *args)
    finally:
        engine.close()


def run(engine, cfg: Config, backend_label: str = "") -> Result:
    """Train across three processes; returns the guest's metrics, both weight vectors, the
    arbiter's decrypted losses and seconds per epoch (measured at the guest)."""
    Xtr, ytr, Xte, yte = load_data(cfg.data, cfg.seed)
    g_cols = min(GUEST_FEATURES, Xtr.shape[1] // 2)
    ctx = mp.get_context("spawn")  # CUDA-safe; each party builds its own backend
    ch = {name: ctx.Queue() for name in ("a2g", "a2h", "g2a", "h2a", "g2h", "h2g")}
    results = ctx.Queue()
    n_batches = len(_batches(len(Xtr), cfg.batch_size))
    procs = [
        ctx.Process(target=_party, name="arbiter",
                    args=("arbiter", engine, cfg, n_batches, ch, results)),
        ctx.Process(target=_party, name="host",
                    args=("host", engine, cfg, Xtr[:, g_cols:], Xte[:, g_cols:], ch, results)),
        ctx.Process(target=_party, name="guest",
                    args=("guest", engine, cfg, Xtr[:, :g_cols], ytr, Xte[:, :g_cols], yte, ch, results)),
    ]
    for p in procs:
        p.start()
    got: dict[str, Any] = {}
    try:
        while len(got) < 3:
            try:
                who, payload = results.get(timeout=5)
                got[who] = payload
            except Exception:  # noqa: BLE001 - queue.Empty: check that nobody died
                dead = [p.name for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"party {dead} failed; see its traceback above") from None
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    g = got["guest"]
    return Result(engine=engine.name, backend=backend_label or engine.name, config=asdict(cfg),
                  loss=got["arbiter"], sec_per_epoch=g["sec_per_epoch"], w_guest=g["w"],
                  w_host=got["host"], auc=g["auc"], accuracy=g["accuracy"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=["accel", "phe", "fate_utils", "plain"], default="accel")
    ap.add_argument("--backend", default="cpu", help="accel engine: cpu, gpu, auto or remote")
    ap.add_argument("--target", help="host:port of `he-accel serve` (with --backend remote)")
    ap.add_argument("--workers", type=int, help="cpu backend: processes per party")
    ap.add_argument("--djn", action="store_true",
                    help="accel engine: DJN encryption (faster; adds the short-exponent assumption)")
    ap.add_argument("--data", default="breast_cancer")
    ap.add_argument("--bits", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=0, help="0: full batch")
    ap.add_argument("--lr", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0, help="data split / synthetic data")
    ap.add_argument("--check", action="store_true",
                    help="also train without encryption and require the same model (1e-8)")
    ap.add_argument("--json", help="write the result(s) here")
    a = ap.parse_args(argv)
    if a.backend == "remote" and not a.target:
        ap.error("--backend remote needs --target HOST:PORT")
    cfg = Config(data=a.data, bits=a.bits, epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, seed=a.seed)
    engine = make_engine(a.engine, **({"backend": a.backend, "target": a.target, "workers": a.workers,
                                       "djn": a.djn} if a.engine == "accel" else {}))
    label = f"accel-{a.backend}{'-djn' if a.djn else ''}" if a.engine == "accel" else a.engine
    res = run(engine, cfg, label)
    out = [asdict(res)]
    print(f"{label}: {cfg.data}, {cfg.bits}-bit, {cfg.epochs} epochs: "
          f"{np.mean(res.sec_per_epoch):.3f} s/epoch, loss {res.loss[0]:.5f} -> {res.loss[-1]:.5f}, "
          f"test AUC {res.auc:.5f}, accuracy {res.accuracy:.5f}")
    rc = 0
    if a.check:
        ref = run(PlainEngine(), cfg)
        out.append(asdict(ref))
        dw = max(np.abs(np.subtract(res.w_guest, ref.w_guest)).max(),
                 np.abs(np.subtract(res.w_host, ref.w_host)).max())
        dl = np.abs(np.subtract(res.loss, ref.loss)).max()
        same = dw < 1e-8 and dl < 1e-8 and res.auc == ref.auc
        print(f"plaintext reference: AUC {ref.auc:.5f}, accuracy {ref.accuracy:.5f}; "
              f"max |dw| {dw:.2e}, max |dloss| {dl:.2e}: {'same model' if same else 'DIFFERENT MODEL'}")
        rc = 0 if same else 1
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
