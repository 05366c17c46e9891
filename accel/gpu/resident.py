"""Device-resident ciphertexts in Montgomery form: :class:`MontgomeryArray`.

A device array of ciphertexts c holds, in Montgomery form, x = c R mod n^2 with R = 2^(32 L) and
L = 2 lp the limbs of the key's size class (:func:`accel.gpu.limbs.key_class`). The product of
two such numbers is one Montgomery multiplication (aR bR R^-1 = abR) where normal-form operands
need two, so chains of adds, sums, scalar products and rerandomisations kept on the device in
this form cost one multiplication less per add (``kernels/resident_coop.cu``). The form is
recorded in the type, with the key it belongs to, so it cannot be mixed up with a plain
(normal-form) device array or another key's numbers; the backend converts in and out on the
device, once per chain (:meth:`accel.backends.gpu.GpuBackend.to_montgomery`, ``from_montgomery``).

The host functions here convert limb arrays the same way (the CPU fallback's path and the tests'
oracle); the device never needs them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gmpy2
import numpy as np

from ..keys import PublicKey
from .limbs import key_class


@dataclass(frozen=True, eq=False)
class MontgomeryArray:
    """Ciphertexts of ``public_key`` on a device as c R mod n^2 (a ``(batch, ciphertext limbs)``
    device array in ``data``). Made by :class:`~accel.backends.gpu.GpuBackend` only: its
    device-resident ``raw_*`` methods take and return them (``raw_decrypt`` returns plaintexts);
    ``to_host`` and ``from_montgomery`` convert out."""

    data: Any
    public_key: PublicKey

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def __repr__(self) -> str:  # never the numbers
        return f"<MontgomeryArray {self.shape[0]} ciphertexts of a {self.public_key.n.bit_length()}-bit key>"


def montgomery_radix(pk: PublicKey) -> int:
    """R = 2^(32 L) of the key's size class (L = 2 lp limbs: the kernels' modulus n^2)."""
    return 1 << (64 * key_class(pk))


def to_montgomery_limbs(pk: PublicKey, rows: np.ndarray) -> np.ndarray:
    """c R mod n^2 of every row (host limbs in, host limbs out)."""
    n2, r = gmpy2.mpz(pk.nsquare), montgomery_radix(pk)
    return _map_rows(rows, lambda c: c * r % n2)


def from_montgomery_limbs(pk: PublicKey, rows: np.ndarray) -> np.ndarray:
    """x R^-1 mod n^2 of every row (host limbs in, host limbs out)."""
    n2 = gmpy2.mpz(pk.nsquare)
    r_inv = gmpy2.invert(montgomery_radix(pk), n2)
    return _map_rows(rows, lambda x: x * r_inv % n2)


def _map_rows(rows: np.ndarray, fn) -> np.ndarray:
    rows = np.ascontiguousarray(rows, dtype=np.uint32)
    width = rows.shape[1] * 4
    out = bytearray()
    for row in rows:
        v = int(fn(gmpy2.mpz(int.from_bytes(row.tobytes(), "little"))))
        out += v.to_bytes(width, "little")
    return np.frombuffer(bytes(out), dtype=np.uint32).reshape(rows.shape).copy()


__all__ = ["MontgomeryArray", "from_montgomery_limbs", "montgomery_radix", "to_montgomery_limbs"]
