"""Packed big numbers: fixed-width little-endian byte blobs and uint32 limb arrays.

A batch of B numbers of width W bytes (W a multiple of 4) packs as one ``bytes`` of length
B*W, number i at ``blob[i*W:(i+1)*W]``, least significant byte first. The same memory viewed
as ``numpy.uint32`` is a (B, W/4) limb array, least significant limb first: the layout the
GPU kernels use. Converting between the two costs nothing; converting to Python ints costs
one ``int.from_bytes`` per number (C speed, no per-limb Python).
"""
from __future__ import annotations

import enum
from numbers import Integral
from typing import Any, Iterable, Sequence

import numpy as np

_MPZ_TYPE = type(__import__("gmpy2").mpz(0))


class Packing(enum.Enum):
    """How a batch arrived, so results go back in the same form."""

    INTS = "ints"      # list[int]
    LIMBS = "limbs"    # numpy uint32 array of shape (batch, limbs)
    BLOB = "blob"      # bytes of length batch * width


def limbs_for_bits(bits: int) -> int:
    return (bits + 31) // 32


def _check_int(x: Any, what: str, index: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, Integral, _MPZ_TYPE)):
        raise TypeError(f"{what}[{index}] must be an int, got {type(x).__name__}")
    return int(x)


def ints_to_blob(values: Iterable[Any], width: int, what: str = "value") -> bytes:
    """Pack non-negative ints into a ``width``-byte little-endian blob; clear errors otherwise."""
    if type(values) in (list, tuple):
        # Fast path for plain ints (the common case: a quarter of the per-element cost); anything
        # else, or a value that does not fit (negative, too wide), takes the checked loop below
        # for its error.
        try:
            if all(type(x) is int for x in values):
                return b"".join([x.to_bytes(width, "little") for x in values])
        except OverflowError:
            pass
    out = []
    for i, x in enumerate(values):
        v = _check_int(x, what, i)
        if v < 0:
            raise ValueError(f"{what}[{i}] is negative; packed numbers are unsigned")
        try:
            out.append(v.to_bytes(width, "little"))
        except OverflowError:
            raise ValueError(f"{what}[{i}] does not fit in {width} bytes") from None
    return b"".join(out)


def blob_to_ints(blob: bytes | bytearray | memoryview, width: int) -> list[int]:
    mv = memoryview(blob).cast("B")
    if width <= 0 or len(mv) % width:
        raise ValueError(f"blob length {len(mv)} is not a multiple of the width {width}")
    fb = int.from_bytes
    return [fb(mv[i : i + width], "little") for i in range(0, len(mv), width)]


def blob_to_limbs(blob: bytes | bytearray | memoryview, width: int) -> np.ndarray:
    if width % 4:
        raise ValueError("limb arrays need a width that is a multiple of 4 bytes")
    if len(blob) % width:
        raise ValueError(f"blob length {len(blob)} is not a multiple of the width {width}")
    return np.frombuffer(bytes(blob), dtype="<u4").reshape(-1, width // 4).copy()


def limbs_to_blob(limbs: np.ndarray, width: int | None = None) -> bytes:
    arr = np.asarray(limbs)
    if arr.ndim != 2 or arr.dtype.kind != "u" or arr.dtype.itemsize != 4:
        raise TypeError("limb arrays must be 2-D numpy uint32 (batch, limbs)")
    if width is not None and arr.shape[1] * 4 != width:
        raise ValueError(f"limb array has {arr.shape[1]} limbs per number, expected {width // 4}")
    return np.ascontiguousarray(arr, dtype="<u4").tobytes()


def ints_to_limbs(values: Iterable[Any], n_limbs: int) -> np.ndarray:
    return blob_to_limbs(ints_to_blob(values, 4 * n_limbs), 4 * n_limbs)


def limbs_to_ints(limbs: np.ndarray) -> list[int]:
    arr = np.asarray(limbs)
    return blob_to_ints(limbs_to_blob(arr), arr.shape[1] * 4) if arr.shape[0] else []


def is_packed(x: Any) -> bool:
    return isinstance(x, (bytes, bytearray, memoryview)) or (
        isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype.kind == "u"
    )


def to_blob(batch: Any, width: int, what: str) -> tuple[bytes, Packing]:
    """Normalise a batch (list of ints, 1-D int array, limb array or blob) to a blob of ``width``."""
    if isinstance(batch, (bytes, bytearray, memoryview)):
        blob = bytes(batch)
        if len(blob) % width:
            raise ValueError(f"{what} blob length {len(blob)} is not a multiple of the width {width}")
        return blob, Packing.BLOB
    if isinstance(batch, np.ndarray):
        if batch.ndim == 2 and batch.dtype.kind == "u":
            if batch.dtype.itemsize != 4:
                raise TypeError(f"{what} limb arrays must be uint32")
            return limbs_to_blob(batch, width), Packing.LIMBS
        if batch.ndim != 1:
            raise ValueError(f"{what} must be 1-D (values) or 2-D uint32 (limbs), got shape {batch.shape}")
        if batch.dtype.kind not in "iuO":
            raise TypeError(f"{what} must hold integers, got dtype {batch.dtype}")
        return ints_to_blob(batch.tolist(), width, what), Packing.INTS
    if isinstance(batch, (str, dict)) or not isinstance(batch, (Sequence, Iterable)):
        raise TypeError(f"{what} must be a list of ints, a limb array or a byte blob, got {type(batch).__name__}")
    return ints_to_blob(batch, width, what), Packing.INTS


def from_blob(blob: bytes, width: int, packing: Packing) -> Any:
    """Return a result blob in the form its input arrived in."""
    if packing is Packing.BLOB:
        return blob
    if packing is Packing.LIMBS:
        return blob_to_limbs(blob, width)
    return blob_to_ints(blob, width)


def batch_len(blob: bytes, width: int) -> int:
    return len(blob) // width


def split_blob(blob: bytes, width: int, chunk: int) -> list[tuple[int, bytes]]:
    """(start index, sub-blob) pieces of at most ``chunk`` numbers each."""
    step = chunk * width
    return [(i // width, blob[i : i + step]) for i in range(0, len(blob), step)]
