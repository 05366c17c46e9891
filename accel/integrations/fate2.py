"""FATE 2.x drop-in: the ``fate.arch.protocol.phe.paillier`` contract on he-accel backends.

Activate it with one line at the top level of every party's script::

    from accel.integrations import fate2
    fate2.install()                     # backend from HEA_FATE_BACKEND, default "auto"
    fate2.install("remote", target="appliance:50051")   # or an offload endpoint

At the top level, not inside ``run(ctx)``: FATE's standalone computing runs partitions in
spawned worker processes that re-import the main script, so a top-level ``install()`` runs in
them too. (A worker without it still computes correctly, with stock FATE: what it sends back
is read by this module as well, only not accelerated.)

``install()`` swaps ``keygen``, ``SK``, ``PK``, ``Coder`` and ``evaluator`` of FATE's
``fate.arch.protocol.phe.paillier`` module for the ones here, which is exactly what FATE's
``PHECipherBuilder.setup`` imports for ``kind="paillier"``: CoordinatedLR, SecureBoost and the
PHE tensors then run their encryption, decryption and ciphertext arithmetic as whole-vector
backend calls (GPU, all-core CPU, or the offload service).

Interoperability, by construction:

* What crosses a party boundary is FATE's own vocabulary. A ciphertext vector pickles as a
  ``fate_utils.paillier.CiphertextVector`` (same ciphertexts, same exponents), keys and coder as
  ``fate.arch.protocol.phe.paillier.PK/Coder`` wrapping fate_utils objects. FATE's restricted
  unpickler accepts them, and a peer running stock FATE reads them with stock code.
* This module's evaluator accepts fate_utils vectors wherever it accepts its own, so data from
  a stock peer flows in unchanged.
* Encoding is fate_utils' (BASE 16, ``exp = floor((frexp - 53) / 4)``, max_int = n // 2), so
  decrypted values and exponents match stock runs.

Nothing here holds a device handle: the backend is resolved lazily, once per process, so the
objects pickle into FATE's worker processes and each opens CUDA (or its gRPC channel) itself.

Like stock FATE, the private key object pickles (as a fate_utils ``SK``) when FATE itself
pickles it, e.g. into its own computing workers; this module never sends it anywhere.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import threading
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..backends import Backend
from ..encoding import BASE, FixedPointCodec
from ..keys import PrivateKey, PublicKey, generate_keypair
from . import _batch
from . import _fate_wire as wire
from ._batch import LazyBackend

try:
    import torch
    from fate_utils import paillier as _fu
except ImportError as e:  # pragma: no cover - needs the FATE environment
    raise ImportError("accel.integrations.fate2 needs torch and fate_utils (pip install pyfate==2.2.0)") from e

log = logging.getLogger(__name__)

__all__ = ["EV", "FV", "PK", "SK", "Coder", "configure", "evaluator", "install", "installed",
           "keygen", "uninstall"]

FATE_MODULE = "fate.arch.protocol.phe.paillier"

# -- the backend, resolved lazily per process ------------------------------------------------
_backend = LazyBackend("HEA_FATE_BACKEND")


def configure(backend: Backend | str | None = None, **kwargs: Any) -> None:
    """Choose the backend: a name (``"auto"``, ``"cpu"``, ``"gpu"``, ``"remote"`` with
    ``target=``) or a :class:`~accel.Backend` instance (used in this process only; a forked or
    spawned worker builds its own of the same name). Default: ``HEA_FATE_BACKEND`` or auto."""
    _backend.configure(backend, **kwargs)


def _fate_attr(name: str, fallback: Any) -> Any:
    """The class FATE's paillier module exposes under ``name`` now (ours once installed)."""
    mod = sys.modules.get(FATE_MODULE)
    if mod is None:
        try:
            import importlib

            mod = importlib.import_module(FATE_MODULE)
        except ImportError:
            return fallback
    return getattr(mod, name, fallback)


# -- keys ------------------------------------------------------------------------------------
def _public_key_of(obj: Any) -> PublicKey:
    if isinstance(obj, PK):
        return obj.public_key
    if isinstance(obj, PublicKey):
        return obj
    if isinstance(obj, _fu.PK):
        n, _, _ = wire.unpack_ints(obj.__getstate__(), 3)
        return PublicKey(n)
    inner = getattr(obj, "pk", None)  # FATE's stock wrapper
    if inner is not None and inner is not obj:
        return _public_key_of(inner)
    raise TypeError(f"expected a Paillier public key, got {type(obj).__name__}")


class PK:
    """Public key: ``encrypt_encoded(fv, obfuscate)`` and ``encrypt_encoded_scalar``."""

    def __init__(self, pk: Any):
        self.public_key = _public_key_of(pk)
        self.max_int = self.public_key.n // 2

    @property
    def pk(self) -> Any:
        """The equivalent fate_utils ``PK`` (what FATE's stock evaluator reads)."""
        n = self.public_key.n
        out = _fu.PK()
        out.__setstate__(wire.pack_ints([n, n * n, self.max_int]))
        return out

    def __reduce__(self):
        return (_fate_attr("PK", PK), (self.pk,))

    def __setstate__(self, state: dict) -> None:
        # a stock FATE PK pickled by a process without the plugin ({"pk": fate_utils PK})
        self.__init__(state["pk"] if "pk" in state else state["public_key"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PK) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"<he-accel fate2 PK {self.public_key.bits} bits {self.public_key.fingerprint}>"

    def encrypt_encoded(self, vec: "FV", obfuscate: bool) -> "EV":
        """Fresh ciphertexts, always obfuscated unless ``HEA_FATE_ALLOW_UNOBFUSCATED=1``.

        FATE 2.2.0 drops ``obfuscate=True`` for distributed tensors (CoordinatedLR's
        ``encrypt_tensor``), and an unobfuscated ``1 + m n`` reveals m to anyone; so a ciphertext
        that leaves this method is safe whatever the caller passed (safe by default). The
        evaluator's own deterministic encodings of plaintext operands do not come through here.
        """
        vec = FV.of(vec)
        pk = self.public_key
        if not len(vec):
            return EV([], [])
        honour_false = os.environ.get("HEA_FATE_ALLOW_UNOBFUSCATED") == "1"
        cts = _backend().raw_encrypt(pk, [v % pk.n for v in vec.values],
                                     obfuscate=bool(obfuscate) or not honour_false)
        return EV(cts, vec.exps)

    def _encrypt_deterministic(self, vec: "FV") -> "EV":
        """(1 + m n) mod n^2: only for plaintext operands combined at once with a ciphertext."""
        vec = FV.of(vec)
        pk = self.public_key
        if not len(vec):
            return EV([], [])
        return EV(_backend().raw_encrypt(pk, [v % pk.n for v in vec.values], obfuscate=False), vec.exps)

    def encrypt_encoded_scalar(self, val: Any, obfuscate: bool) -> "EV":
        """One ciphertext, as a length-1 vector (this module's evaluator broadcasts it)."""
        return self.encrypt_encoded(FV.of(val), obfuscate)


class SK:
    """Private key: ``decrypt_to_encoded(ev)`` by CRT on the backend."""

    def __init__(self, sk: Any):
        if isinstance(sk, SK):
            sk = sk.private_key
        if isinstance(sk, PrivateKey):
            self.private_key = sk
        elif isinstance(sk, _fu.SK):
            p, q, n = wire.unpack_ints(sk.__getstate__(), 10)[:3]
            self.private_key = PrivateKey(PublicKey(n), p, q)
        else:
            raise TypeError(f"expected a Paillier private key, got {type(sk).__name__}")

    @property
    def sk(self) -> Any:
        """The equivalent fate_utils ``SK`` (for stock code paths)."""
        k = self.private_key
        p, q = k.p, k.q
        out = _fu.SK()
        out.__setstate__(wire.pack_ints([p, q, p * q, p - 1, q - 1, k.psquare, k.qsquare,
                                         k.p_inverse, k.hp, k.hq]))
        return out

    def __reduce__(self):
        return (_fate_attr("SK", SK), (self.sk,))

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["sk"] if "sk" in state else state["private_key"])

    def __repr__(self) -> str:  # never the primes
        return f"<he-accel fate2 SK for {self.private_key.public_key!r}>"

    def decrypt_to_encoded(self, vec: Any) -> "FV":
        sk = self.private_key
        v = EV.of(vec, sk.public_key)
        if not len(v):
            return FV([], [])
        return FV(_backend().raw_decrypt(sk, v.cts), v.exps)


# -- vectors ---------------------------------------------------------------------------------
def _is_fu(x: Any, name: str) -> bool:
    """fate_utils' scalar types (``Plaintext``, ``Ciphertext``) exist but are not exported."""
    t = type(x)
    return t.__name__ == name and t.__module__.endswith("paillier") and hasattr(x, "__getstate__")


def _exps(e: Any, count: int) -> np.ndarray:
    out = np.asarray(e, dtype=np.int64).reshape(-1)
    if out.size == 1 and count != 1:
        out = np.full(count, int(out[0]), dtype=np.int64)
    if out.size != count:
        raise ValueError(f"{out.size} exponents for {count} values")
    return out


class FV:
    """Encoded plaintexts: ints (the value mod n, as fate_utils keeps them) and exponents."""

    __slots__ = ("values", "exps")

    def __init__(self, values: Sequence[int] = (), exps: Any = ()):
        self.values = [int(v) for v in values]
        self.exps = _exps(exps, len(self.values))

    def __setstate__(self, state: Any) -> None:
        values, exps = wire.unpack_fixedpoint_vector(state)
        self.values, self.exps = values, _exps(exps, len(values))

    @classmethod
    def of(cls, x: Any) -> "FV":
        if isinstance(x, FV):
            return x
        if isinstance(x, _fu.PlaintextVector) or _is_fu(x, "Plaintext"):
            state = x.__getstate__()
            if not isinstance(x, _fu.PlaintextVector):  # a scalar: prefix a count of one
                state = list(wire._U64.pack(1)) + list(state)
            values, exps = wire.unpack_fixedpoint_vector(state)
            return cls(values, exps)
        raise TypeError(f"expected encoded plaintexts, got {type(x).__name__}")

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"<he-accel fate2 FV len={len(self)}>"

    def __reduce__(self):
        cls = _fate_attr("PlaintextVector", _fu.PlaintextVector) if installed() else _fu.PlaintextVector
        return (cls, (), wire.pack_fixedpoint_vector(self.values, self.exps.tolist()))

    def get_stride(self, index: int, stride: int) -> "FV":
        s = index * stride
        return FV(self.values[s:s + stride], self.exps[s:s + stride])

    def tolist(self) -> list["FV"]:
        return [FV([v], [e]) for v, e in zip(self.values, self.exps.tolist())]


class EV:
    """Encrypted fixed-point vector: ciphertexts (Python ints in [1, n^2)) and exponents.

    Pickles as ``fate_utils.paillier.CiphertextVector``, so it crosses party boundaries (and
    FATE's restricted unpickler) as stock FATE's own type. ``len()`` works.
    """

    __slots__ = ("cts", "exps")

    def __init__(self, cts: Sequence[int] = (), exps: Any = ()):
        self.cts = list(cts)
        self.exps = _exps(exps, len(self.cts))

    def __setstate__(self, state: Any) -> None:
        # fate_utils' layout: what stock peers and this module's __reduce__ both write
        values, exps = wire.unpack_fixedpoint_vector(state)
        self.cts, self.exps = values, _exps(exps, len(values))

    @classmethod
    def of(cls, x: Any, public_key: PublicKey | None = None) -> "EV":
        """Ours as is; a fate_utils vector (or scalar) converted. fate_utils may hold a
        ciphertext as a negative integer (congruent mod n^2); with ``public_key`` every value
        is reduced into [0, n^2), without it (slicing, concatenating) they are kept as they are
        and reduced by the first operation that has the key."""
        if isinstance(x, EV):
            if public_key is not None and x._unreduced:
                ns = public_key.nsquare
                return cls([c % ns for c in x.cts], x.exps)
            return x
        if isinstance(x, _fu.CiphertextVector) or _is_fu(x, "Ciphertext"):
            state = x.__getstate__()
            if not isinstance(x, _fu.CiphertextVector):
                state = list(wire._U64.pack(1)) + list(state)
            values, exps = wire.unpack_fixedpoint_vector(state)
            if public_key is not None:
                ns = public_key.nsquare
                values = [v % ns for v in values]
            return cls(values, exps)
        raise TypeError(f"expected a ciphertext vector, got {type(x).__name__}")

    @property
    def _unreduced(self) -> bool:
        return any(c <= 0 for c in self.cts)

    def __len__(self) -> int:
        return len(self.cts)

    def __repr__(self) -> str:
        return f"<he-accel fate2 EV len={len(self)}>"

    def to_fate_utils(self) -> Any:
        out = _fu.CiphertextVector()
        out.__setstate__(wire.pack_fixedpoint_vector(self.cts, self.exps.tolist()))
        return out

    def __reduce__(self):
        # Rebuilt by the reader as ``fate.arch.protocol.phe.paillier.CiphertextVector()`` plus
        # ``__setstate__``: stock FATE's name for fate_utils' class, this class where the plugin
        # is installed. Without the plugin here, written as fate_utils' own class.
        cls = _fate_attr("CiphertextVector", _fu.CiphertextVector) if installed() else _fu.CiphertextVector
        return (cls, (), wire.pack_fixedpoint_vector(self.cts, self.exps.tolist()))

    def copy(self) -> "EV":
        return EV(self.cts, self.exps.copy())

    def tolist(self) -> list["EV"]:
        return [EV([c], [e]) for c, e in zip(self.cts, self.exps.tolist())]

    def slice(self, start: int, size: int) -> "EV":
        return EV(self.cts[start:start + size], self.exps[start:start + size])

    def slice_indexes(self, indexes: Sequence[int]) -> "EV":
        idx = [int(i) for i in indexes]
        return EV([self.cts[i] for i in idx], self.exps[idx])


# -- batched ciphertext arithmetic (all exponent alignment in whole-vector backend calls) ----
def _lower(pk: PublicKey, cts: list[int], exps: np.ndarray, target: np.ndarray) -> list[int]:
    return _batch.lower(_backend(), pk, cts, exps, target)


def _add(pk: PublicKey, a: EV, b: EV) -> EV:
    """Element-wise a + b. A ciphertext equal to 1 (FATE's zero) is the identity, exponent and
    all, as in fate_utils; otherwise both align down to the smaller exponent."""
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} vs {len(b)}")
    if not len(a):
        return EV([], [])
    cts, exps = list(a.cts), a.exps.copy()
    work = []
    for i, (x, y) in enumerate(zip(a.cts, b.cts)):
        if y == 1:
            continue
        if x == 1:
            cts[i], exps[i] = y, b.exps[i]
        else:
            work.append(i)
    if work:
        ea, eb = a.exps[work], b.exps[work]
        t = np.minimum(ea, eb)
        xa = _lower(pk, [a.cts[i] for i in work], ea, t)
        xb = _lower(pk, [b.cts[i] for i in work], eb, t)
        res = _backend().raw_add(pk, xa, xb)
        for j, i in enumerate(work):
            cts[i], exps[i] = res[j], t[j]
    return EV(cts, exps)


def _neg(pk: PublicKey, a: EV) -> EV:
    idx = [i for i, c in enumerate(a.cts) if c != 1]
    cts = list(a.cts)
    if idx:
        res = _backend().raw_mul(pk, [a.cts[i] for i in idx], [-1] * len(idx))
        for i, c in zip(idx, res):
            cts[i] = c
    return EV(cts, a.exps.copy())


def _broadcast(x: EV, count: int) -> EV:
    if len(x) == count:
        return x
    if len(x) == 1:
        return EV(x.cts * count, np.full(count, int(x.exps[0]), dtype=np.int64))
    raise ValueError(f"cannot broadcast {len(x)} values to {count}")


def _mul(pk: PublicKey, a: EV, b: FV) -> EV:
    """Element-wise a * b for encoded plaintexts b: c^k with the signed mantissa k; exponents
    add. Encodings in the gap (max_int, n - max_int) are refused, as in fate_utils."""
    if len(b) == 1 and len(a) != 1:
        b = FV(b.values * len(a), np.full(len(a), int(b.exps[0]), dtype=np.int64))
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} ciphertexts, {len(b)} plaintexts")
    n, max_int = pk.n, pk.n // 2
    ks = []
    for i, v in enumerate(b.values):
        v %= n
        if v <= max_int:
            ks.append(v)
        elif v >= n - max_int:
            ks.append(v - n)
        else:  # pragma: no cover - unreachable with max_int = n // 2
            raise ValueError(f"plaintext[{i}] is outside the encodable range")
    if not ks:
        return EV([], [])
    return EV(_backend().raw_mul(pk, a.cts, ks), a.exps + b.exps)


def _reduce_groups(pk: PublicKey, groups: list[list[tuple[int, int]]]) -> list[tuple[int, int]]:
    return _batch.reduce_groups(_backend(), pk, groups)


def _reduce_in_place(pk: PublicKey, a: EV) -> None:
    if a._unreduced:
        a.cts[:] = [c % pk.nsquare for c in a.cts]


def _scatter_add(pk: PublicKey, a: EV, pairs: Iterable[tuple[int, int]], b: EV, sign: int = 1) -> None:
    """In place: a[t] += b[s] (or -= with sign -1) for every (t, s), all targets at once."""
    _reduce_in_place(pk, a)
    src = b if sign > 0 else _neg(pk, b)
    groups: dict[int, list[tuple[int, int]]] = {}
    for t, s in pairs:
        g = groups.get(t)
        if g is None:
            g = groups[t] = [(a.cts[t], int(a.exps[t]))]
        g.append((src.cts[s], int(src.exps[s])))
    if not groups:
        return
    targets = list(groups)
    for t, (c, e) in zip(targets, _reduce_groups(pk, [groups[t] for t in targets])):
        if c != 1:  # an all-zero group leaves the target as it was
            a.cts[t], a.exps[t] = c, e


def _positions(x: Any) -> list[list[int]]:
    return [[int(p) for p in row] for row in x]


def _int_list(x: Any) -> list[int]:
    if isinstance(x, torch.Tensor):
        return [int(v) for v in x.detach().reshape(-1).tolist()]
    return [int(v) for v in x]


# -- the coder -------------------------------------------------------------------------------
class Coder:
    """fate_utils' fixed-point coder (BASE 16, max_int = n // 2), vectorised."""

    def __init__(self, coder: Any):
        if isinstance(coder, Coder):
            n, max_int = coder.n, coder.max_int
        elif isinstance(coder, (PublicKey, PK)):
            n = _public_key_of(coder).n
            max_int = n // 2
        elif isinstance(coder, _fu.Coder):
            n, max_int = wire.unpack_ints(coder.__getstate__(), 2)
        else:
            raise TypeError(f"expected a coder or public key, got {type(coder).__name__}")
        self.n, self.max_int = int(n), int(max_int)
        self._codec = FixedPointCodec(PublicKey(self.n), "fate2", max_int=self.max_int)

    @property
    def coder(self) -> Any:
        out = _fu.Coder()
        out.__setstate__(wire.pack_ints([self.n, self.max_int]))
        return out

    def __reduce__(self):
        return (_fate_attr("Coder", Coder), (self.coder,))

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["coder"] if "coder" in state else PublicKey(state["n"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Coder) and (other.n, other.max_int) == (self.n, self.max_int)

    def __hash__(self) -> int:
        return hash((self.n, self.max_int))

    # signed mantissas of an FV, with fate_utils' corrupted/overflow checks
    def _mantissas(self, fv: Any) -> tuple[list[int], list[int]]:
        fv = FV.of(fv)
        return self._codec.signed_mantissas([v % self.n for v in fv.values]), fv.exps.tolist()

    # -- floats and ints, vectors ----------------------------------------------------------
    def _encode_array(self, arr: np.ndarray, integer: bool) -> FV:
        arr = np.asarray(arr).reshape(-1)
        if integer:
            vals = [int(v) for v in arr.tolist()]
            for i, v in enumerate(vals):
                if abs(v) > self.max_int:
                    raise ValueError(f"value[{i}] exceeds max_int")
            return FV([v % self.n for v in vals], np.zeros(len(vals), dtype=np.int64))
        enc = self._codec.encode(arr.astype(np.float64))
        return FV(enc.encodings, enc.exponents)

    def encode_f64_vec(self, vec: Any) -> FV:
        return self._encode_array(_np(vec, np.float64), False)

    def encode_f32_vec(self, vec: Any) -> FV:
        return self._encode_array(_np(vec, np.float32).astype(np.float64), False)

    def encode_i64_vec(self, vec: Any) -> FV:
        return self._encode_array(_np(vec, np.int64), True)

    def encode_i32_vec(self, vec: Any) -> FV:
        return self._encode_array(_np(vec, np.int32), True)

    def _decode_floats(self, fv: Any) -> np.ndarray:
        fv = FV.of(fv)
        out = self._codec.decode([v % self.n for v in fv.values], fv.exps)
        # fate_utils turns a non-negative exponent's integer into f64 toward zero (rug's
        # Integer::to_f64), which differs from round-to-nearest beyond 2^53
        big = np.flatnonzero((fv.exps >= 0) & (np.abs(out) > 2.0**53))
        if big.size:
            mants = self._codec.signed_mantissas([fv.values[i] % self.n for i in big.tolist()])
            for i, m in zip(big.tolist(), mants):
                out[i] = _to_f64_toward_zero(m, 4 * int(fv.exps[i]))
        return out

    def _decode_ints(self, fv: Any) -> list[int]:
        mants, exps = self._mantissas(fv)
        out = []
        for m, e in zip(mants, exps):
            v = m << (4 * e) if e >= 0 else m >> (-4 * e)  # fate_utils: a shift, i.e. floor
            out.append(((v + (1 << 63)) % (1 << 64)) - (1 << 63))
        return out

    def decode_f64_vec(self, vec: Any) -> torch.Tensor:
        return torch.tensor(self._decode_floats(vec), dtype=torch.float64)

    def decode_f32_vec(self, vec: Any) -> torch.Tensor:
        return torch.tensor(self._decode_floats(vec).astype(np.float32))

    def decode_i64_vec(self, vec: Any) -> torch.Tensor:
        return torch.tensor(self._decode_ints(vec), dtype=torch.int64)

    def decode_i32_vec(self, vec: Any) -> torch.Tensor:
        # fate_utils decodes i32 through f64 and a saturating cast
        f = self._decode_floats(vec)
        return torch.tensor(np.clip(np.trunc(f), -2**31, 2**31 - 1).astype(np.int32))

    # -- scalars (length-1 FVs) ------------------------------------------------------------
    def encode_f64(self, val: float) -> FV:
        return self.encode_f64_vec(np.array([float(val)]))

    def encode_f32(self, val: float) -> FV:
        return self.encode_f32_vec(np.array([val], dtype=np.float32))

    def encode_i64(self, val: int) -> FV:
        return self._encode_array(np.array([int(val)], dtype=object), True)

    def encode_i32(self, val: int) -> FV:
        return self.encode_i64(val)

    def decode_f64(self, val: Any) -> float:
        return float(self._decode_floats(val)[0])

    def decode_f32(self, val: Any) -> float:
        return float(np.float32(self._decode_floats(val)[0]))

    def decode_i64(self, val: Any) -> int:
        return self._decode_ints(val)[0]

    def decode_i32(self, val: Any) -> int:
        return int(self.decode_i32_vec(val)[0])

    # -- FATE's tensor-level API (same dispatch as the stock Coder) ------------------------
    def encode_tensor(self, tensor: torch.Tensor, dtype: torch.dtype = None) -> FV:
        return self.encode_vec(tensor.flatten(), dtype=tensor.dtype)

    def decode_tensor(self, tensor: Any, dtype: torch.dtype, shape: torch.Size = None, device=None) -> torch.Tensor:
        data = self.decode_vec(tensor, dtype)
        if shape is not None:
            data = data.reshape(shape)
        if device is not None:
            data = data.to(device.to_torch_device())
        return data

    def encode_vec(self, vec: torch.Tensor, dtype: torch.dtype = None) -> FV:
        if dtype is None:
            dtype = vec.dtype
        elif dtype != vec.dtype:
            vec = vec.to(dtype=dtype)
        enc = {torch.float64: self.encode_f64_vec, torch.float32: self.encode_f32_vec,
               torch.int64: self.encode_i64_vec, torch.int32: self.encode_i32_vec}.get(dtype)
        if enc is None:
            raise NotImplementedError(f"{vec.dtype} not supported")
        return enc(vec)

    def decode_vec(self, vec: Any, dtype: torch.dtype) -> torch.Tensor:
        dec = {torch.float64: self.decode_f64_vec, torch.float32: self.decode_f32_vec,
               torch.int64: self.decode_i64_vec, torch.int32: self.decode_i32_vec}.get(dtype)
        if dec is None:
            raise NotImplementedError(f"{dtype} not supported")
        return dec(vec)

    def encode(self, val: Any, dtype=None) -> FV:
        if isinstance(val, torch.Tensor):
            assert val.ndim == 0, "only scalar supported"
            dtype = val.dtype
            val = val.item()
        enc = {torch.float64: self.encode_f64, torch.float32: self.encode_f32,
               torch.int64: self.encode_i64, torch.int32: self.encode_i32}.get(dtype)
        if enc is None:
            raise NotImplementedError(f"{dtype} not supported")
        return enc(val)

    # -- packing (SecureBoost's g/h) ---------------------------------------------------------
    def pack_floats(self, float_tensor: Any, offset_bit: int, pack_num: int, precision: int) -> FV:
        """Chunks of ``pack_num`` floats as one integer each: x = (x << offset_bit) +
        round(v * 2^precision), rounding half away from zero as fate_utils does; exponent 0."""
        vals = _np(float_tensor, np.float64).reshape(-1)
        scaled = np.ldexp(vals, int(precision))
        mag = np.abs(scaled)
        rounded = np.where(mag >= 2.0**52, mag, np.floor(mag + 0.5)) * np.sign(scaled)
        ints = [int(v) for v in rounded.tolist()]
        packed = []
        for s in range(0, len(ints), pack_num):
            acc = 0
            for v in ints[s:s + pack_num]:
                acc = (acc << offset_bit) + v
            packed.append(acc % self.n)
        return FV(packed, np.zeros(len(packed), dtype=np.int64))

    def unpack_floats(self, packed: Any, offset_bit: int, pack_num: int, precision: int,
                      total_num: int) -> torch.Tensor:
        fv = FV.of(packed)
        mask = (1 << offset_bit) - 1
        out: list[float] = []
        left = total_num
        for sig in fv.values:
            k = min(left, pack_num)
            part = []
            for _ in range(k):
                part.append(_to_f64_toward_zero(sig & mask, -precision))
                sig >>= offset_bit
            out.extend(reversed(part))
            left -= k
        return torch.tensor(out)

    def pack_vec(self, vec: torch.LongTensor, num_shift_bit: int, num_elem_each_pack: int) -> FV:
        ints = _int_list(vec)
        packed = []
        for s in range(0, len(ints), num_elem_each_pack):
            acc = 0
            for v in ints[s:s + num_elem_each_pack]:
                acc = (acc << num_shift_bit) + (v & ((1 << 64) - 1))
            packed.append(acc % self.n)
        return FV(packed, np.zeros(len(packed), dtype=np.int64))

    def unpack_vec(self, vec: Any, num_shift_bit: int, num_elem_each_pack: int, total_num: int) -> torch.LongTensor:
        fv = FV.of(vec)
        mask = (1 << num_shift_bit) - 1
        out: list[int] = []
        left = total_num
        for sig in fv.values:
            k = min(left, num_elem_each_pack)
            part = []
            for _ in range(k):
                part.append(sig & mask)
                sig >>= num_shift_bit
            out.extend(reversed(part))
            left -= k
        return torch.LongTensor([((v + (1 << 63)) % (1 << 64)) - (1 << 63) for v in out])


def _to_f64_toward_zero(x: int, shift: int) -> float:
    """x * 2^shift as an f64 rounded toward zero: rug's ``to_f64`` (fate_utils' unpacking and
    integer decoding), not Python's round-to-nearest. Ties in SecureBoost's split gains make
    the last bit matter for identical trees."""
    mag = abs(x)
    drop = mag.bit_length() - 53
    if drop > 0:
        mag >>= drop
        shift += drop
    v = math.ldexp(float(mag), shift)
    return -v if x < 0 else v


def _np(x: Any, dtype: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def keygen(key_size: int) -> tuple[SK, PK, Coder]:
    """``(SK, PK, Coder)`` for a fresh key with |n| = key_size bits (primes from the OS CSPRNG)."""
    pk, sk = generate_keypair(int(key_size), allow_insecure=os.environ.get("HEA_ALLOW_INSECURE_KEYS") == "1")
    return SK(sk), PK(pk), Coder(pk)


# -- the evaluator ---------------------------------------------------------------------------
def _in_place(fn):
    """An in-place op on this module's EV. A fate_utils target (e.g. from a process without the
    plugin) is converted, updated, and written back through its own ``__setstate__``, so the
    caller's object changes as FATE expects."""
    import functools

    @functools.wraps(fn)
    def wrapper(pk, a, *args, **kwargs):
        if isinstance(a, EV):
            return fn(pk, a, *args, **kwargs)
        ours = EV.of(a, _pkey(pk))
        if args and args[0] is a:  # a += a[...]
            args = (ours,) + args[1:]
        fn(pk, ours, *args, **kwargs)
        a.__setstate__(wire.pack_fixedpoint_vector(ours.cts, ours.exps.tolist()))

    return staticmethod(wrapper)


def _pkey(pk: Any) -> PublicKey:
    return _public_key_of(pk)


class evaluator:  # noqa: N801 - the name FATE imports
    """FATE's ``TensorEvaluator`` static methods, each one or a few whole-vector backend calls."""

    @staticmethod
    def add(a: Any, b: Any, pk: Any) -> EV:
        key = _pkey(pk)
        a, b = EV.of(a, key), EV.of(b, key)
        return _add(key, a, _broadcast(b, len(a)))

    @staticmethod
    def add_plain(a: Any, b: torch.Tensor, pk: Any, coder: Coder, output_dtype=None) -> EV:
        if output_dtype is None:
            output_dtype = b.dtype
        encrypted = PK(pk)._encrypt_deterministic(coder.encode_tensor(b, dtype=output_dtype))
        return evaluator.add(a, encrypted, pk)

    @staticmethod
    def add_plain_scalar(a: Any, b: Any, pk: Any, coder: Coder, output_dtype) -> EV:
        encrypted = PK(pk)._encrypt_deterministic(FV.of(coder.encode(b, dtype=output_dtype)))
        return evaluator.add(a, encrypted, pk)

    @staticmethod
    def sub(a: Any, b: Any, pk: Any) -> EV:
        key = _pkey(pk)
        a, b = EV.of(a, key), EV.of(b, key)
        return _add(key, a, _neg(key, _broadcast(b, len(a))))

    @staticmethod
    def sub_plain(a: Any, b: torch.Tensor, pk: Any, coder: Coder, output_dtype=None) -> EV:
        if output_dtype is None:
            output_dtype = b.dtype
        encrypted = PK(pk)._encrypt_deterministic(coder.encode_tensor(b, dtype=output_dtype))
        return evaluator.sub(a, encrypted, pk)

    @staticmethod
    def sub_plain_scalar(a: Any, b: Any, pk: Any, coder: Coder, output_dtype) -> EV:
        encrypted = PK(pk)._encrypt_deterministic(FV.of(coder.encode(b, dtype=output_dtype)))
        return evaluator.sub(a, encrypted, pk)

    @staticmethod
    def rsub(a: Any, b: Any, pk: Any) -> EV:
        key = _pkey(pk)
        a, b = EV.of(a, key), EV.of(b, key)
        return _add(key, _neg(key, a), _broadcast(b, len(a)))

    @staticmethod
    def rsub_plain(a: Any, b: torch.Tensor, pk: Any, coder: Coder, output_dtype=None) -> EV:
        if output_dtype is None:
            output_dtype = b.dtype
        encrypted = PK(pk)._encrypt_deterministic(coder.encode_tensor(b, dtype=output_dtype))
        return evaluator.rsub(a, encrypted, pk)

    @staticmethod
    def rsub_plain_scalar(a: Any, b: Any, pk: Any, coder: Coder, output_dtype) -> EV:
        encrypted = PK(pk)._encrypt_deterministic(FV.of(coder.encode(b, dtype=output_dtype)))
        return evaluator.rsub(a, encrypted, pk)

    @staticmethod
    def mul_plain(a: Any, b: torch.Tensor, pk: Any, coder: Coder, output_dtype=None) -> EV:
        if output_dtype is None:
            output_dtype = b.dtype
        key = _pkey(pk)
        return _mul(key, EV.of(a, key), coder.encode_tensor(b, dtype=output_dtype))

    @staticmethod
    def mul_plain_scalar(a: Any, b: Any, pk: Any, coder: Coder, output_dtype) -> EV:
        key = _pkey(pk)
        return _mul(key, EV.of(a, key), coder.encode(b, dtype=output_dtype))

    @staticmethod
    def _matvec_columns(key: PublicKey, cols: list[EV], B: np.ndarray, coder: Coder) -> list[EV]:
        """For each encrypted column x (length K) and plain matrix B (K x J): x^T B, one
        ``raw_matvec`` per column. B is encoded per output column at that column's finest
        exponent (exact for floats), and x is aligned to its finest exponent, so every term of
        a sum shares one exponent."""
        K, J = B.shape
        integer = B.dtype.kind in "iu"
        if integer:
            Bi = [[int(v) for v in row] for row in B.tolist()]
            col_exp = np.zeros(J, dtype=np.int64)
        else:
            flat = coder._codec.encode(B.astype(np.float64).reshape(-1))
            e = flat.exponents.reshape(K, J)
            col_exp = e.min(axis=0) if K else np.zeros(J, dtype=np.int64)
            Bi = [[0] * J for _ in range(K)]
            for k in range(K):
                for j in range(J):
                    m = flat.mantissas[k * J + j]
                    Bi[k][j] = m * BASE ** int(e[k, j] - col_exp[j])
        be = _backend()
        out = []
        for x in cols:
            live = [i for i, c in enumerate(x.cts) if c != 1]
            if not live:
                out.append(EV([1] * J, np.zeros(J, dtype=np.int64)))
                continue
            t = int(x.exps[live].min())
            xs = _lower(key, [x.cts[i] for i in live], x.exps[live], np.full(len(live), t, dtype=np.int64))
            rows = [Bi[i] for i in live]
            res = be.raw_matvec(key, xs, rows)
            out.append(EV(res, t + col_exp))
        return out

    @staticmethod
    def matmul(a: Any, b: torch.Tensor, a_shape, b_shape, pk: Any, coder: Coder, output_dtype) -> EV:
        """Encrypted a (M x K, row-major) @ plain b (K x J) -> M x J, row-major."""
        key = _pkey(pk)
        a = EV.of(a, key)
        M, K = _shape2(a_shape, row=True)
        B = _np(b.to(output_dtype) if output_dtype is not None else b, None).reshape(_shape2(b_shape, row=False))
        rows = [a.slice(i * K, K) for i in range(M)]
        res = evaluator._matvec_columns(key, rows, B, coder)
        return _cat(res) if res else EV([], [])

    @staticmethod
    def rmatmul(a: Any, b: torch.Tensor, a_shape, b_shape, pk: Any, coder: Coder, output_dtype) -> EV:
        """Plain b (I x K) @ encrypted a (K x J) -> I x J, row-major: column j of the result is
        b @ a[:, j], i.e. a[:, j]^T b^T."""
        key = _pkey(pk)
        a = EV.of(a, key)
        K, J = _shape2(a_shape, row=False)
        I = _shape2(b_shape, row=True)[0]
        B = _np(b.to(output_dtype) if output_dtype is not None else b, None).reshape(I, K)
        cols = [a.slice_indexes(range(j, K * J, J)) for j in range(J)]
        res = evaluator._matvec_columns(key, cols, np.ascontiguousarray(B.T), coder)
        cts, exps = [0] * (I * J), np.zeros(I * J, dtype=np.int64)
        for j, col in enumerate(res):
            for i in range(I):
                cts[i * J + j] = col.cts[i]
                exps[i * J + j] = col.exps[i]
        return EV(cts, exps)

    @staticmethod
    def zeros(size, dtype=None) -> EV:
        return EV([1] * int(size), np.zeros(int(size), dtype=np.int64))

    @staticmethod
    def _i_add(pk: Any, a: EV, b: Any, sa: int, sb: int, size: Optional[int], sign: int) -> None:
        key = _pkey(pk)
        same = b is a
        _reduce_in_place(key, a)
        b = EV.of(b, key)
        if size is None:
            size = min(len(a) - sa, len(b) - sb)
        if sa + size > len(a) or sb + size > len(b):
            raise IndexError(f"range out of bounds: sa={sa}, sb={sb}, size={size}, sizes {len(a)}, {len(b)}")
        if size <= 0:
            return
        if same and sa != sb and abs(sa - sb) < size:
            # overlapping self-update: element by element, reading updated values, as fate_utils
            for k in range(size):
                one = EV([a.cts[sb + k]], a.exps[sb + k:sb + k + 1])
                if sign < 0:
                    one = _neg(key, one)
                r = _add(key, EV([a.cts[sa + k]], a.exps[sa + k:sa + k + 1]), one)
                a.cts[sa + k], a.exps[sa + k] = r.cts[0], r.exps[0]
            return
        src = b.slice(sb, size)
        if sign < 0:
            src = _neg(key, src)
        r = _add(key, a.slice(sa, size), src)
        a.cts[sa:sa + size] = r.cts
        a.exps[sa:sa + size] = r.exps

    @_in_place
    def i_add(pk: Any, a: EV, b: Any, sa=0, sb=0, size: Optional[int] = None) -> None:
        """In place: a[sa:sa+size] += b[sb:sb+size] (size None: as much as both have)."""
        evaluator._i_add(pk, a, b, sa, sb, size, 1)

    @_in_place
    def i_sub(pk: Any, a: EV, b: Any, sa=0, sb=0, size: Optional[int] = None) -> None:
        """In place: a[sa:sa+size] -= b[sb:sb+size]."""
        evaluator._i_add(pk, a, b, sa, sb, size, -1)

    @staticmethod
    def slice(a: Any, start: int, size: int) -> EV:
        return EV.of(a).slice(int(start), int(size))

    @staticmethod
    def intervals_slice(a: Any, intervals: List[Tuple[int, int]]) -> EV:
        a = EV.of(a)
        cts: list[int] = []
        exps = []
        for s, e in intervals:
            if e > len(a):
                raise IndexError(f"end index out of range: start={s}, end={e}, data_size={len(a)}")
            cts.extend(a.cts[s:e])
            exps.append(a.exps[s:e])
        return EV(cts, np.concatenate(exps) if exps else [])

    @staticmethod
    def cat(list: List[Any]) -> EV:  # noqa: A002 - FATE's parameter name
        return _cat([EV.of(x) for x in list])

    @_in_place
    def i_shuffle(pk: Any, a: EV, indices: Any) -> None:
        """In place: a = a[indices]."""
        idx = _int_list(indices)
        if sorted(idx) != list(range(len(a))):
            raise ValueError("indices must be a permutation of the vector's positions")
        a.cts[:] = [a.cts[i] for i in idx]
        a.exps[:] = a.exps[idx]

    @staticmethod
    def shuffle(pk: Any, a: Any, indices: Any) -> EV:
        return EV.of(a, _pkey(pk)).slice_indexes(_int_list(indices))

    @_in_place
    def i_update(pk: Any, a: EV, b: Any, positions, stride: int) -> None:
        """In place: for each row i of ``positions`` and each p in it,
        a[p*stride : p*stride+stride] += b[i*stride : i*stride+stride]."""
        key = _pkey(pk)
        b = EV.of(b, key)
        pairs = ((p * stride + k, i * stride + k)
                 for i, row in enumerate(_positions(positions)) for p in row for k in range(stride))
        _scatter_add(key, a, pairs, b)

    @_in_place
    def i_update_with_masks(pk: Any, a: EV, b: Any, positions, masks, stride: int) -> None:
        """As :meth:`i_update`, with row i of ``positions`` taking its values from the i-th
        position of b whose mask is true."""
        key = _pkey(pk)
        b = EV.of(b, key)
        value_rows = [i for i, m in enumerate(_int_list(masks)) if m]
        pairs = ((p * stride + k, v * stride + k)
                 for v, row in zip(value_rows, _positions(positions)) for p in row for k in range(stride))
        _scatter_add(key, a, pairs, b)

    @_in_place
    def chunking_cumsum_with_step(pk: Any, a: EV, chunk_sizes: List[int], step: int) -> None:
        """In place: within each chunk, a[j] += a[j - step] running left to right (a prefix sum
        per residue class), computed as a log-depth scan of whole-batch additions."""
        key = _pkey(pk)
        seqs: list[list[int]] = []
        start = 0
        for size in chunk_sizes:
            for r in range(min(step, size)):
                seq = list(range(start + r, start + size, step))
                if len(seq) > 1:
                    seqs.append(seq)
            start += size
        if start > len(a):
            raise IndexError("chunk sizes exceed the vector")
        _reduce_in_place(key, a)
        # align each sequence to its finest non-zero exponent first: every sequence in one batch
        idx: list[int] = []
        tgt: list[int] = []
        for seq in seqs:
            live = [i for i in seq if a.cts[i] != 1]
            if live:
                t = int(a.exps[live].min())
                idx.extend(live)
                tgt.extend([t] * len(live))
        if idx:
            low = _lower(key, [a.cts[i] for i in idx], a.exps[idx], np.asarray(tgt, dtype=np.int64))
            for i, c, t in zip(idx, low, tgt):
                a.cts[i], a.exps[i] = c, t
        # Hillis-Steele: after the round with offset d, x[j] holds the sum of x[j-2d+1 .. j]
        d = 1
        while any(len(s) > d for s in seqs):
            tgt, src = [], []
            for seq in seqs:
                for j in range(len(seq) - 1, d - 1, -1):
                    tgt.append(seq[j])
                    src.append(seq[j - d])
            old = EV([a.cts[i] for i in src], a.exps[src])
            cur = EV([a.cts[i] for i in tgt], a.exps[tgt])
            r = _add(key, cur, old)
            for i, c, e in zip(tgt, r.cts, r.exps.tolist()):
                a.cts[i], a.exps[i] = c, e
            d *= 2

    @staticmethod
    def intervals_sum_with_step(pk: Any, a: Any, intervals: List[Tuple[int, int]], step: int) -> EV:
        """out[i*step + c] = sum of a[s + c], a[s + c + step], ... for interval i = (s, e)."""
        key = _pkey(pk)
        a = EV.of(a, key)
        out = evaluator.zeros(len(intervals) * step)
        pairs = ((i * step + (j - s) % step, j) for i, (s, e) in enumerate(intervals) for j in range(s, e))
        _scatter_add(key, out, pairs, a)
        return out

    @staticmethod
    def pack_squeeze(a: Any, pack_num: int, shift_bit: int, pk: Any) -> EV:
        """Each chunk of ``pack_num`` ciphertexts to one: E(sum_k x_k 2^(shift (L-1-k))), by
        Horner's rule over all chunks at once: acc = acc^(2^shift) * x_k for k = 1 .. L-1, two
        whole-batch backend calls per step and shift * (L-1) squarings per chunk (raising x_k to
        2^(shift (L-1-k)) directly would cost L/2 times more)."""
        key = _pkey(pk)
        a = EV.of(a, key)
        groups = [range(s, min(s + pack_num, len(a))) for s in range(0, len(a), pack_num)]
        if groups and (1 << (shift_bit * (len(groups[0]) - 1))) >= key.n:
            raise OverflowError("pack_num * shift_bit exceeds the key size")
        acc = [a.cts[g[0]] for g in groups]
        factor = 1 << shift_bit
        be = _backend()
        for k in range(1, len(groups[0]) if groups else 0):
            live = [gi for gi, g in enumerate(groups) if len(g) > k]
            raised = be.raw_mul(key, [acc[gi] for gi in live], [factor] * len(live))
            summed = be.raw_add(key, raised, [a.cts[groups[gi][k]] for gi in live])
            for gi, c in zip(live, summed):
                acc[gi] = c
        return EV(acc, np.zeros(len(groups), dtype=np.int64))


def _shape2(shape: Any, row: bool) -> tuple[int, int]:
    """A matmul operand's shape as 2-D: a vector is a row (left operand) or a column (right)."""
    dims = [int(d) for d in shape]
    if len(dims) == 2:
        return dims[0], dims[1]
    if len(dims) == 1:
        return (1, dims[0]) if row else (dims[0], 1)
    raise ValueError(f"matmul operands must be 1-D or 2-D, got shape {tuple(dims)}")


def _cat(parts: Sequence[EV]) -> EV:
    if not parts:
        return EV([], [])
    cts: list[int] = []
    for p in parts:
        cts.extend(p.cts)
    return EV(cts, np.concatenate([p.exps for p in parts]))


# -- activation ------------------------------------------------------------------------------
_NAMES = ("keygen", "SK", "PK", "Coder", "evaluator", "CiphertextVector", "PlaintextVector")
_saved: dict[str, Any] = {}
_install_lock = threading.Lock()


def installed() -> bool:
    return bool(_saved)


def install(backend: Backend | str | None = None, **backend_kwargs: Any) -> None:
    """Make FATE's ``kind="paillier"`` run on he-accel (see the module docstring).

    Call it in every party's process before the cipher is set up. Idempotent; calling it again
    only changes the backend."""
    import importlib

    if backend is not None or backend_kwargs:
        configure(backend, **backend_kwargs)
    with _install_lock:
        if _saved:
            return
        mod = importlib.import_module(FATE_MODULE)
        ours = {"keygen": keygen, "SK": SK, "PK": PK, "Coder": Coder, "evaluator": evaluator,
                "CiphertextVector": EV, "PlaintextVector": FV}
        for name in _NAMES:
            _saved[name] = getattr(mod, name)
            obj = ours[name]
            # pickled class references (FATE sends the evaluator class; vectors rebuild through
            # their class) must resolve under FATE's module, which every peer's restricted
            # unpickler admits and where stock FATE has the same names
            obj.__module__ = FATE_MODULE
            obj.__qualname__ = name
            setattr(mod, name, obj)
        log.info("he-accel serves FATE kind 'paillier' (backend %s)", _backend.describe())


def uninstall() -> None:
    """Restore FATE's stock implementation."""
    import importlib

    with _install_lock:
        if not _saved:
            return
        mod = importlib.import_module(FATE_MODULE)
        for name, obj in _saved.items():
            setattr(mod, name, obj)
        for name, obj in (("keygen", keygen), ("SK", SK), ("PK", PK), ("Coder", Coder),
                          ("evaluator", evaluator), ("EV", EV), ("FV", FV)):
            obj.__module__ = __name__
            obj.__qualname__ = name
        _saved.clear()
