"""fate_utils' objects (stock FATE 2.x's engine) read into plain integers and built from them.

The one module that touches fate_utils: everything crossing a party boundary is fate_utils'
vocabulary, read and written through the objects' pickled state (:mod:`.._fate_wire`).
"""
from __future__ import annotations

from typing import Any

from ...keys import PrivateKey, PublicKey
from .. import _fate_wire as wire

from fate_utils import paillier as fate_utils_paillier

CiphertextVector = fate_utils_paillier.CiphertextVector
PlaintextVector = fate_utils_paillier.PlaintextVector


def _is_scalar(x: Any, name: str) -> bool:
    """fate_utils' scalar types (``Plaintext``, ``Ciphertext``) exist but are not exported."""
    t = type(x)
    return t.__name__ == name and t.__module__.endswith("paillier")


# -- keys and coder ------------------------------------------------------------------------
def public_key_of(obj: Any) -> PublicKey:
    """The key in any of FATE's forms: ours (anything holding a ``public_key``), a
    :class:`~accel.PublicKey`, fate_utils' ``PK``, or stock FATE's wrapper around it (``.pk``)."""
    if isinstance(obj, PublicKey):
        return obj
    ours = getattr(obj, "public_key", None)
    if isinstance(ours, PublicKey):
        return ours
    if isinstance(obj, fate_utils_paillier.PK):
        n, _, _ = wire.unpack_ints(obj.__getstate__(), 3)
        return PublicKey(n)
    inner = getattr(obj, "pk", None)
    if inner is not None and inner is not obj:
        return public_key_of(inner)
    raise TypeError(f"expected a Paillier public key, got {type(obj).__name__}")


def fate_utils_public_key(n: int, max_int: int) -> Any:
    out = fate_utils_paillier.PK()
    out.__setstate__(wire.pack_ints([n, n * n, max_int]))
    return out


def is_fate_utils_private_key(obj: Any) -> bool:
    return isinstance(obj, fate_utils_paillier.SK)


def private_key_of(sk: Any) -> PrivateKey:
    """A fate_utils ``SK`` as our private key."""
    p, q, n = wire.unpack_ints(sk.__getstate__(), 10)[:3]
    return PrivateKey(PublicKey(n), p, q)


def fate_utils_private_key(key: PrivateKey) -> Any:
    p, q = key.p, key.q
    out = fate_utils_paillier.SK()
    out.__setstate__(wire.pack_ints([p, q, p * q, p - 1, q - 1, key.psquare, key.qsquare,
                                     key.p_inverse, key.hp, key.hq]))
    return out


def is_fate_utils_coder(obj: Any) -> bool:
    return isinstance(obj, fate_utils_paillier.Coder)


def coder_parameters(coder: Any) -> tuple[int, int]:
    """(n, max_int) of a fate_utils ``Coder``."""
    n, max_int = wire.unpack_ints(coder.__getstate__(), 2)
    return n, max_int


def fate_utils_coder(n: int, max_int: int) -> Any:
    out = fate_utils_paillier.Coder()
    out.__setstate__(wire.pack_ints([n, max_int]))
    return out


# -- fixed-point vectors and scalars -------------------------------------------------------
def is_plaintexts(x: Any) -> bool:
    return isinstance(x, PlaintextVector) or _is_scalar(x, "Plaintext")


def is_ciphertexts(x: Any) -> bool:
    return isinstance(x, CiphertextVector) or _is_scalar(x, "Ciphertext")


def read_fixedpoint(x: Any) -> tuple[list[int], list[int]]:
    """(integers, exponents) of a fate_utils vector. Its scalars (``Plaintext``,
    ``Ciphertext``) expose no state, neither pickling nor ``__getstate__``, so they cannot be
    read (and never cross a party boundary): they are refused with a TypeError."""
    if not isinstance(x, (PlaintextVector, CiphertextVector)):
        name = type(x).__name__
        raise TypeError(f"fate_utils' {name} scalar exposes no state to read; pass a {name}Vector "
                        "(a stock coder's encode_*_vec, or this plugin's Coder)")
    return wire.unpack_fixedpoint_vector(x.__getstate__())


def read_fixedpoint_state(state: Any) -> tuple[list[int], list[int]]:
    """(integers, exponents) from a fate_utils vector's pickled state."""
    return wire.unpack_fixedpoint_vector(state)


def fixedpoint_state(values: list[int], exponents: list[int]) -> list[int]:
    """What a fate_utils vector's ``__setstate__`` takes (and ``__getstate__`` gives)."""
    return wire.pack_fixedpoint_vector(values, exponents)


def fate_utils_ciphertexts(values: list[int], exponents: list[int]) -> Any:
    out = CiphertextVector()
    out.__setstate__(fixedpoint_state(values, exponents))
    return out
