"""FATE's fixed-point vectors: encoded plaintexts (:class:`FV`) and ciphertexts (:class:`EV`).

Both pickle as fate_utils' own vector classes (same integers, same exponents), so they cross
party boundaries, and FATE's restricted unpickler, as stock FATE's types; ``of`` takes
fate_utils' vectors and scalars wherever ours are taken, so data from a stock peer flows in.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ...keys import PublicKey
from . import fate_module, interop


def exponent_array(exps: Any, count: int) -> np.ndarray:
    """``count`` exponents as int64: a single one is repeated, any other count is refused."""
    out = np.asarray(exps, dtype=np.int64).reshape(-1)
    if out.size == 1 and count != 1:
        out = np.full(count, int(out[0]), dtype=np.int64)
    if out.size != count:
        raise ValueError(f"{out.size} exponents for {count} values")
    return out


class FV:
    """Encoded plaintexts: ints (the value mod n, as fate_utils keeps them) and exponents."""

    __slots__ = ("values", "exps")

    def __init__(self, values: Sequence[int] = (), exps: Any = ()):
        self.values = [int(v) for v in values]
        self.exps = exponent_array(exps, len(self.values))

    def __setstate__(self, state: Any) -> None:
        values, exps = interop.read_fixedpoint_state(state)
        self.values, self.exps = values, exponent_array(exps, len(values))

    @classmethod
    def of(cls, x: Any) -> "FV":
        if isinstance(x, FV):
            return x
        if interop.is_plaintexts(x):
            return cls(*interop.read_fixedpoint(x))
        raise TypeError(f"expected encoded plaintexts, got {type(x).__name__}")

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"<he-accel fate2 FV len={len(self)}>"

    def __reduce__(self):
        cls = fate_module.class_for_pickle("PlaintextVector", interop.PlaintextVector)
        return (cls, (), interop.fixedpoint_state(self.values, self.exps.tolist()))

    def get_stride(self, index: int, stride: int) -> "FV":
        s = index * stride
        return FV(self.values[s:s + stride], self.exps[s:s + stride])

    def tolist(self) -> list["FV"]:
        return [FV([v], [e]) for v, e in zip(self.values, self.exps.tolist())]


class EV:
    """Encrypted fixed-point vector: ciphertexts (Python ints in [1, n^2)) and exponents.

    Pickles as ``fate_utils.paillier.CiphertextVector``, so it crosses party boundaries (and
    FATE's restricted unpickler) as stock FATE's own type. ``len()`` works. A ciphertext equal
    to 1 is FATE's zero (an unobfuscated encryption of 0), the identity of addition.
    """

    __slots__ = ("cts", "exps")

    def __init__(self, cts: Sequence[int] = (), exps: Any = ()):
        self.cts = list(cts)
        self.exps = exponent_array(exps, len(self.cts))

    def __setstate__(self, state: Any) -> None:
        # fate_utils' layout: what stock peers and this class's __reduce__ both write
        values, exps = interop.read_fixedpoint_state(state)
        self.cts, self.exps = values, exponent_array(exps, len(values))

    @classmethod
    def of(cls, x: Any, public_key: PublicKey | None = None) -> "EV":
        """Ours as is; a fate_utils vector (or scalar) converted. fate_utils may hold a
        ciphertext as a negative integer (congruent mod n^2); with ``public_key`` every value
        is reduced into [0, n^2), without it (slicing, concatenating) they are kept as they are
        and reduced by the first operation that has the key."""
        if isinstance(x, EV):
            if public_key is not None and x.unreduced:
                ns = public_key.nsquare
                return cls([c % ns for c in x.cts], x.exps)
            return x
        if interop.is_ciphertexts(x):
            values, exps = interop.read_fixedpoint(x)
            if public_key is not None:
                ns = public_key.nsquare
                values = [v % ns for v in values]
            return cls(values, exps)
        raise TypeError(f"expected a ciphertext vector, got {type(x).__name__}")

    @classmethod
    def zeros(cls, size: int) -> "EV":
        """``size`` of FATE's zeros (ciphertext 1, exponent 0)."""
        return cls([1] * int(size), np.zeros(int(size), dtype=np.int64))

    @classmethod
    def concat(cls, parts: Sequence["EV"]) -> "EV":
        cts: list[int] = []
        for p in parts:
            cts.extend(p.cts)
        return cls(cts, np.concatenate([p.exps for p in parts]) if parts else [])

    @property
    def unreduced(self) -> bool:
        """Whether some ciphertext is outside [1, n^2) (fate_utils' negative form)."""
        return any(c <= 0 for c in self.cts)

    def reduce_in_place(self, public_key: PublicKey) -> None:
        """Every ciphertext into [0, n^2), this object updated (FATE's in-place ops)."""
        if self.unreduced:
            self.cts[:] = [c % public_key.nsquare for c in self.cts]

    def __len__(self) -> int:
        return len(self.cts)

    def __repr__(self) -> str:
        return f"<he-accel fate2 EV len={len(self)}>"

    def to_fate_utils(self) -> Any:
        return interop.fate_utils_ciphertexts(self.cts, self.exps.tolist())

    def __reduce__(self):
        # Rebuilt by the reader as ``fate.arch.protocol.phe.paillier.CiphertextVector()`` plus
        # ``__setstate__``: stock FATE's name for fate_utils' class, this class where the plugin
        # is installed. Without the plugin here, written as fate_utils' own class.
        cls = fate_module.class_for_pickle("CiphertextVector", interop.CiphertextVector)
        return (cls, (), interop.fixedpoint_state(self.cts, self.exps.tolist()))

    def broadcast(self, count: int) -> "EV":
        """This vector at length ``count``: as is, or its one ciphertext repeated."""
        if len(self) == count:
            return self
        if len(self) == 1:
            return EV(self.cts * count, np.full(count, int(self.exps[0]), dtype=np.int64))
        raise ValueError(f"cannot broadcast {len(self)} values to {count}")

    def gather(self, indexes: Sequence[int]) -> "EV":
        """The elements at ``indexes``, in that order."""
        return EV([self.cts[i] for i in indexes], self.exps[list(indexes)])

    def scatter(self, indexes: Sequence[int], part: "EV") -> None:
        """In place: element ``indexes[k]`` becomes ``part``'s element k."""
        for i, c, e in zip(indexes, part.cts, part.exps.tolist()):
            self.cts[i], self.exps[i] = c, e

    def copy(self) -> "EV":
        return EV(self.cts, self.exps.copy())

    def tolist(self) -> list["EV"]:
        return [EV([c], [e]) for c, e in zip(self.cts, self.exps.tolist())]

    def slice(self, start: int, size: int) -> "EV":
        return EV(self.cts[start:start + size], self.exps[start:start + size])

    def slice_indexes(self, indexes: Sequence[int]) -> "EV":
        return self.gather([int(i) for i in indexes])
