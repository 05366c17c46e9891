"""Packed encoding (BatchCrypt-style): several quantised signed values per Paillier plaintext.

One 2048-bit encryption costs the same whether its plaintext carries one value or sixty. For
federated learning, where values are gradients of bounded range and modest precision, packing
``k`` of them into one plaintext divides the encryption, transfer and decryption cost by ``k``.

Encoding. A float v with |v| <= ``clip`` is quantised to q = round(v * scale) with
scale = (2^(value_bits-1) - 1) / clip, so |q| <= Q = 2^(value_bits-1) - 1. Values are laid
into slots of ``slot_bits`` bits as the signed integer P = sum_i q_i 2^(slot_bits i), stored
mod n (a negative P as n + P, like any negative plaintext). Because P is a *linear* function
of the slots, Paillier's homomorphic addition and integer scalar multiplication act on every
slot at once and signs need no special care: a slot's value only has to stay within
[-(2^(slot_bits-1) - 1), 2^(slot_bits-1) - 1] for the borrows between slots to be undone
exactly at decryption.

Headroom. The codec is declared with the number of additions each value may take part in
(``max_additions``: a sum of up to max_additions + 1 vectors) and a bound on integer scalars
(``scalar_bound``), and sizes the slots so that (max_additions + 1) * scalar_bound * Q fits.
Every :class:`PackedVector` carries the exact bound of its slots' magnitude, updated by each
operation; an operation whose result could exceed a slot is refused with
:class:`PackedOverflowError` before any ciphertext is computed. Nothing wraps.

Precision. The quantisation step is ``clip / Q``; each decoded value is within step / 2 of the
input (exact for inputs on the grid). A sum of m vectors is within m * step / 2 of the true
sum, and a product by k within |k| times the error of its operand. :meth:`PackedCodec.describe`
reports the step, the slots per plaintext and the headroom.

Security. Encryption is obfuscated by the backend (fresh r^n per ciphertext). As with any
Paillier arithmetic, results of ``+`` and ``*`` are not re-randomised: call
:meth:`PackedVector.rerandomize` before a result leaves your party. The number of values and
the codec's parameters are public; the values are not.

Example::

    from accel import generate_keypair, get_backend
    from accel.packed import PackedCodec, PackedVector

    pk, sk = generate_keypair(2048)
    codec = PackedCodec(pk, value_bits=16, clip=1.0, max_additions=99)   # sums of 100 clients
    grads = [codec.encrypt(g, backend=get_backend("cpu")) for g in client_gradients]
    total = PackedVector.sum(grads)
    mean = total.decrypt(sk) / len(grads)
"""
from __future__ import annotations

import math
from numbers import Integral
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .backends import default_backend
from .backends.base import KeyMismatchError
from .keys import PrivateKey, PublicKey

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = ["PackedCodec", "PackedOverflowError", "PackedVector"]


class PackedOverflowError(OverflowError):
    """A packed value or the result of a packed operation could exceed its slot."""


class PackedCodec:
    """Quantisation and slot layout of packed vectors under one public key.

    Args:
        public_key: the key the plaintexts are for.
        value_bits: quantisation bits per value, sign included (2..53): |q| <= 2^(value_bits-1) - 1.
        clip: the largest |value| accepted (the quantisation range is [-clip, clip]).
        max_additions: how many additions a value may go through (a sum of up to
            max_additions + 1 vectors); sizes the slots' headroom.
        scalar_bound: the largest |k| of integer scalar products the headroom allows.
        clip_values: clamp values beyond ``clip`` to +-clip (BatchCrypt's clipping) instead of
            refusing them.
    """

    def __init__(self, public_key: PublicKey, *, value_bits: int = 16, clip: float = 1.0,
                 max_additions: int = 0, scalar_bound: int = 1, clip_values: bool = False):
        if not isinstance(public_key, PublicKey):
            raise TypeError(f"expected a PublicKey, got {type(public_key).__name__}")
        for name, v, lo in (("value_bits", value_bits, 2), ("max_additions", max_additions, 0),
                            ("scalar_bound", scalar_bound, 1)):
            if isinstance(v, bool) or not isinstance(v, Integral) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        if value_bits > 53:
            raise ValueError("value_bits must be <= 53 (a float64 mantissa)")
        clip = float(clip)
        if not (math.isfinite(clip) and clip > 0):
            raise ValueError(f"clip must be a positive finite float, got {clip!r}")
        self.public_key = public_key
        self.value_bits = int(value_bits)
        self.clip = clip
        self.max_additions = int(max_additions)
        self.scalar_bound = int(scalar_bound)
        self.clip_values = bool(clip_values)
        self.quant_max = (1 << (self.value_bits - 1)) - 1
        self.scale = self.quant_max / clip
        headroom = (self.max_additions + 1) * self.scalar_bound * self.quant_max
        # signed slots: |slot| <= 2^(slot_bits-1) - 1
        self.slot_bits = headroom.bit_length() + 1
        self.slot_max = (1 << (self.slot_bits - 1)) - 1
        # |P| < 2^(slot_bits*k - 1) must stay <= n // 2 >= 2^(|n|-2): slot_bits*k <= |n| - 1
        self.slots = (public_key.n.bit_length() - 1) // self.slot_bits
        if self.slots < 1:
            raise PackedOverflowError(f"a {self.slot_bits}-bit slot does not fit a {public_key.bits}-bit key")
        self._bias = sum((1 << (self.slot_bits - 1)) << (self.slot_bits * i) for i in range(self.slots))

    def __repr__(self) -> str:
        return (f"PackedCodec({self.public_key.bits}-bit key, {self.slots} x {self.slot_bits}-bit slots, "
                f"value_bits={self.value_bits}, clip={self.clip}, max_additions={self.max_additions}, "
                f"scalar_bound={self.scalar_bound})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PackedCodec) and self._params == other._params

    def __hash__(self) -> int:
        return hash(self._params)

    @property
    def _params(self) -> tuple:
        return (self.public_key.n, self.value_bits, self.clip, self.max_additions, self.scalar_bound)

    @property
    def step(self) -> float:
        """The quantisation step: a decoded value is within step / 2 of its input."""
        return self.clip / self.quant_max

    def describe(self) -> dict[str, Any]:
        return {"key_bits": self.public_key.bits, "slots_per_plaintext": self.slots,
                "slot_bits": self.slot_bits, "value_bits": self.value_bits, "clip": self.clip,
                "step": self.step, "max_additions": self.max_additions, "scalar_bound": self.scalar_bound}

    def ciphertexts_for(self, count: int) -> int:
        return -(-int(count) // self.slots)

    # -- quantisation (floats <-> signed ints) ---------------------------------------------
    def quantise(self, values: Any) -> np.ndarray:
        """Floats to signed ints q = round(v * scale) (half to even), |q| <= 2^(value_bits-1) - 1."""
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        if not np.isfinite(v).all():
            raise ValueError("values must be finite")
        over = np.flatnonzero(np.abs(v) > self.clip)
        if over.size:
            if not self.clip_values:
                i = int(over[0])
                raise PackedOverflowError(f"value[{i}] = {v[i]!r} is beyond clip = {self.clip}")
            v = np.clip(v, -self.clip, self.clip)
        q = np.rint(v * self.scale)
        return np.clip(q, -self.quant_max, self.quant_max).astype(np.int64)

    def dequantise(self, q: Any) -> np.ndarray:
        return np.asarray(q, dtype=np.float64) / self.scale

    # -- packing (signed ints <-> plaintexts) ----------------------------------------------
    def pack(self, quantised: Sequence[int], bound: int | None = None) -> list[int]:
        """Signed slot values to plaintexts in [0, n): slot i of plaintext j holds
        quantised[j * slots + i]. Refuses values beyond ``bound`` (default the quantisation
        bound)."""
        bound = self.quant_max if bound is None else bound
        q = [int(x) for x in quantised]
        for i, x in enumerate(q):
            if abs(x) > bound:
                raise PackedOverflowError(f"slot value[{i}] = {x} exceeds the bound {bound}")
        n, s, k = self.public_key.n, self.slot_bits, self.slots
        half = 1 << (s - 1)
        out = []
        for start in range(0, len(q), k):
            # biased slots are non-negative, so the packed integer is plain concatenation
            acc = 0
            for x in reversed(q[start:start + k]):
                acc = (acc << s) | (x + half)
            acc -= self._bias_for(min(k, len(q) - start))
            out.append(acc % n)
        return out

    def _bias_for(self, used: int) -> int:
        return self._bias & ((1 << (self.slot_bits * used)) - 1)

    def unpack(self, plaintexts: Sequence[int], count: int) -> list[int]:
        """Plaintexts in [0, n) back to ``count`` signed slot values. Exact while every slot is
        within +-(2^(slot_bits-1) - 1), which :class:`PackedVector` guarantees."""
        n, s, k = self.public_key.n, self.slot_bits, self.slots
        if count > len(plaintexts) * k or count <= (len(plaintexts) - 1) * k and plaintexts:
            raise ValueError(f"{len(plaintexts)} plaintexts cannot hold {count} values")
        half, mask = 1 << (s - 1), (1 << s) - 1
        out: list[int] = []
        left = count
        for m in plaintexts:
            m = int(m)
            p = m if m <= n // 2 else m - n
            used = min(k, left)
            p += self._bias_for(used)
            if p < 0 or p >> (s * used):
                raise PackedOverflowError("a packed plaintext is out of its slots' range (overflow or wrong codec)")
            for _ in range(used):
                out.append((p & mask) - half)
                p >>= s
            left -= used
        return out

    # -- encryption ------------------------------------------------------------------------
    def encrypt(self, values: Any, *, backend: "Backend | None" = None, obfuscate: bool = True,
                **encrypt_kwargs: Any) -> "PackedVector":
        """Quantise, pack and encrypt a 1-D array of floats (one ciphertext per ``slots``
        values). ``encrypt_kwargs`` go to ``backend.raw_encrypt`` (``obfuscators=``, ``djn=``)."""
        return self.encrypt_quantised(self.quantise(values), backend=backend, obfuscate=obfuscate,
                                      **encrypt_kwargs)

    def encrypt_quantised(self, quantised: Sequence[int], *, backend: "Backend | None" = None,
                          obfuscate: bool = True, **encrypt_kwargs: Any) -> "PackedVector":
        """Encrypt signed ints with |q| <= 2^(value_bits-1) - 1 as they are (no scaling)."""
        q = [int(x) for x in np.asarray(quantised, dtype=object).reshape(-1).tolist()]
        be = backend or default_backend()
        # the vector's bound is the codec's, not max|q|: it travels with the ciphertexts and
        # must not reveal anything about the values
        plain = self.pack(q)
        cts = be.raw_encrypt(self.public_key, plain, obfuscate=obfuscate, **encrypt_kwargs) if plain else []
        return PackedVector(self, list(cts), len(q), self.quant_max if q else 0, backend=be)


class PackedVector:
    """Encrypted packed values under one :class:`PackedCodec`: ``+``, ``-``, integer ``*``,
    :meth:`sum`, :meth:`decrypt`. ``bound`` is the largest |slot| any input could produce."""

    def __init__(self, codec: PackedCodec, ciphertexts: Sequence[int], count: int, bound: int, *,
                 backend: "Backend | None" = None):
        if len(ciphertexts) != codec.ciphertexts_for(count):
            raise ValueError(f"{len(ciphertexts)} ciphertexts for {count} values at {codec.slots} per plaintext")
        if bound > codec.slot_max:
            raise PackedOverflowError(f"slot bound {bound} exceeds the slots' {codec.slot_max}")
        self.codec = codec
        self.ciphertexts = list(ciphertexts)
        self.count = int(count)
        self.bound = int(bound)
        self.backend = backend or default_backend()

    def __len__(self) -> int:
        return self.count

    def __repr__(self) -> str:
        return f"<PackedVector {self.count} values in {len(self.ciphertexts)} ciphertexts, bound {self.bound}>"

    def _check(self, other: "PackedVector") -> None:
        if not isinstance(other, PackedVector):
            raise TypeError(f"expected a PackedVector, got {type(other).__name__}")
        if other.codec.public_key != self.codec.public_key:
            raise KeyMismatchError("the packed vectors belong to different keys")
        if other.codec != self.codec:
            raise ValueError("the packed vectors have different codecs (slot layouts)")
        if other.count != self.count:
            raise ValueError(f"length mismatch: {self.count} vs {other.count} values")

    def _refuse_beyond_headroom(self, bound: int, what: str) -> None:
        """Checked before any ciphertext is computed: an overflow is refused, never wrapped."""
        if bound > self.codec.slot_max:
            raise PackedOverflowError(
                f"{what} could reach |slot| = {bound} > {self.codec.slot_max}: beyond the declared headroom "
                f"(max_additions={self.codec.max_additions}, scalar_bound={self.codec.scalar_bound})")

    def _result(self, cts: Sequence[int], bound: int) -> "PackedVector":
        return PackedVector(self.codec, cts, self.count, bound, backend=self.backend)

    def __add__(self, other: "PackedVector") -> "PackedVector":
        self._check(other)
        bound = self.bound + other.bound
        self._refuse_beyond_headroom(bound, "this sum")
        pk = self.codec.public_key
        cts = self.backend.raw_add(pk, self.ciphertexts, other.ciphertexts) if self.ciphertexts else []
        return self._result(cts, bound)

    def __neg__(self) -> "PackedVector":
        pk = self.codec.public_key
        cts = self.backend.raw_mul(pk, self.ciphertexts, [-1] * len(self.ciphertexts)) if self.ciphertexts else []
        return self._result(cts, self.bound)

    def __sub__(self, other: "PackedVector") -> "PackedVector":
        self._check(other)
        self._refuse_beyond_headroom(self.bound + other.bound, "this difference")
        return self + (-other)

    def __mul__(self, k: Any) -> "PackedVector":
        """Every value times the integer k (one c^k per ciphertext)."""
        if isinstance(k, bool) or not isinstance(k, Integral):
            raise TypeError(f"packed vectors multiply by ints only (quantise the scalar), got {type(k).__name__}")
        k = int(k)
        bound = self.bound * abs(k)
        self._refuse_beyond_headroom(bound, f"multiplying by {k}")
        pk = self.codec.public_key
        cts = self.backend.raw_mul(pk, self.ciphertexts, [k] * len(self.ciphertexts)) if self.ciphertexts else []
        return self._result(cts, bound)

    __rmul__ = __mul__

    @staticmethod
    def sum(vectors: Sequence["PackedVector"]) -> "PackedVector":
        """Element-wise sum of packed vectors (same codec and length): a pairwise tree of
        whole-batch additions, ceil(log2(len(vectors))) backend calls."""
        vectors = list(vectors)
        if not vectors:
            raise ValueError("sum of no packed vectors")
        first = vectors[0]
        for v in vectors[1:]:
            first._check(v)
        bound = sum(v.bound for v in vectors)
        first._refuse_beyond_headroom(bound, f"the sum of {len(vectors)} vectors")
        pk, be, per = first.codec.public_key, first.backend, len(first.ciphertexts)
        level = [v.ciphertexts for v in vectors]
        while len(level) > 1 and per:
            pairs = len(level) // 2
            xs = [c for i in range(pairs) for c in level[2 * i]]
            ys = [c for i in range(pairs) for c in level[2 * i + 1]]
            flat = be.raw_add(pk, xs, ys)
            nxt = [flat[i * per:(i + 1) * per] for i in range(pairs)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        return first._result(list(level[0]), bound)

    def rerandomize(self, **kwargs: Any) -> "PackedVector":
        """Same values, fresh ciphertexts (before a result leaves your party)."""
        pk = self.codec.public_key
        cts = self.backend.raw_rerandomize(pk, self.ciphertexts, **kwargs) if self.ciphertexts else []
        return self._result(cts, self.bound)

    def decrypt_quantised(self, private_key: PrivateKey) -> list[int]:
        """The exact signed integers in the slots (sums of quantised values times scalars)."""
        if not isinstance(private_key, PrivateKey):
            raise TypeError(f"expected a PrivateKey, got {type(private_key).__name__}")
        if private_key.public_key != self.codec.public_key:
            raise KeyMismatchError("the private key does not belong to this vector's key")
        plain = self.backend.raw_decrypt(private_key, self.ciphertexts) if self.ciphertexts else []
        return self.codec.unpack(plain, self.count)

    def decrypt(self, private_key: PrivateKey) -> np.ndarray:
        """The values as float64: slot / scale (see the module docstring for the precision)."""
        return self.codec.dequantise(self.decrypt_quantised(private_key))
