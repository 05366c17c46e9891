"""FATE 1.x drop-in: batched ``PaillierEncrypt`` entry points on he-accel backends.

FATE 1.x checks ``isinstance`` against its own wire classes and eggroll unpickles through a
whitelist, so the plugin keeps FATE's classes and patches methods of the existing
``federatedml.secureprotol.encrypt.PaillierEncrypt``::

    from accel.integrations import fate1
    fate1.install()          # backend from HEA_FATE1_BACKEND, default "auto"

Afterwards ``encrypt_list``, ``decrypt_list``, ``recursive_*`` and ``distribute_*`` (one
partition at a time, through ``mapPartitions``) run as whole batches, and ``raw_encrypt`` /
``raw_decrypt`` go through the backend too. They return FATE's own
``PaillierEncryptedNumber`` objects with Python ``int`` ciphertexts, in FATE 1.x's encoding
(BASE 16, value = m * 16^-exponent with exponent >= 0 below 2^53 and negative above,
``max_int = n // 3 - 1``, alignment raises the smaller exponent), so peers running stock FATE
read them unchanged. The raw paths take what stock takes (any Python int, encrypted mod n)
and refuse what it refuses (TypeError for anything else).

``install(gradient=True)`` also replaces HeteroLR's ``HeteroGradientBase.compute_gradient``
(``sum_i x_i * [d_i]`` per partition, then the intercept and the mean) with one encrypted
matrix-vector product per partition, on FATE's real call: tables of ``Instance`` with dense or
sparse features, ``need_average``, the ``fixed_point_encoder``; a plaintext ``fore_gradient``
(the asynchronous path) goes to stock. Every entry keeps its own exponent, as stock's, so the
gradient is stock's plaintext at stock's exponents. :func:`batch_histogram` is SecureBoost's
per-(sample, feature) histogram loop as grouped sums.

Differences from stock, all invisible in results: ``raw_decrypt`` does not obfuscate the
ciphertext before decrypting it (stock pays one modexp for that, with no effect on the
plaintext) and refuses a ciphertext of another key (stock decrypts it to garbage); values come
back from encryption already obfuscated and marked so.
"""
from __future__ import annotations

import functools
import importlib
import threading
import weakref
from collections.abc import Iterable
from typing import Any, Sequence

import numpy as np

from ..backends import Backend
from ..encoding import BASE, FixedPointCodec
from ..keys import PrivateKey, PublicKey
from . import _batch
from ._batch import LazyBackend

__all__ = ["batch_gradient", "batch_histogram", "configure", "decrypt_values", "encrypt_values",
           "install", "installed", "raw_decrypt_values", "raw_encrypt_values", "uninstall"]

ENCRYPT_MODULE = "federatedml.secureprotol.encrypt"
PAILLIER_MODULE = "federatedml.secureprotol.fate_paillier"
GRADIENT_MODULE = "federatedml.optim.gradient.hetero_linear_model_gradient"

_backend = LazyBackend("HEA_FATE1_BACKEND")


def configure(backend: Backend | str | None = None, **kwargs: Any) -> None:
    """Choose the backend (a name or an instance; see :class:`_batch.LazyBackend`)."""
    _backend.configure(backend, **kwargs)


def _wire():
    return importlib.import_module(PAILLIER_MODULE)


# -- keys (converted once per key object, held weakly: nothing added to FATE's objects) -----
_public: "weakref.WeakKeyDictionary[Any, PublicKey]" = weakref.WeakKeyDictionary()
_private: "weakref.WeakKeyDictionary[Any, PrivateKey]" = weakref.WeakKeyDictionary()
_key_lock = threading.RLock()


def _pk(public_key: Any) -> PublicKey:
    if public_key is None:
        raise ValueError("no public key set on this PaillierEncrypt")
    with _key_lock:
        got = _public.get(public_key)
        if got is None or got.n != public_key.n:
            got = _public[public_key] = PublicKey(int(public_key.n))
        return got


def _sk(private_key: Any) -> PrivateKey:
    if private_key is None:
        raise ValueError("no private key set on this PaillierEncrypt")
    with _key_lock:
        got = _private.get(private_key)
        if got is None or got.public_key.n != private_key.public_key.n:
            got = _private[private_key] = PrivateKey(_pk(private_key.public_key), int(private_key.p),
                                                     int(private_key.q))
        return got


def _codec(pk: PublicKey) -> FixedPointCodec:
    return FixedPointCodec(pk, "fate1")


def _numbers(public_key: Any, cts: Sequence[int], exps: Sequence[int], obfuscated: bool) -> list[Any]:
    cls = _wire().PaillierEncryptedNumber
    out = []
    for c, e in zip(cts, exps):
        x = cls(public_key, int(c), int(e))
        if obfuscated:
            x._PaillierEncryptedNumber__is_obfuscator = True
        out.append(x)
    return out


# -- batch primitives on FATE objects ----------------------------------------------------------
def encrypt_values(public_key: Any, values: Sequence[Any]) -> list[Any]:
    """``[public_key.encrypt(v) for v in values]`` in one batch (each with a fresh r^n)."""
    values = list(values)
    if not values:
        return []
    pk = _pk(public_key)
    codec = _codec(pk)
    enc = codec.encode(np.array(values, dtype=object))
    cts = _backend().raw_encrypt(pk, enc.encodings)
    return _numbers(public_key, cts, codec.to_public_exponent(enc.exponents).tolist(), True)


def raw_encrypt_values(public_key: Any, plaintexts: Sequence[Any], exponent: int = 0) -> list[Any]:
    """``PaillierEncrypt.raw_encrypt`` for many ints: E(m mod n) for any Python int, as stock
    encrypts negative and >= n ints; anything else (floats, numpy ints) is refused with stock's
    TypeError. Obfuscated ciphertexts at the given exponent, not marked obfuscated (as stock's)."""
    plaintexts = list(plaintexts)
    for m in plaintexts:
        if not isinstance(m, int):
            raise TypeError(f"plaintext should be int, but got: {type(m)}")
    if not plaintexts:
        return []
    pk = _pk(public_key)
    ms = [m % pk.n for m in plaintexts]
    return _numbers(public_key, _backend().raw_encrypt(pk, ms), [exponent] * len(ms), False)


def _ciphertexts(numbers: Sequence[Any], public_key: Any) -> tuple[list[int], list[int]]:
    cls = _wire().PaillierEncryptedNumber
    cts, exps = [], []
    for i, x in enumerate(numbers):
        if not isinstance(x, cls):
            raise TypeError(f"value[{i}] is a {type(x).__name__}, not a PaillierEncryptedNumber")
        if x.public_key != public_key:
            raise ValueError(f"value[{i}] was encrypted under another key")
        cts.append(x.ciphertext(be_secure=False))
        exps.append(x.exponent)
    return cts, exps


def raw_decrypt_values(private_key: Any, numbers: Sequence[Any]) -> list[int]:
    numbers = list(numbers)
    if not numbers:
        return []
    sk = _sk(private_key)
    cts, _ = _ciphertexts(numbers, private_key.public_key)
    return _backend().raw_decrypt(sk, cts)


def decrypt_values(private_key: Any, numbers: Sequence[Any]) -> list[Any]:
    """``[private_key.decrypt(x) for x in numbers]`` in one batch; FATE's decoding (an int at
    exponent 0, a float otherwise; OverflowError outside the two ranges)."""
    numbers = list(numbers)
    if not numbers:
        return []
    sk = _sk(private_key)
    cts, exps = _ciphertexts(numbers, private_key.public_key)
    plain = _backend().raw_decrypt(sk, cts)
    mants = _codec(sk.public_key).signed_mantissas(plain)
    return [m * pow(16, -e) for m, e in zip(mants, exps)]


# -- structure: FATE's _recursive_func, flattened into one batch --------------------------------
def _flatten(obj: Any, leaves: list[Any]) -> Any:
    if isinstance(obj, np.ndarray):
        return ("nd", obj.shape, [_flatten(o, leaves) for o in obj.reshape(-1)]
                if obj.ndim else [_flatten(obj.item(), leaves)])
    if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        return ("it", type(obj), [_flatten(o, leaves) for o in obj])
    leaves.append(obj)
    return ("leaf", len(leaves) - 1)


def _rebuild(spec: Any, results: list[Any]) -> Any:
    kind = spec[0]
    if kind == "leaf":
        return results[spec[1]]
    items = [_rebuild(s, results) for s in spec[2]]
    if kind == "nd":
        return np.reshape(np.array(items, dtype=object) if _is_objects(items) else items, spec[1])
    return spec[1](items)


def _is_objects(items: list[Any]) -> bool:
    return bool(items) and not isinstance(items[0], (int, float, np.number))


def _map_batched(obj: Any, batch_fn) -> Any:
    leaves: list[Any] = []
    spec = _flatten(obj, leaves)
    return _rebuild(spec, batch_fn(leaves))


def _partition(kvs, encrypter: Any, op: str, exponent: int = 0):
    items = list(kvs)
    values = _map_batched([v for _, v in items], _leaf_fn(encrypter, op, exponent))
    return list(zip([k for k, _ in items], values))


def _leaf_fn(encrypter: Any, op: str, exponent: int = 0):
    if op == "encrypt":
        return lambda leaves: encrypt_values(encrypter.public_key, leaves)
    if op == "decrypt":
        return lambda leaves: decrypt_values(encrypter.privacy_key, leaves)
    if op == "raw_encrypt":
        return lambda leaves: raw_encrypt_values(encrypter.public_key, leaves, exponent)
    if op == "raw_decrypt":
        return lambda leaves: raw_decrypt_values(encrypter.privacy_key, leaves)
    raise ValueError(op)


def _distribute(self: Any, X: Any, op: str, exponent: int = 0) -> Any:
    fn = functools.partial(_partition, encrypter=self, op=op, exponent=exponent)
    if hasattr(X, "mapPartitions"):
        return X.mapPartitions(fn, use_previous_behavior=False, preserves_partitioning=True)
    return X.mapValues(lambda v: _map_batched(v, _leaf_fn(self, op, exponent)))


# -- the batched SecureBoost histogram and HeteroLR gradient ------------------------------------
def batch_histogram(public_key: Any, encrypted: Sequence[Any], bin_index: Any, n_bins: int) -> list[list[Any]]:
    """hist[f][b] = sum of encrypted[i] over samples i whose feature f falls in bin b (SecureBoost's
    ``hist[node][fid][bin] += en_gh`` loop), as grouped sums: one alignment batch, then
    log2(samples per bin) addition batches. Empty bins hold E(0) = ciphertext 1."""
    pk = _pk(public_key)
    bins = np.asarray(bin_index, dtype=np.int64)
    if bins.ndim != 2 or bins.shape[0] != len(encrypted):
        raise ValueError("bin_index must be (samples x features) with one row per ciphertext")
    if bins.size and (bins.min() < 0 or bins.max() >= n_bins):
        raise ValueError(f"bin indices must be in [0, {n_bins})")
    cts, exps = _ciphertexts(list(encrypted), public_key)
    internal = [-e for e in exps]
    n_feat = bins.shape[1]
    groups: list[list[tuple[int, int]]] = [[] for _ in range(n_feat * n_bins)]
    for i, row in enumerate(bins.tolist()):
        for f, b in enumerate(row):
            groups[f * n_bins + b].append((cts[i], internal[i]))
    sums = _batch.reduce_groups(_backend(), pk, groups)
    flat = _numbers(public_key, [c for c, _ in sums], [-e for _, e in sums], False)
    return [flat[f * n_bins:(f + 1) * n_bins] for f in range(n_feat)]


def batch_gradient(public_key: Any, encrypted_d: Sequence[Any], X: Any, fit_intercept: bool) -> np.ndarray:
    """sum_i X[i, j] * [d_i] for each column j (and sum_i [d_i] with an intercept): HeteroLR's
    encrypted X^T [d], as one matrix-vector product, at stock's precision and exponents.

    Stock multiplies each [d_i] by x_ij encoded at x_ij's own exponent (ints at 0, floats keeping
    their 53 bits, |x| < 1e-200 as the int 0) and its running sum raises every term to the
    largest exponent of its column. Here each entry is encoded the same way and the alignment
    folds into the scalar (x_ij * 16^(E_j - e_ij - e(d_i))), so every column holds stock's
    plaintext at stock's exponent, whatever the scales of the columns. Returns an object array
    of PaillierEncryptedNumber (not obfuscated, as stock's products are not)."""
    pk = _pk(public_key)
    cts, d_exps = _ciphertexts(list(encrypted_d), public_key)
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != len(cts):
        raise ValueError(f"X of shape {X.shape} does not have one row per ciphertext ({len(cts)})")
    if X.dtype.kind not in "iubf":
        raise TypeError(f"X must hold ints or floats, not {X.dtype}")
    codec = _codec(pk)
    enc = codec.encode(X.astype(np.int64) if X.dtype.kind == "b" else X)
    mant = np.empty(X.size, dtype=object)
    mant[:] = enc.mantissas
    mant = mant.reshape(X.shape)
    x_exps = np.asarray(codec.to_public_exponent(enc.exponents), dtype=np.int64).reshape(X.shape)
    if fit_intercept:  # the bias column: each [d_i] itself, i.e. times the int 1
        mant = np.hstack([mant, np.ones((len(cts), 1), dtype=object)])
        x_exps = np.hstack([x_exps, np.zeros((len(cts), 1), dtype=np.int64)])
    term_exps = x_exps + np.asarray(d_exps, dtype=np.int64)[:, None]
    col_exps = term_exps.max(axis=0) if len(cts) else np.zeros(mant.shape[1], dtype=np.int64)
    shift = col_exps[None, :] - term_exps
    scalars = mant
    for i, j in zip(*np.nonzero(shift)):
        scalars[i, j] = mant[i, j] * BASE ** int(shift[i, j])
    if 53 + 4 * (int(shift.max()) if shift.size else 0) >= pk.n.bit_length() - 1:
        # wide gaps: the same plaintext mod n, as a scalar the backend takes (|k| < n)
        half = pk.n // 2
        for i, j in zip(*np.nonzero(shift)):
            k = int(scalars[i, j]) % pk.n
            scalars[i, j] = k - pk.n if k > half else k
    out = _backend().raw_matvec(pk, cts, scalars)
    return np.array(_numbers(public_key, out, col_exps.tolist(), False), dtype=object)


def _dense(features: Any) -> np.ndarray:
    """A row's features as stock reads them: an ndarray as is; a SparseVector written into
    float zeros of its shape."""
    if isinstance(features, np.ndarray):
        return features
    if hasattr(features, "get_all_data") and hasattr(features, "get_shape"):
        x = np.zeros(features.get_shape())
        for idx, v in features.get_all_data():
            x[idx] = v
        return x
    raise TypeError(f"features of type {type(features).__name__}: expected an ndarray or a SparseVector")


def _gradient_partition(rows: Iterable[Any], fixed_point_encoder: Any = None) -> Any:
    """One partition's sum_i x_i * [d_i] (FATE runs it in its worker processes). With FATE's
    ``fixed_point_encoder`` the features are its ints and the sum is decoded by it, as stock."""
    feats, ds = [], []
    for _, (features, d) in rows:
        feats.append(_dense(features))
        ds.append(d)
    if not ds:
        return None
    X = np.stack(feats)
    if fixed_point_encoder is not None:
        X = fixed_point_encoder.encode(X)
    g = batch_gradient(ds[0].public_key, ds, X, False)
    return fixed_point_encoder.decode(g) if fixed_point_encoder is not None else g


def _first_value(table: Any) -> Any:
    try:
        kv = table.first()
    except (RuntimeError, StopIteration):  # FATE's standalone tables raise on an empty table
        return None
    return None if kv is None else kv[1]


def _add(a: Any, b: Any) -> Any:
    return a + b


_stock_gradient: Any = None


def _compute_gradient(self: Any, data_instances: Any, fore_gradient: Any, fit_intercept: bool,
                      need_average: bool = True) -> Any:
    """``HeteroGradientBase.compute_gradient`` with the per-row ``feature * d`` loop batched per
    partition. Plaintext fore_gradients (the asynchronous path) and empty tables go to stock."""
    if not isinstance(_first_value(fore_gradient), _wire().PaillierEncryptedNumber):
        return _stock_gradient(self, data_instances, fore_gradient, fit_intercept, need_average)
    joined = data_instances.join(fore_gradient, lambda inst, d: (inst.features, d))
    part = functools.partial(_gradient_partition, fixed_point_encoder=getattr(self, "fixed_point_encoder", None))
    gradient = joined.applyPartitions(part).reduce(_add)
    if gradient is None:  # nothing joined: whatever stock does with that
        return _stock_gradient(self, data_instances, fore_gradient, fit_intercept, need_average)
    if fit_intercept:
        gradient = np.append(gradient, fore_gradient.reduce(_add))
    # stock's mean: each element times the encoded 1/n
    return gradient / data_instances.count() if need_average else gradient


# -- activation ----------------------------------------------------------------------------------
_saved: dict[tuple[Any, str], Any] = {}
_install_lock = threading.Lock()


def installed() -> bool:
    return bool(_saved)


def _patches() -> dict[str, Any]:
    def encrypt_list(self, values):
        return encrypt_values(self.public_key, list(values)) if self.public_key is not None else [None] * len(values)

    def decrypt_list(self, values):
        return decrypt_values(self.privacy_key, list(values)) if self.privacy_key is not None else [None] * len(values)

    def raw_encrypt(self, plaintext, exponent=0):
        if not isinstance(plaintext, int):
            raise TypeError(f"plaintext should be int, but got: {type(plaintext)}")
        return raw_encrypt_values(self.public_key, [plaintext], exponent)[0]

    def raw_decrypt(self, ciphertext):
        return raw_decrypt_values(self.privacy_key, [ciphertext])[0]

    return {
        "encrypt_list": encrypt_list,
        "decrypt_list": decrypt_list,
        "raw_encrypt": raw_encrypt,
        "raw_decrypt": raw_decrypt,
        "recursive_encrypt": lambda self, X: _map_batched(X, _leaf_fn(self, "encrypt")),
        "recursive_decrypt": lambda self, X: _map_batched(X, _leaf_fn(self, "decrypt")),
        "recursive_raw_encrypt": lambda self, X, exponent=0: _map_batched(X, _leaf_fn(self, "raw_encrypt", exponent)),
        "recursive_raw_decrypt": lambda self, X: _map_batched(X, _leaf_fn(self, "raw_decrypt")),
        "distribute_encrypt": lambda self, X: _distribute(self, X, "encrypt"),
        "distribute_decrypt": lambda self, X: _distribute(self, X, "decrypt"),
        "distribute_raw_encrypt": lambda self, X: _distribute(self, X, "raw_encrypt"),
        "distribute_raw_decrypt": lambda self, X: _distribute(self, X, "raw_decrypt"),
    }


def install(backend: Backend | str | None = None, *, gradient: bool = True, **backend_kwargs: Any) -> None:
    """Patch FATE 1.x's ``PaillierEncrypt`` (and, with ``gradient``, HeteroLR's host gradient
    when that module is importable). Idempotent; calling again only changes the backend."""
    global _stock_gradient
    if backend is not None or backend_kwargs:
        configure(backend, **backend_kwargs)
    with _install_lock:
        if _saved:
            return
        cls = importlib.import_module(ENCRYPT_MODULE).PaillierEncrypt
        for name, fn in _patches().items():
            _saved[(cls, name)] = cls.__dict__.get(name, _MISSING)
            fn.__name__ = name
            fn.__qualname__ = f"PaillierEncrypt.{name}"
            setattr(cls, name, fn)
        if gradient:
            try:
                grad_cls = importlib.import_module(GRADIENT_MODULE).HeteroGradientBase
            except ImportError:
                grad_cls = None
            if grad_cls is not None:
                _stock_gradient = grad_cls.compute_gradient
                _saved[(grad_cls, "compute_gradient")] = grad_cls.__dict__.get("compute_gradient", _MISSING)
                grad_cls.compute_gradient = _compute_gradient


_MISSING = object()


def uninstall() -> None:
    with _install_lock:
        for (owner, name), original in _saved.items():
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        _saved.clear()
