"""python-paillier (``phe``) on he-accel: conversions, batch helpers, and an engine swap.

Three levels, pick one:

* **Conversions**: :func:`public_key_from_phe`, :func:`private_key_from_phe` and back
  (:func:`public_key_to_phe`, :func:`private_key_to_phe`); :func:`to_vector` turns a list of
  ``phe.EncryptedNumber`` into an :class:`accel.EncryptedVector` (one batch, any backend),
  :func:`from_vector` turns it back.
* **Batch helpers** that take and return phe objects: :func:`encrypt`, :func:`decrypt`,
  :func:`add`, :func:`mul`, :func:`sum_numbers`, :func:`dot`. Each is one backend call for
  the whole list, and the results interoperate with stock phe peers (same keys, same BASE-16
  encoding and exponents).
* **Engine swap**: :func:`install` routes phe's own arithmetic (``phe.paillier.powmod``,
  ``PaillierPublicKey.raw_encrypt``, ``PaillierPrivateKey.raw_decrypt``,
  ``EncryptedNumber._raw_add`` / ``_raw_mul`` / ``obfuscate``) through a backend, so code written
  against phe runs unchanged on ours. It is one element per call, so it proves the engine
  rather than speeding phe up; the batch helpers are the fast path. phe's own test suite runs
  this way (``pytest -p accel.integrations.phe_pytest --pyargs phe.tests``).

phe is GPLv3: it is installed and imported, never copied.
"""
from __future__ import annotations

import functools
import threading
import warnings
import weakref
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ..backends import Backend, default_backend, get_backend
from ..ciphertext import EncryptedVector
from ..encoding import FixedPointCodec
from ..keys import PrivateKey, PublicKey
from ..packing import ints_to_blob

try:
    from phe import paillier as _paillier
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("accel.integrations.phe needs python-paillier: pip install phe") from e

__all__ = [
    "PheEngine",
    "add",
    "decrypt",
    "dot",
    "encrypt",
    "from_vector",
    "install",
    "installed",
    "mul",
    "multiply",
    "private_key_from_phe",
    "private_key_to_phe",
    "public_key_from_phe",
    "public_key_to_phe",
    "sum_numbers",
    "to_vector",
    "uninstall",
]


# -- keys -----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _public_key(n: int) -> PublicKey:
    return PublicKey(n)


def public_key_from_phe(public_key: Any) -> PublicKey:
    """Our :class:`~accel.PublicKey` for a ``phe.PaillierPublicKey`` (cached per modulus)."""
    if not isinstance(public_key, _paillier.PaillierPublicKey):
        raise TypeError(f"expected a phe PaillierPublicKey, got {type(public_key).__name__}")
    return _public_key(int(public_key.n))


# Held weakly: it lives and dies with the phe key, and nothing is added to phe's object (which
# would then pickle our key along with it).
_private: "weakref.WeakKeyDictionary[Any, PrivateKey]" = weakref.WeakKeyDictionary()
_private_lock = threading.Lock()


def private_key_from_phe(private_key: Any) -> PrivateKey:
    """Our :class:`~accel.PrivateKey` for a ``phe.PaillierPrivateKey``."""
    if not isinstance(private_key, _paillier.PaillierPrivateKey):
        raise TypeError(f"expected a phe PaillierPrivateKey, got {type(private_key).__name__}")
    with _private_lock:
        cached = _private.get(private_key)
        if cached is not None and cached.p in (private_key.p, private_key.q):
            return cached
        sk = PrivateKey(public_key_from_phe(private_key.public_key), int(private_key.p), int(private_key.q))
        _private[private_key] = sk
        return sk


def public_key_to_phe(public_key: PublicKey) -> Any:
    return _paillier.PaillierPublicKey(public_key.n)


def private_key_to_phe(private_key: PrivateKey) -> Any:
    return _paillier.PaillierPrivateKey(public_key_to_phe(private_key.public_key),
                                        private_key.p, private_key.q)


def _resolve(backend: Backend | str | None) -> Backend:
    if backend is None:  # the library's one default, as for an EncryptedVector given none
        return default_backend()
    if isinstance(backend, str):
        return get_backend(backend)
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be a Backend or a backend name, got {type(backend).__name__}")
    return backend


# -- ciphertexts ----------------------------------------------------------------------------
def _mark_obfuscated(number: Any) -> Any:
    # Our ciphertexts leave the backend already obfuscated (a fresh r^n each); telling phe so
    # stops it obfuscating a second time on the first ``ciphertext()`` call.
    number._EncryptedNumber__is_obfuscated = True
    return number


def to_vector(numbers: Sequence[Any], *, backend: Backend | str | None = None) -> EncryptedVector:
    """One :class:`~accel.EncryptedVector` (phe convention) holding ``numbers``.

    The ciphertexts are taken as they are (``ciphertext(be_secure=False)``): converting does
    not obfuscate, just as phe's own arithmetic does not.
    """
    numbers = list(numbers)
    if not numbers:
        raise ValueError("to_vector needs at least one EncryptedNumber (it takes the key from them)")
    pub = numbers[0].public_key
    for i, x in enumerate(numbers):
        if not isinstance(x, _paillier.EncryptedNumber):
            raise TypeError(f"numbers[{i}] is a {type(x).__name__}, not a phe EncryptedNumber")
        if x.public_key != pub:
            raise ValueError(f"numbers[{i}] is under another public key")
    pk = public_key_from_phe(pub)
    cts = [x.ciphertext(be_secure=False) for x in numbers]
    exps = [x.exponent for x in numbers]
    return EncryptedVector(pk, ints_to_blob(cts, pk.ciphertext_width, "ciphertext"), exps,
                           codec=FixedPointCodec(pk, "phe"), backend=_resolve(backend))


def from_vector(vector: EncryptedVector, *, obfuscated: bool = False) -> list[Any]:
    """phe ``EncryptedNumber`` objects for an :class:`~accel.EncryptedVector`.

    ``obfuscated=True`` tells phe the ciphertexts are already fresh (e.g. straight from
    encryption or :meth:`EncryptedVector.rerandomize`), so phe will not obfuscate them again.
    """
    if vector.codec.convention.value == "fate1":
        raise ValueError("this vector uses FATE 1.x exponents; phe needs the phe convention")
    pub = public_key_to_phe(vector.public_key)
    out = [_paillier.EncryptedNumber(pub, c, int(e))
           for c, e in zip(vector.ciphertexts, vector.exponents.tolist())]
    if obfuscated:
        for x in out:
            _mark_obfuscated(x)
    return out


# -- batch helpers (phe objects in, phe objects out) ----------------------------------------
def encrypt(public_key: Any, values: Iterable[Any], *, precision: float | None = None,
            backend: Backend | str | None = None) -> list[Any]:
    """``[public_key.encrypt(v, precision) for v in values]`` as one batch on ``backend``."""
    pk = public_key_from_phe(public_key)
    values = list(values)
    # phe encodes an int at exponent 0 and a float by its own exponent: a mixed list must not
    # become a float array (0 and 0.0 encode differently)
    arr = (np.array(values, dtype=np.float64) if all(type(v) is float for v in values)
           else np.array(values, dtype=object))
    vec = EncryptedVector.encrypt(pk, arr, backend=_resolve(backend), convention="phe",
                                  precision=precision)
    out = from_vector(vec, obfuscated=True)
    for x in out:  # keep the caller's key object, as phe does
        x.public_key = public_key
    return out


def decrypt(private_key: Any, numbers: Sequence[Any], *, backend: Backend | str | None = None) -> list[Any]:
    """``[private_key.decrypt(x) for x in numbers]`` as one batch: ints where the exponent is
    >= 0 and floats otherwise, exactly as phe returns them."""
    numbers = list(numbers)
    if not numbers:
        return []
    sk = private_key_from_phe(private_key)
    if numbers[0].public_key != private_key.public_key:
        raise ValueError("the numbers were not encrypted under this private key's public key")
    vec = to_vector(numbers, backend=backend)
    plain = vec.backend.raw_decrypt(sk, vec.blob)
    width = sk.public_key.plaintext_width
    encodings = [int.from_bytes(plain[i:i + width], "little") for i in range(0, len(plain), width)]
    codec = vec.codec
    out = []
    for m, e in zip(codec.signed_mantissas(encodings), vec.exponents.tolist()):
        out.append(m * 16**e if e >= 0 else m / 16 ** (-e))  # phe's EncodedNumber.decode
    return out


def _with_key(out: list[Any], public_key: Any) -> list[Any]:
    for x in out:
        x.public_key = public_key
    return out


def add(a: Sequence[Any], b: Sequence[Any] | Any, *, backend: Backend | str | None = None) -> list[Any]:
    """Element-wise ``a[i] + b[i]``: b may be EncryptedNumbers, plain numbers, or one scalar."""
    va = to_vector(a, backend=backend)
    if isinstance(b, Sequence) and b and isinstance(b[0], _paillier.EncryptedNumber):
        other: Any = to_vector(b, backend=va.backend)
    else:
        other = np.asarray(b, dtype=object) if isinstance(b, Sequence) else b
    return _with_key(from_vector(va + other), a[0].public_key)


def mul(a: Sequence[Any], scalars: Sequence[Any] | Any, *, backend: Backend | str | None = None) -> list[Any]:
    """Element-wise ``a[i] * scalars[i]`` (or one scalar for all)."""
    va = to_vector(a, backend=backend)
    k = np.asarray(scalars, dtype=object) if isinstance(scalars, Sequence) else scalars
    return _with_key(from_vector(va * k), a[0].public_key)


def multiply(a: Sequence[Any], scalars: Sequence[Any] | Any, *,
             backend: Backend | str | None = None) -> list[Any]:
    """Deprecated name of :func:`mul` (the op's one name, as in ``raw_mul`` and the ``Mul`` RPC)."""
    warnings.warn("accel.integrations.phe.multiply is deprecated: use mul", DeprecationWarning, stacklevel=2)
    return mul(a, scalars, backend=backend)


def sum_numbers(numbers: Sequence[Any], *, backend: Backend | str | None = None) -> Any:
    """``sum(numbers)`` as one batch reduction (exponents aligned first, as phe does)."""
    return _with_key(from_vector(to_vector(numbers, backend=backend).sum()), numbers[0].public_key)[0]


def dot(numbers: Sequence[Any], X: Any, *, backend: Backend | str | None = None) -> list[Any]:
    """``[sum_i numbers[i] * X[i][j] for j]``: the encrypted ``a^T X`` of vertical LR."""
    return _with_key(from_vector(to_vector(numbers, backend=backend).dot(X)), numbers[0].public_key)


# -- the engine swap ------------------------------------------------------------------------
class _OneObfuscator:
    """Supplies exactly the obfuscators it was given (phe's ``r_value`` injection)."""

    def __init__(self, blob: bytes):
        self._blob = blob

    def take(self, count: int) -> bytes:
        if count != 1:
            raise ValueError("one injected r_value covers one plaintext")
        blob, self._blob = self._blob, b""
        return blob


@dataclass
class PheEngine:
    """What :func:`install` patched, and how many calls went to the backend."""

    backend: Backend
    calls: Counter = field(default_factory=Counter)
    _saved: dict = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.calls.items()))
        return f"he-accel {self.backend.name} backend under phe: {parts or 'no calls'}"


_engine: PheEngine | None = None
_install_lock = threading.Lock()


def installed() -> PheEngine | None:
    """The active engine, or None."""
    return _engine


def install(backend: Backend | str | None = None) -> PheEngine:
    """Route phe's arithmetic through ``backend`` (default: :func:`accel.backends.default_backend`,
    ``"auto"`` unless :func:`accel.backends.set_default_backend` chose another). Idempotent per
    process: installing again swaps the backend. Returns the :class:`PheEngine` (call counts)."""
    global _engine
    be = _resolve(backend)
    with _install_lock:
        if _engine is not None:
            _engine.backend = be
            return _engine
        engine = PheEngine(be)
        P, S, E = _paillier.PaillierPublicKey, _paillier.PaillierPrivateKey, _paillier.EncryptedNumber
        engine._saved = {
            (_paillier, "powmod"): _paillier.powmod,
            (P, "raw_encrypt"): P.raw_encrypt,
            (S, "raw_decrypt"): S.raw_decrypt,
            (E, "_raw_add"): E._raw_add,
            (E, "_raw_mul"): E._raw_mul,
            (E, "obfuscate"): E.obfuscate,
        }
        calls = engine.calls

        def powmod(a, b, c):
            calls["powmod"] += 1
            a, b, c = int(a), int(b), int(c)
            if c == 1:
                return 0
            if a % c == 1:  # phe.util.powmod's shortcut, kept for its exact semantics
                return 1
            return engine.backend.powmod([a % c], [b], c)[0]

        def raw_encrypt(self, plaintext, r_value=None):
            if not isinstance(plaintext, int):
                raise TypeError(f"Expected int type plaintext but got: {type(plaintext)}")
            calls["raw_encrypt"] += 1
            pk = public_key_from_phe(self)
            m = plaintext % pk.n  # (1 + n)^m depends on m mod n only
            if r_value:
                obf = engine.backend.powmod([int(r_value)], [pk.n], pk.nsquare)[0]
                blob = ints_to_blob([obf], pk.ciphertext_width, "obfuscator")
                return engine.backend.raw_encrypt(pk, [m], obfuscators=_OneObfuscator(blob))[0]
            return engine.backend.raw_encrypt(pk, [m])[0]

        def raw_decrypt(self, ciphertext):
            if not isinstance(ciphertext, int):
                raise TypeError(f"Expected ciphertext to be an int, not: {type(ciphertext)}")
            calls["raw_decrypt"] += 1
            sk = private_key_from_phe(self)
            return engine.backend.raw_decrypt(sk, [ciphertext % sk.public_key.nsquare])[0]

        def _raw_add(self, e_a, e_b):
            calls["raw_add"] += 1
            pk = public_key_from_phe(self.public_key)
            return engine.backend.raw_add(pk, [e_a % pk.nsquare], [e_b % pk.nsquare])[0]

        def _raw_mul(self, plaintext):
            if not isinstance(plaintext, int):
                raise TypeError(f"Expected ciphertext to be int, not {type(plaintext)}")
            pk = public_key_from_phe(self.public_key)
            if plaintext < 0 or plaintext >= pk.n:
                raise ValueError(f"Scalar out of bounds: {plaintext}")
            calls["raw_mul"] += 1
            # the top of [0, n) encodes negatives: a short negative exponent (the backend
            # inverts once) instead of a full-length positive one, as phe does
            k = plaintext - pk.n if plaintext >= pk.n - pk.max_int else plaintext
            return engine.backend.raw_mul(pk, [self.ciphertext(False)], [k])[0]

        def obfuscate(self):
            calls["obfuscate"] += 1
            pk = public_key_from_phe(self.public_key)
            c = engine.backend.raw_rerandomize(pk, [self.ciphertext(False)])[0]
            self._EncryptedNumber__ciphertext = c
            self._EncryptedNumber__is_obfuscated = True

        replacements = {"powmod": powmod, "raw_encrypt": raw_encrypt, "raw_decrypt": raw_decrypt,
                        "_raw_add": _raw_add, "_raw_mul": _raw_mul, "obfuscate": obfuscate}
        for (owner, name), original in engine._saved.items():
            new = functools.update_wrapper(replacements[name], original)
            setattr(owner, name, new)
        _engine = engine
        return engine


def uninstall() -> None:
    """Put phe's own implementations back."""
    global _engine
    with _install_lock:
        if _engine is None:
            return
        for (owner, name), original in _engine._saved.items():
            setattr(owner, name, original)
        _engine = None
