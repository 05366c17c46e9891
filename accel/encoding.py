"""Fixed-point encoding (BASE 16) of ints and floats into Paillier plaintexts, vectorised.

No cryptography here. A value is ``mantissa * 16**e`` with an integer mantissa stored mod n
(negatives as n + mantissa). Internally ``e`` always has python-paillier's sign (floats get
e <= 0). The conventions users meet differ in the sign shown, how e is chosen and the bound:

============  ==================  =====================================  ==============
convention    public exponent     float exponent (fe = frexp exponent)    max_int
============  ==================  =====================================  ==============
``phe``       e (<= 0)            floor((fe - 53) / 4)                    n // 3 - 1
``fate2``     e (<= 0)            floor((fe - 53) / 4)  (fate_utils)      n // 2
``fate1``     -e (>= 0)           floor((53 - fe) / 4)  (FATE 1.x)        n // 3 - 1
============  ==================  =====================================  ==============

Ints get exponent 0 everywhere. Aligning two numbers moves to the finer exponent (python-
paillier "decrease", FATE 1.x "increase"): the same operation in either sign. A mantissa
with |mantissa| > max_int raises :class:`PlaintextOverflowError`; decoding an encoding in
the gap (max_int, n - max_int) raises :class:`DecodeOverflowError`. Nothing wraps silently.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

import numpy as np

from .keys import PublicKey

BASE = 16
LOG2_BASE = 4
FLOAT_MANTISSA_BITS = 53
_FAST_LIMIT = float(2**62)   # rint(y) of a float below this converts to int64 exactly


class PlaintextOverflowError(ValueError):
    """A value's fixed-point mantissa exceeds the codec's max_int."""


class AlignmentOverflowError(PlaintextOverflowError, OverflowError):
    """Aligning ciphertexts to a finer exponent needs a factor 16^d >= n: the exponents are too
    far apart for this key. Both a PlaintextOverflowError (what :class:`accel.EncryptedVector`
    raised) and an OverflowError (what the framework integrations raised) for their callers."""


class DecodeOverflowError(OverflowError):
    """A decrypted encoding lies outside both the positive and the negative range: the
    homomorphic computation overflowed max_int."""


class Convention(str, enum.Enum):
    PHE = "phe"
    FATE1 = "fate1"
    FATE2 = "fate2"


@dataclass(frozen=True)
class EncodedBatch:
    """Plaintext encodings in [0, n), their signed mantissas, and their exponents (internal
    sign, int64)."""

    encodings: list[int]
    exponents: np.ndarray
    mantissas: list[int]

    def __len__(self) -> int:
        return len(self.encodings)


def _round_fraction(x: Fraction) -> int:
    return round(x)  # Fraction.__round__ rounds half to even, like python-paillier


class FixedPointCodec:
    """Encoder/decoder for one public key in one convention.

    Args:
        public_key: the key (n) the encodings are for.
        convention: ``"phe"``, ``"fate1"`` or ``"fate2"`` (see the module docstring).
        max_int: override the convention's bound (must be < n / 2).
    """

    def __init__(self, public_key: PublicKey, convention: str | Convention = Convention.PHE,
                 max_int: int | None = None):
        self.public_key = public_key
        self.n = public_key.n
        self.convention = Convention(convention)
        default_max = self.n // 2 if self.convention is Convention.FATE2 else self.n // 3 - 1
        self.max_int = default_max if max_int is None else int(max_int)
        if not 0 < self.max_int or 2 * self.max_int >= self.n + 1:
            raise ValueError("max_int must be positive and below n/2")

    def __repr__(self) -> str:
        return f"<FixedPointCodec {self.convention.value} for {self.public_key!r}>"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, FixedPointCodec) and other.n == self.n
                and other.convention == self.convention and other.max_int == self.max_int)

    def __hash__(self) -> int:
        return hash((self.n, self.convention, self.max_int))

    # -- exponent signs ----------------------------------------------------------------------
    def to_public_exponent(self, e: Any) -> Any:
        """Internal exponent(s) to this convention's sign."""
        return -e if self.convention is Convention.FATE1 else e

    def from_public_exponent(self, e: Any) -> Any:
        return -e if self.convention is Convention.FATE1 else e

    def _float_exponents(self, fe: np.ndarray) -> np.ndarray:
        if self.convention is Convention.FATE1:
            return -np.floor_divide(FLOAT_MANTISSA_BITS - fe, LOG2_BASE)
        return np.floor_divide(fe - FLOAT_MANTISSA_BITS, LOG2_BASE)

    def _precision_exponent(self, precision: float) -> int:
        if not precision > 0:
            raise ValueError("precision must be > 0")
        e = math.floor(math.log(precision, BASE))
        # FATE 1.x applies floor(log16(precision)) as its (positive-sign) exponent.
        return -e if self.convention is Convention.FATE1 else e

    # -- encode ------------------------------------------------------------------------------
    def encode(self, values: Any, *, precision: float | None = None, exponent: int | None = None,
               max_exponent: int | None = None) -> EncodedBatch:
        """Encode a scalar, list or numpy array (flattened, C order).

        ``exponent`` fixes the exponent (this convention's sign); ``precision`` picks the
        exponent that resolves it; ``max_exponent`` (this convention's sign) caps how coarse
        the exponent may be, as python-paillier's and FATE's ``max_exponent`` do.
        """
        arr = np.asarray(values)
        if arr.dtype.kind in "US" or arr.dtype.kind == "O" and any(isinstance(v, (str, bytes)) for v in arr.ravel()):
            raise TypeError("cannot encode strings")
        flat = arr.ravel()
        count = flat.size
        forced = None
        if exponent is not None:
            forced = int(self.from_public_exponent(int(exponent)))
        elif precision is not None:
            forced = self._precision_exponent(precision)
        cap = None if max_exponent is None else int(self.from_public_exponent(int(max_exponent)))

        if arr.dtype.kind in "iub":
            e = np.zeros(count, dtype=np.int64) if forced is None else np.full(count, forced, dtype=np.int64)
            if cap is not None:
                e = np.minimum(e, cap)
            if not e.any():
                mants = flat.astype(object).tolist() if arr.dtype.kind == "u" else flat.tolist()
                return self._finish(mants, e)
            return self._finish([self._exact_int(int(v), int(k)) for v, k in zip(flat.tolist(), e)], e)
        if arr.dtype.kind == "f":
            return self._encode_floats(flat.astype(np.float64), forced, cap)
        if arr.dtype.kind == "O":
            return self._encode_objects(flat, forced, cap)
        raise TypeError(f"cannot encode values of dtype {arr.dtype}")

    def _encode_floats(self, x: np.ndarray, forced: int | None, cap: int | None) -> EncodedBatch:
        if not np.all(np.isfinite(x)):
            bad = int(np.flatnonzero(~np.isfinite(x))[0])
            raise ValueError(f"value[{bad}] is not finite ({x[bad]})")
        flushed = None
        if self.convention is Convention.FATE1:
            # FATE 1.x replaces |x| < 1e-200 by the int 0, which then gets exponent 0.
            flushed = np.abs(x) < 1e-200
            x = np.where(flushed, 0.0, x)
        if forced is not None:
            e = np.full(x.size, forced, dtype=np.int64)
        else:
            e = self._float_exponents(np.frexp(x)[1].astype(np.int64))
            if flushed is not None:
                e = np.where(flushed, 0, e)
        if cap is not None:
            e = np.minimum(e, cap)
        with np.errstate(over="ignore", under="ignore"):
            y = np.ldexp(x, (-LOG2_BASE * e).clip(-2**31 + 1, 2**31 - 1).astype(np.int32))
        fast = np.abs(y) < _FAST_LIMIT
        mants: list[Any] = np.rint(np.where(fast, y, 0.0)).astype(np.int64).tolist()
        if not fast.all():
            for i in np.flatnonzero(~fast).tolist():
                mants[i] = self._exact_float(float(x[i]), int(e[i]))
        return self._finish(mants, e)

    def _encode_objects(self, flat: np.ndarray, forced: int | None, cap: int | None) -> EncodedBatch:
        mants, exps = [], []
        for i, v in enumerate(flat.tolist()):
            if isinstance(v, bool) or isinstance(v, (int, Integral)):
                k = 0 if forced is None else forced
                k = k if cap is None else min(k, cap)
                mants.append(self._exact_int(int(v), k))
            elif isinstance(v, Real):
                one = self._encode_floats(np.array([float(v)]), forced, cap)
                mants.append(one.mantissas[0])
                k = int(one.exponents[0])
            else:
                raise TypeError(f"value[{i}] has type {type(v).__name__}; expected int or float")
            exps.append(k)
        return self._finish(mants, np.array(exps, dtype=np.int64))

    @staticmethod
    def _exact_int(v: int, e: int) -> int:
        return v * BASE ** (-e) if e <= 0 else _round_fraction(Fraction(v, BASE**e))

    @staticmethod
    def _exact_float(x: float, e: int) -> int:
        return _round_fraction(Fraction(x) * Fraction(BASE) ** (-e))

    def _finish(self, mants: list[int], e: np.ndarray) -> EncodedBatch:
        n, max_int = self.n, self.max_int
        out = []
        for i, m in enumerate(mants):
            if m > max_int or -m > max_int:
                raise PlaintextOverflowError(
                    f"value[{i}] needs a mantissa of {abs(m).bit_length()} bits at exponent "
                    f"{self.to_public_exponent(int(e[i]))}; the key allows |mantissa| <= max_int "
                    f"({self.max_int.bit_length()} bits)"
                )
            out.append(m % n)
        return EncodedBatch(out, np.asarray(e, dtype=np.int64), list(mants))

    # -- decode ------------------------------------------------------------------------------
    def signed_mantissas(self, encodings: list[int]) -> list[int]:
        n, max_int, low = self.n, self.max_int, self.n - self.max_int
        out = []
        for i, v in enumerate(encodings):
            v = int(v)
            if v < 0 or v >= n:
                raise ValueError(f"encoding[{i}] is not in [0, n): corrupted")
            if v <= max_int:
                out.append(v)
            elif v >= low:
                out.append(v - n)
            else:
                raise DecodeOverflowError(
                    f"value[{i}] overflowed: its encoding is neither <= max_int nor >= n - max_int "
                    "(the homomorphic result left the representable range)"
                )
        return out

    def decode(self, encodings: Any, exponents: Any, *, integers_toward_zero: bool = False) -> np.ndarray:
        """Float64 values of encodings (ints in [0, n)) at internal exponents, correctly
        rounded. ``integers_toward_zero``: values at exponents >= 0 (integers) that need more
        than 53 bits round toward zero instead, as fate_utils converts them (rug's
        ``Integer::to_f64``); stock FATE 2.x peers decode so, and SecureBoost's split ties
        depend on the last bit."""
        mants = self.signed_mantissas(list(encodings))
        e = np.broadcast_to(np.asarray(exponents, dtype=np.int64), (len(mants),))
        if not mants:
            return np.zeros(0)
        if max(mants) < 2**53 and min(mants) > -(2**53):
            with np.errstate(over="ignore", under="ignore"):
                return np.ldexp(np.array(mants, dtype=np.float64),
                                (LOG2_BASE * e).clip(-2**31 + 1, 2**31 - 1).astype(np.int32))
        out = np.empty(len(mants))
        for i, (m, k) in enumerate(zip(mants, e.tolist())):
            if k < 0:
                out[i] = m / (1 << (-LOG2_BASE * k))
            elif integers_toward_zero:
                out[i] = to_f64_toward_zero(m, LOG2_BASE * k)
            else:
                out[i] = float(m << (LOG2_BASE * k))
        return out

    def decode_floor(self, encodings: Any, exponents: Any) -> list[int]:
        """Exact floor of each value (an arithmetic shift of the mantissa): fate_utils'
        integer decoding, before any narrowing to a machine width."""
        mants = self.signed_mantissas(list(encodings))
        e = np.broadcast_to(np.asarray(exponents, dtype=np.int64), (len(mants),)).tolist()
        return [m << (LOG2_BASE * k) if k >= 0 else m >> (-LOG2_BASE * k) for m, k in zip(mants, e)]

    def decode_exact(self, encodings: Any, exponents: Any) -> list[Any]:
        """Exact values: ints where the exponent is >= 0 (internal sign), Fractions otherwise."""
        mants = self.signed_mantissas(list(encodings))
        e = np.broadcast_to(np.asarray(exponents, dtype=np.int64), (len(mants),)).tolist()
        return [m * BASE**k if k >= 0 else Fraction(m, BASE ** (-k)) for m, k in zip(mants, e)]


def to_f64_toward_zero(x: int, shift: int = 0) -> float:
    """``x * 2**shift`` as a float64 rounded toward zero (Python's ``float`` rounds to nearest).
    fate_utils converts integers this way (rug's ``to_f64``), so decoding and unpacking that
    must match a stock FATE 2.x peer bit for bit use it."""
    mag = abs(int(x))
    drop = mag.bit_length() - FLOAT_MANTISSA_BITS
    if drop > 0:
        mag >>= drop
        shift += drop
    v = math.ldexp(float(mag), shift)
    return -v if x < 0 else v
