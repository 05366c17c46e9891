"""EncryptedVector: encoded (fixed-point) ciphertext batches with numpy-like arithmetic.

Ciphertexts are kept packed (one blob) and exponents as an int64 array, so operations are
whole-batch calls into a backend, never per-element Python objects.

Results of arithmetic are not re-randomised (as in python-paillier and FATE): a product by
0 is the deterministic ciphertext 1, and sums are linkable to their inputs. Call
:meth:`EncryptedVector.rerandomize` before a ciphertext leaves your party.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import default_backend
from .backends.base import KeyMismatchError
from .encoding import BASE, LOG2_BASE, AlignmentOverflowError, Convention, FixedPointCodec, PlaintextOverflowError
from .keys import PrivateKey, PublicKey, RandomSource
from .packing import blob_to_ints, blob_to_limbs, ints_to_blob, to_blob

if TYPE_CHECKING:
    from .backends.base import Backend


def lower_exponents(backend: "Backend", pk: PublicKey, cts: Any, steps: Any) -> Any:
    """Ciphertexts re-expressed ``steps[i] >= 0`` exponent steps finer: c_i^(16^steps[i]) mod n^2.

    The one alignment rule of the encoded layer and the framework integrations: one ``raw_mul``
    batch over the ciphertexts that move, the others returned untouched (not even copied one
    by one). ``cts`` is a blob or a list of ints, and the result has the same form (a new list).
    """
    d = np.asarray(steps, dtype=np.int64)
    if (d < 0).any():
        raise ValueError("can only move to finer (smaller) exponents")
    moved = np.flatnonzero(d)
    if not len(moved):
        return cts if isinstance(cts, bytes) else list(cts)  # a list is always a new one
    ks = [BASE**k for k in d[moved].tolist()]
    if max(ks) >= pk.n:
        raise AlignmentOverflowError("aligning the exponents needs a factor 16^d >= n: the exponent gap is "
                                     "too large for this key")
    if isinstance(cts, bytes):
        if len(moved) == len(d):
            return backend.raw_mul(pk, cts, ks)
        w = pk.ciphertext_width
        rows = np.frombuffer(cts, dtype=np.uint8).reshape(-1, w).copy()
        rows[moved] = np.frombuffer(backend.raw_mul(pk, rows[moved].tobytes(), ks), dtype=np.uint8).reshape(-1, w)
        return rows.tobytes()
    out = list(cts)
    idx = moved.tolist()
    for i, c in zip(idx, backend.raw_mul(pk, [cts[i] for i in idx], ks)):
        out[i] = c
    return out


class EncryptedVector:
    """A vector of Paillier ciphertexts with fixed-point exponents, under one public key.

    Build one with :meth:`encrypt` (or from existing ciphertexts with the constructor);
    ``+``, ``-``, ``*`` and ``/`` work with other EncryptedVectors (add, subtract) and with
    scalars or numpy arrays (any op), ``sum()``, ``dot(X)`` and ``X @ v`` with float or int
    matrices, and :meth:`decrypt` returns a numpy float64 array.

    As in numpy, ``sum()`` and ``dot`` with a 1-D operand give a scalar (``shape == ()``): its
    :meth:`decrypt` returns a ``numpy.float64`` and :meth:`decrypt_exact` one value. A scalar is
    stored as one ciphertext, so ``len()``, ``ciphertexts``, indexing and :meth:`concat` see one
    element, as they did before scalars existed; arithmetic stays scalar while every operand is.

    Operations run on ``backend``; without one, on :func:`accel.backends.default_backend` (the
    shared "auto" backend unless :func:`accel.backends.set_default_backend` chose another).
    """

    __array_priority__ = 1000  # make numpy defer to our reflected operators

    def __init__(self, public_key: PublicKey, ciphertexts: Any, exponents: Any = 0, *,
                 codec: FixedPointCodec | None = None, backend: "Backend | None" = None,
                 public_exponents: bool = True, mantissa_bits: Any = None, scalar: bool = False):
        if not isinstance(public_key, PublicKey):
            raise TypeError("public_key must be a PublicKey")
        self.public_key = public_key
        self.codec = codec or FixedPointCodec(public_key)
        if self.codec.n != public_key.n:
            raise KeyMismatchError("the codec belongs to another key")
        self.backend = backend or default_backend()
        blob, _ = to_blob(ciphertexts, public_key.ciphertext_width, "ciphertext")
        self._blob = blob
        count = len(blob) // public_key.ciphertext_width
        e = np.asarray(exponents, dtype=np.int64)
        if e.ndim > 1 or e.ndim == 1 and e.size not in (1, count):
            raise ValueError(f"{e.size} exponents for {count} ciphertexts: give one, or one per ciphertext")
        if public_exponents:
            e = self.codec.from_public_exponent(e)
        self._exp = np.array(np.broadcast_to(e, (count,)), dtype=np.int64)
        if scalar and count != 1:
            raise ValueError(f"a scalar holds exactly one ciphertext, not {count}")
        self._scalar = bool(scalar)
        # Upper bound on |mantissa| in bits per element, or None when unknown (ciphertexts
        # from elsewhere). Every op propagates it, so an overflow is refused before it wraps.
        self._bits = (None if mantissa_bits is None
                      else np.array(np.broadcast_to(np.asarray(mantissa_bits, dtype=np.int64), (count,))))

    @classmethod
    def _make(cls, template: "EncryptedVector", blob: bytes, exp: np.ndarray,
              bits: np.ndarray | None, scalar: bool = False) -> "EncryptedVector":
        v = cls.__new__(cls)
        v.public_key, v.codec, v.backend = template.public_key, template.codec, template.backend
        v._blob, v._exp = blob, np.asarray(exp, dtype=np.int64)
        v._scalar = scalar and len(v._exp) == 1
        v._bits = None if bits is None else np.asarray(bits, dtype=np.int64)
        v._check_bound()
        return v

    @property
    def _bit_limit(self) -> int:
        # |m| < 2^bits <= max_int + 1 guarantees |m| <= max_int
        return (self.codec.max_int + 1).bit_length() - 1

    def _check_bound(self) -> None:
        if self._bits is not None and len(self._bits) and int(self._bits.max()) > self._bit_limit:
            i = int(self._bits.argmax())
            raise PlaintextOverflowError(
                f"element {i} could reach {int(self._bits[i])} bits, beyond the key's max_int "
                f"({self._bit_limit} bits): the result would wrap. Use a larger key, coarser "
                "precision, or operands of closer magnitude"
            )

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def encrypt(cls, public_key: PublicKey, values: Any, *, backend: "Backend | None" = None,
                codec: FixedPointCodec | None = None, convention: str | Convention = Convention.PHE,
                precision: float | None = None, exponent: int | None = None,
                rng: RandomSource | None = None, obfuscators: Any = None,
                private_key: PrivateKey | None = None, djn: Any = None) -> "EncryptedVector":
        """Encode ``values`` (scalar, list or array; flattened) and encrypt them in one batch.

        ``obfuscators`` (an :class:`accel.ObfuscatorPool`) or ``private_key`` (CRT) select the
        faster obfuscation paths; ``djn`` (an :class:`accel.djn.DjnKey`) opts in to DJN
        encryption, which rests on an extra assumption (short exponents, see :mod:`accel.djn`);
        ``rng`` injects the randomness (tests).
        """
        codec = codec or FixedPointCodec(public_key, convention)
        backend = backend or default_backend()
        enc = codec.encode(values, precision=precision, exponent=exponent)
        ms = ints_to_blob(enc.encodings, public_key.plaintext_width, "plaintext")
        blob = backend.raw_encrypt(public_key, ms, rng=rng, obfuscators=obfuscators,
                                   private_key=private_key, djn=djn)
        bits = _bit_lengths(enc.mantissas)
        return cls(public_key, blob, enc.exponents, codec=codec, backend=backend, public_exponents=False,
                   mantissa_bits=bits)

    # -- views -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._exp)

    @property
    def shape(self) -> tuple[int, ...]:
        """``()`` for a scalar (a sum, a 1-D dot product), else ``(len,)``, as numpy would say."""
        return () if self._scalar else (len(self),)

    def __repr__(self) -> str:
        size = "scalar" if self._scalar else f"len={len(self)}"
        return f"<EncryptedVector {size} {self.codec.convention.value} {self.public_key!r}>"

    @property
    def ciphertexts(self) -> list[int]:
        return blob_to_ints(self._blob, self.public_key.ciphertext_width)

    @property
    def blob(self) -> bytes:
        """The packed ciphertexts (little-endian, ``public_key.ciphertext_width`` bytes each)."""
        return self._blob

    def limbs(self) -> np.ndarray:
        return blob_to_limbs(self._blob, self.public_key.ciphertext_width)

    @property
    def exponents(self) -> np.ndarray:
        """Exponents in the codec's convention (FATE 1.x: positive)."""
        return self.codec.to_public_exponent(self._exp.copy())

    def __getitem__(self, index: Any) -> "EncryptedVector":
        w = self.public_key.ciphertext_width
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        mv = memoryview(self._blob)
        blob = b"".join(mv[i * w : (i + 1) * w] for i in idx.tolist())
        return self._make(self, blob, self._exp[idx], None if self._bits is None else self._bits[idx])

    @classmethod
    def concat(cls, parts: list["EncryptedVector"]) -> "EncryptedVector":
        if not parts:
            raise ValueError("nothing to concatenate")
        for p in parts[1:]:
            parts[0]._check_compatible(p)
        bits = (None if any(p._bits is None for p in parts)
                else np.concatenate([p._bits for p in parts]))
        return cls._make(parts[0], b"".join(p._blob for p in parts),
                         np.concatenate([p._exp for p in parts]), bits)

    def __reduce__(self):
        # Ciphertexts, exponents and the codec's parameters; no backend or device handles.
        return (_rebuild, (self.public_key.n, self._blob, self._exp.tobytes(),
                           self.codec.convention.value, self.codec.max_int,
                           None if self._bits is None else self._bits.tobytes(), self._scalar))

    # -- helpers -----------------------------------------------------------------------------
    def _check_compatible(self, other: "EncryptedVector") -> None:
        if other.public_key != self.public_key:
            raise KeyMismatchError("the two encrypted vectors are under different public keys")
        if other.codec != self.codec:
            raise ValueError("the two encrypted vectors use different encodings")

    def _lowered_bits(self, target: np.ndarray) -> np.ndarray | None:
        return None if self._bits is None else self._bits + LOG2_BASE * (self._exp - target)

    def _lowered_to(self, target: np.ndarray) -> bytes:
        """Ciphertexts re-expressed at exponents ``target`` <= current: c^(16^(e - t))."""
        diff = self._exp - target
        if not diff.any():
            return self._blob
        if (diff < 0).any():
            raise ValueError("can only lower exponents")
        bits = self._lowered_bits(target)
        if bits is not None and int(bits.max()) > self._bit_limit:
            raise PlaintextOverflowError(
                f"aligning exponents would need {int(bits.max())}-bit mantissas, beyond the key's "
                f"max_int ({self._bit_limit} bits): the operands' magnitudes are too far apart")
        return lower_exponents(self.backend, self.public_key, self._blob, diff)

    def _plain(self, other: Any) -> tuple[list[int], np.ndarray]:
        """Encode a scalar or array operand, broadcast to this vector's length."""
        arr = np.asarray(other)
        if arr.ndim > 1 or arr.ndim == 1 and arr.size not in (1, len(self)):
            raise ValueError(f"operand of shape {arr.shape} does not match a vector of length {len(self)}")
        enc = self.codec.encode(arr)
        mants, e = enc.mantissas, enc.exponents
        if len(mants) == 1 and len(self) != 1:
            mants, e = mants * len(self), np.repeat(e, len(self))
        return mants, e

    # -- arithmetic --------------------------------------------------------------------------
    def __add__(self, other: Any) -> "EncryptedVector":
        if isinstance(other, EncryptedVector):
            self._check_compatible(other)
            if len(other) != len(self):
                raise ValueError(f"length mismatch: {len(self)} vs {len(other)}")
            t = np.minimum(self._exp, other._exp)
            a, b = self._lowered_bits(t), other._lowered_bits(t)
            bits = None if a is None or b is None else np.maximum(a, b) + 1
            out = self.backend.raw_add(self.public_key, self._lowered_to(t), other._lowered_to(t))
            return self._make(self, out, t, bits, self._scalar and other._scalar)
        mants, e = self._plain(other)
        t = np.minimum(self._exp, e)
        n, max_int = self.public_key.n, self.codec.max_int
        ms = []
        for i, (m, d) in enumerate(zip(mants, (e - t).tolist())):
            m = m * BASE**d
            if abs(m) > max_int:
                raise PlaintextOverflowError(f"operand[{i}] overflows max_int once aligned to the vector's exponent")
            ms.append(m % n)
        a = self._lowered_bits(t)
        bits = None if a is None else np.maximum(a, _bit_lengths(mants) + LOG2_BASE * (e - t)) + 1
        out = self.backend.raw_add_plain(self.public_key, self._lowered_to(t), ms)
        return self._make(self, out, t, bits, self._scalar and np.ndim(other) == 0)

    __radd__ = __add__

    def __neg__(self) -> "EncryptedVector":
        return self * -1

    def __sub__(self, other: Any) -> "EncryptedVector":
        if isinstance(other, EncryptedVector):
            return self + (-other)
        return self + (-np.asarray(other))  # a 0-d array stays a scalar operand

    def __rsub__(self, other: Any) -> "EncryptedVector":
        return (-self) + other

    def __mul__(self, other: Any) -> "EncryptedVector":
        if isinstance(other, EncryptedVector):
            raise TypeError("Paillier cannot multiply two ciphertexts; multiply by plaintexts")
        mants, e = self._plain(other)
        bits = None if self._bits is None else self._bits + _bit_lengths(mants)
        if bits is not None and len(bits) and int(bits.max()) > self._bit_limit:
            raise PlaintextOverflowError(
                f"the product could reach {int(bits.max())} bits, beyond the key's max_int ({self._bit_limit} bits)")
        out = self.backend.raw_mul(self.public_key, self._blob, mants)
        return self._make(self, out, self._exp + e, bits, self._scalar and np.ndim(other) == 0)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> "EncryptedVector":
        return self * (1.0 / np.asarray(other, dtype=np.float64))

    def sum(self) -> "EncryptedVector":
        """The encrypted sum, a scalar (E(0) = ciphertext 1 when empty)."""
        if len(self) == 0:
            return self._make(self, (1).to_bytes(self.public_key.ciphertext_width, "little"),
                              np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), scalar=True)
        t = np.full(len(self), self._exp.min())
        a = self._lowered_bits(t)
        bits = None if a is None else a.max(keepdims=True) + _ceil_log2(len(self))
        out = self.backend.raw_sum(self.public_key, self._lowered_to(t))
        return self._make(self, out, t[:1], bits, scalar=True)

    def dot(self, X: Any, *, precision: float | None = None) -> "EncryptedVector":
        """E(v^T X): X of shape (len,) gives a scalar, of shape (len, C) a vector of length C.

        Float matrices are encoded at one shared exponent that keeps 53 significant bits of
        max|X| (or resolves ``precision``), so each column is one multi-exponentiation.
        """
        X = np.asarray(X)
        squeeze = X.ndim == 1
        if squeeze:
            X = X[:, None]
        if X.ndim != 2 or X.shape[0] != len(self):
            raise ValueError(f"X of shape {X.shape} does not match a vector of length {len(self)}")
        if X.dtype.kind in "iub":
            mant, ex = X.astype(object) if X.dtype.kind == "u" else X, 0
        elif X.dtype.kind == "f":
            mant, ex = self._encode_matrix(X.astype(np.float64), precision)
        else:
            raise TypeError(f"cannot multiply by a matrix of dtype {X.dtype}")
        t = np.full(len(self), self._exp.min() if len(self) else 0)
        a = self._lowered_bits(t)
        bits = None
        if a is not None:
            xbits = max((abs(int(v)).bit_length() for v in np.asarray(mant).ravel().tolist()), default=0)
            top = int(a.max()) if len(a) else 0
            bits = np.full(X.shape[1], top + xbits + _ceil_log2(max(1, len(self))), dtype=np.int64)
            if len(bits) and int(bits[0]) > self._bit_limit:
                raise PlaintextOverflowError(
                    f"the matrix product could reach {int(bits[0])} bits, beyond the key's max_int "
                    f"({self._bit_limit} bits): use a coarser precision or a larger key")
        out = self.backend.raw_matvec(self.public_key, self._lowered_to(t), mant)
        return self._make(self, out, np.full(X.shape[1], (t[0] if len(t) else 0) + ex, dtype=np.int64), bits,
                          scalar=squeeze)

    def _encode_matrix(self, X: np.ndarray, precision: float | None) -> tuple[Any, int]:
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains non-finite values")
        if precision is not None:  # the resolution of X's encoding, whatever the convention
            if not precision > 0:
                raise ValueError("precision must be > 0")
            ex = math.floor(math.log(precision, BASE))
        else:
            top = float(np.abs(X).max()) if X.size else 0.0
            fe = np.frexp(top)[1] if top > 0 else 0
            ex = (int(fe) - 53) // LOG2_BASE
        scaled = np.rint(np.ldexp(X, -LOG2_BASE * ex))
        if np.abs(scaled).max(initial=0) < 2**62:
            mant = scaled.astype(np.int64)
        else:
            mant = np.vectorize(lambda v: int(v), otypes=[object])(scaled)
        if np.abs(mant).max(initial=0) > self.codec.max_int:
            raise PlaintextOverflowError("X does not fit the key's max_int at the chosen precision")
        return mant, ex

    def __matmul__(self, X: Any) -> "EncryptedVector":
        return self.dot(X)

    def __rmatmul__(self, X: Any) -> "EncryptedVector":
        X = np.asarray(X)
        return self.dot(X.T if X.ndim == 2 else X)

    def rerandomize(self, *, rng: RandomSource | None = None, obfuscators: Any = None) -> "EncryptedVector":
        """Fresh ciphertexts of the same values (do this before sending results to a peer)."""
        out = self.backend.raw_rerandomize(self.public_key, self._blob, rng=rng, obfuscators=obfuscators)
        return self._make(self, out, self._exp, self._bits, self._scalar)

    # -- decryption --------------------------------------------------------------------------
    def _raw_plain(self, private_key: PrivateKey) -> list[int]:
        if not isinstance(private_key, PrivateKey):
            raise TypeError("expected a PrivateKey")
        if private_key.public_key != self.public_key:
            raise KeyMismatchError("this private key does not match the vector's public key")
        out = self.backend.raw_decrypt(private_key, self._blob)
        return blob_to_ints(out, self.public_key.plaintext_width)

    def decrypt(self, private_key: PrivateKey) -> np.ndarray | np.float64:
        """Decrypt and decode to float64 (DecodeOverflowError if a result overflowed): an array,
        or a ``numpy.float64`` for a scalar."""
        values = self.codec.decode(self._raw_plain(private_key), self._exp)
        return values[0] if self._scalar else values

    def decrypt_exact(self, private_key: PrivateKey) -> Any:
        """Decrypt to exact values: ints at exponent >= 0, Fractions otherwise (a list, or one
        value for a scalar)."""
        values = self.codec.decode_exact(self._raw_plain(private_key), self._exp)
        return values[0] if self._scalar else values


def _bit_lengths(mants: list[int]) -> np.ndarray:
    return np.array([abs(m).bit_length() for m in mants], dtype=np.int64)


def _ceil_log2(k: int) -> int:
    return max(0, (k - 1).bit_length())


def _rebuild(n: int, blob: bytes, exp: bytes, convention: str, max_int: int,
             bits: bytes | None = None, scalar: bool = False) -> EncryptedVector:
    pk = PublicKey(n)
    codec = FixedPointCodec(pk, convention, max_int)
    return EncryptedVector(pk, blob, np.frombuffer(exp, dtype=np.int64), codec=codec, public_exponents=False,
                           mantissa_bits=None if bits is None else np.frombuffer(bits, dtype=np.int64),
                           scalar=scalar)
