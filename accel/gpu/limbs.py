"""Host-side records for the kernels: moduli with their Montgomery constants, Paillier keys.

The field order mirrors ``kernels/montgomery.cuh`` (``mod_rec``) and ``kernels/paillier.cuh``
(``pub_rec``, ``crt_rec``); the emulator exports the C++ sizes and the tests compare them.
"""
from __future__ import annotations

import numpy as np

from ..keys import PrivateKey, PublicKey

#: Paillier size classes: plaintext limbs LP (keys up to 32*LP bits), ciphertexts 2*LP limbs.
KEY_CLASSES = (32, 64, 96, 128)
#: Modulus sizes (limbs) of the generic powmod kernel.
MOD_CLASSES = (32, 64, 96, 128, 192, 256)
#: Exponent window width in the kernels (HEA_WINDOW).
WINDOW = 4


class UnsupportedSizeError(ValueError):
    """No kernel size class fits this key or modulus (the backend then uses the CPU)."""


def limbs(x: int, count: int) -> np.ndarray:
    if x < 0 or x.bit_length() > 32 * count:
        raise ValueError(f"value does not fit in {count} limbs")
    return np.frombuffer(x.to_bytes(4 * count, "little"), dtype="<u4").astype(np.uint32)


def key_class(pk: PublicKey, sk: PrivateKey | None = None) -> int:
    """The smallest LP with n < 2^(32 LP) and, for a private key, p^2, q^2 < 2^(32 LP)."""
    need = pk.n.bit_length()
    if sk is not None:
        need = max(need, 2 * sk.p.bit_length(), 2 * sk.q.bit_length())
    for lp in KEY_CLASSES:
        if need <= 32 * lp:
            return lp
    raise UnsupportedSizeError(f"no GPU size class for a {pk.n.bit_length()}-bit key")


def mod_class(m: int) -> int:
    for lc in MOD_CLASSES:
        if m.bit_length() <= 32 * lc:
            return lc
    raise UnsupportedSizeError(f"no GPU size class for a {m.bit_length()}-bit modulus")


def mod_rec(m: int, count: int) -> np.ndarray:
    """m, R^2 mod m, -m^-1 mod 2^32 (R = 2^(32 count)); 2 count + 1 limbs. Even m gets m' = 0
    (the kernels refuse even moduli)."""
    r = 1 << (32 * count)
    minv = (-pow(m, -1, 1 << 32)) % (1 << 32) if m & 1 else 0
    return np.concatenate([limbs(m, count), limbs(r * r % m, count), np.array([minv], np.uint32)])


def pub_rec(pk: PublicKey, lp: int) -> np.ndarray:
    return np.concatenate([mod_rec(pk.nsquare, 2 * lp), limbs(pk.n, lp),
                           np.array([pk.n.bit_length()], np.uint32)])


def crt_rec(sk: PrivateKey, lp: int) -> np.ndarray:
    """The private key's CRT record. Secret: built per call and dropped after it."""
    p, q = sk.p, sk.q
    r = 1 << (32 * lp)
    fields = [
        mod_rec(p * p, lp), mod_rec(q * q, lp), mod_rec(p, lp), mod_rec(q, lp),
        pub_rec(sk.public_key, lp),
        limbs(p - 1, lp), limbs(q - 1, lp), limbs(p, lp), limbs(q, lp),
        limbs(pow(p, -1, r), lp), limbs(pow(q, -1, r), lp),
        limbs(sk.hp * r % p, lp), limbs(sk.hq * r % q, lp),
        limbs(pow(q, -1, p), lp), limbs(pow(q * q, -1, p * p), lp),
        np.array([max(p.bit_length(), q.bit_length())], np.uint32),
    ]
    return np.concatenate(fields)


def pub_rec_size(lp: int) -> int:
    return 2 * (2 * lp) + 1 + lp + 1


def crt_rec_size(lp: int) -> int:
    return 4 * (2 * lp + 1) + pub_rec_size(lp) + 10 * lp + 1


def montgomery_powers(m: int, count: int, upto: int) -> np.ndarray:
    """R^j mod m for j = 0..upto as an (upto+1, count) limb array (reduce kernel's r_powers)."""
    r = (1 << (32 * count)) % m
    out, acc = [], 1 % m
    for _ in range(upto + 1):
        out.append(limbs(acc, count))
        acc = acc * r % m
    return np.stack(out)


def signed_magnitudes(values: list[int], count: int) -> tuple[np.ndarray, np.ndarray]:
    """(|v| as a (len, count) limb array, sign flags as uint32) for the scalar kernels."""
    blob = b"".join(abs(v).to_bytes(4 * count, "little") for v in values)
    mags = np.frombuffer(blob, dtype="<u4").astype(np.uint32).reshape(len(values), count)
    return mags, np.array([v < 0 for v in values], dtype=np.uint32)
