"""fate_utils 0.1.0's pickled layout (bincode 1.3 over rug integers), read and written.

fate_utils objects pickle as ``__newobj__(cls)`` plus ``__setstate__(list_of_byte_values)``.
The bytes are bincode: a ``u64`` little-endian count for vectors, and each big integer as
``{i32 radix, u64 length, ASCII digits}`` (a leading ``-`` is allowed: fate_utils encodes a
negative float's mantissa without adding n, so its ciphertexts can be negative integers, equal
mod n^2 to the real one). Fixed-point numbers append an ``i32`` exponent.

Layouts (verified against fate_utils 0.1.0 by the interop tests):

* ``CiphertextVector``/``PlaintextVector``: count, then per element (integer, exponent).
* ``PK``: n, n^2, max_int.   ``Coder``: n, max_int.
* ``SK``: p, q, n, p-1, q-1, p^2, q^2, p^-1 mod q, hp, hq (p < q).
"""
from __future__ import annotations

import struct
from typing import Sequence

_I32 = struct.Struct("<i")
_U64 = struct.Struct("<Q")


def _put_int(out: list[bytes], x: int) -> None:
    digits = format(int(x), "x").encode()
    out.append(_I32.pack(16) + _U64.pack(len(digits)) + digits)


def _get_int(buf: bytes, i: int) -> tuple[int, int]:
    if i + 12 > len(buf):
        raise ValueError("truncated fate_utils integer")
    radix = _I32.unpack_from(buf, i)[0]
    size = _U64.unpack_from(buf, i + 4)[0]
    i += 12
    if not 2 <= radix <= 36 or i + size > len(buf):
        raise ValueError("malformed fate_utils integer")
    return int(buf[i:i + size].decode("ascii"), radix), i + size


def as_bytes(state) -> bytes:
    return bytes(state)


def pack_fixedpoint_vector(values: Sequence[int], exponents: Sequence[int]) -> list[int]:
    """State of a CiphertextVector/PlaintextVector: the list fate_utils' __setstate__ takes."""
    out = [_U64.pack(len(values))]
    for v, e in zip(values, exponents):
        _put_int(out, v)
        out.append(_I32.pack(int(e)))
    return list(b"".join(out))


def unpack_fixedpoint_vector(state) -> tuple[list[int], list[int]]:
    buf = as_bytes(state)
    if len(buf) < 8:
        raise ValueError("truncated fate_utils vector")
    count = _U64.unpack_from(buf, 0)[0]
    i = 8
    values, exps = [], []
    for _ in range(count):
        v, i = _get_int(buf, i)
        if i + 4 > len(buf):
            raise ValueError("truncated fate_utils vector")
        values.append(v)
        exps.append(_I32.unpack_from(buf, i)[0])
        i += 4
    if i != len(buf):
        raise ValueError("trailing bytes after a fate_utils vector")
    return values, exps


def pack_ints(values: Sequence[int]) -> list[int]:
    out: list[bytes] = []
    for v in values:
        _put_int(out, v)
    return list(b"".join(out))


def unpack_ints(state, count: int) -> list[int]:
    buf = as_bytes(state)
    i, out = 0, []
    for _ in range(count):
        v, i = _get_int(buf, i)
        out.append(v)
    if i != len(buf):
        raise ValueError("unexpected layout of a fate_utils key")
    return out
