"""Decoding and validating request payloads: packed blobs and signed numbers.

Everything here runs in the RPC handler thread before a request is queued, so a malformed
request fails alone with INVALID_ARGUMENT (naming the index) and never poisons a coalesced
batch. Range checks are vectorised over uint32 limbs; no value is ever put in a message.
"""
from __future__ import annotations

import numpy as np

from accel.backends.base import EncryptMode
from accel.packing import ints_to_limbs

from .errors import InvalidArgument
from .proto.heaccel.v1 import heaccel_pb2 as pb

MAX_SIGNED_WIDTH = 1024  # bytes per signed magnitude (8192-bit powmod exponents)

# the wire's names of the encrypt modes a client may ask for (a pool of obfuscators stays local)
WIRE_ENCRYPT_MODES = {
    EncryptMode.TEXTBOOK: pb.ENCRYPT_MODE_TEXTBOOK,
    EncryptMode.CRT: pb.ENCRYPT_MODE_CRT,
    EncryptMode.DJN: pb.ENCRYPT_MODE_DJN,
    EncryptMode.DETERMINISTIC: pb.ENCRYPT_MODE_DETERMINISTIC,
}


def count_of(blob: bytes, width: int, what: str) -> int:
    if len(blob) % width:
        raise InvalidArgument(f"{what}: blob length {len(blob)} is not a multiple of the width {width}")
    return len(blob) // width


def first_not_below(blob: bytes, width: int, bound: int) -> int:
    """Index of the first number in ``blob`` that is >= ``bound``, or -1 (width % 4 == 0)."""
    if not blob:
        return -1
    if bound.bit_length() > 8 * width:
        return -1
    n_limbs = width // 4
    rows = np.frombuffer(blob, dtype="<u4").reshape(-1, n_limbs)[:, ::-1]
    top = ints_to_limbs([bound], n_limbs)[0, ::-1]
    differs = rows != top
    first = differs.argmax(axis=1)
    below = differs.any(axis=1) & (rows[np.arange(rows.shape[0]), first] < top[first])
    bad = np.flatnonzero(~below)
    return int(bad[0]) if bad.size else -1


def first_zero(blob: bytes, width: int) -> int:
    if not blob:
        return -1
    rows = np.frombuffer(blob, dtype="<u4").reshape(-1, width // 4)
    bad = np.flatnonzero(~rows.any(axis=1))
    return int(bad[0]) if bad.size else -1


def plaintexts(blob: bytes, n: int, width: int, what: str = "plaintext") -> int:
    """Check a plaintext blob (each value in [0, n)); return its count."""
    count = count_of(blob, width, what)
    i = first_not_below(blob, width, n)
    if i >= 0:
        raise InvalidArgument(f"{what}[{i}] is out of range: must be < n")
    return count


def ciphertexts(blob: bytes, nsquare: int, width: int, what: str = "ciphertext") -> int:
    """Check a ciphertext blob (each value in [1, n^2)); return its count."""
    count = count_of(blob, width, what)
    i = first_zero(blob, width)
    if i >= 0:
        raise InvalidArgument(f"{what}[{i}] is out of range: must be in [1, n^2)")
    i = first_not_below(blob, width, nsquare)
    if i >= 0:
        raise InvalidArgument(f"{what}[{i}] is out of range: must be in [1, n^2)")
    return count


def signed_count(magnitudes: bytes, width: int, negative: bytes, what: str) -> int:
    """How many signed numbers a message holds, from its lengths alone (nothing decoded)."""
    if width <= 0 or width > MAX_SIGNED_WIDTH:
        raise InvalidArgument(f"{what}: width {width} must be in [1, {MAX_SIGNED_WIDTH}]")
    count = count_of(magnitudes, width, what)
    if negative and len(negative) != count:
        raise InvalidArgument(f"{what}: {len(negative)} sign bytes for {count} numbers")
    return count


def signed(magnitudes: bytes, width: int, negative: bytes, bound: int, what: str,
           expected: int | None = None) -> list[int]:
    """Signed ints from packed magnitudes and sign bytes, each |v| < bound.

    ``expected``: the count the request's header implies; a blob of any other length fails
    before a single number is decoded (decoding is the costly part: one Python int each).
    """
    count = signed_count(magnitudes, width, negative, what)
    if expected is not None and count != expected:
        raise InvalidArgument(f"length mismatch: {expected} expected, {count} {what}s given")
    if negative:
        signs = np.frombuffer(negative, dtype=np.uint8)
        bad = np.flatnonzero(signs > 1)
        if bad.size:
            raise InvalidArgument(f"{what}: sign byte {int(bad[0])} must be 0 or 1")
    out = []
    frm = int.from_bytes
    for i in range(count):
        v = frm(magnitudes[i * width:(i + 1) * width], "little")
        if v >= bound:
            raise InvalidArgument(f"{what}[{i}] is out of range: |value| must be < n")
        out.append(-v if negative and negative[i] else v)
    return out


def pack_signed(values: list[int], width: int) -> tuple[bytes, bytes]:
    """(magnitudes, negative) for :func:`signed`; the sign bytes are empty when none is negative."""
    mags = b"".join(abs(v).to_bytes(width, "little") for v in values)
    neg = bytes(1 if v < 0 else 0 for v in values)
    return mags, (neg if any(neg) else b"")


def signed_width(values: list[int], at_most: int) -> int:
    """The smallest multiple of 4 bytes holding every |value| (at least 4, at most ``at_most``)."""
    top = max((abs(v).bit_length() for v in values), default=1)
    return min(at_most, max(4, -(-top // 32) * 4))
