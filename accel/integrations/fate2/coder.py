"""FATE's ``Coder``: torch tensors to encoded plaintexts and back, on :mod:`accel.encoding`.

The encoding is fate_utils' (the ``fate2`` convention of :class:`~accel.FixedPointCodec`:
BASE 16, ``exp = floor((frexp - 53) / 4)``, max_int = n // 2), so encodings, exponents and
decoded values match stock runs digit for digit; this class adds FATE's dtype dispatch and
fate_utils' packing of SecureBoost's gradients.

:mod:`accel.packed` does not apply to that packing: its layout is fixed by fate_utils, since
peers unpack it with stock code (first value in the most significant slot, caller-chosen slot
width, no headroom bookkeeping).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ...encoding import FixedPointCodec, to_f64_toward_zero
from ...keys import PublicKey
from . import fate_module, interop
from .arguments import int_list, positive_int, to_numpy
from .vectors import FV

_I64 = 1 << 64


def _wrap_i64(v: int) -> int:
    """Two's-complement narrowing to int64, as fate_utils' integer decoding does."""
    return ((v + (1 << 63)) % _I64) - (1 << 63)


def _unpack_slots(values: list[int], slot_bits: int, per_pack: int, total: int) -> list[int]:
    """fate_utils' packed layout read back: ``total`` unsigned slots, ``per_pack`` per value,
    the first in the most significant slot."""
    mask = (1 << slot_bits) - 1
    out: list[int] = []
    left = total
    for sig in values:
        k = min(left, per_pack)
        part = []
        for _ in range(k):
            part.append(sig & mask)
            sig >>= slot_bits
        out.extend(reversed(part))
        left -= k
    return out


class Coder:
    """fate_utils' fixed-point coder (BASE 16, max_int = n // 2), vectorised."""

    def __init__(self, coder: Any):
        if isinstance(coder, Coder):
            n, max_int = coder.n, coder.max_int
        elif interop.is_fate_utils_coder(coder):
            n, max_int = interop.coder_parameters(coder)
        else:
            try:
                n = interop.public_key_of(coder).n
            except TypeError:
                raise TypeError(f"expected a coder or public key, got {type(coder).__name__}") from None
            max_int = n // 2
        self.n, self.max_int = int(n), int(max_int)
        self.codec = FixedPointCodec(PublicKey(self.n), "fate2", max_int=self.max_int)

    @property
    def coder(self) -> Any:
        """The equivalent fate_utils ``Coder`` (for stock code paths)."""
        return interop.fate_utils_coder(self.n, self.max_int)

    def __reduce__(self):
        return (fate_module.current("Coder", Coder), (self.coder,))

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["coder"] if "coder" in state else PublicKey(state["n"]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Coder) and (other.n, other.max_int) == (self.n, self.max_int)

    def __hash__(self) -> int:
        return hash((self.n, self.max_int))

    # -- the encoding layer ------------------------------------------------------------------
    def _encode(self, values: np.ndarray) -> FV:
        """Floats at fate_utils' exponents, ints at exponent 0; |mantissa| > max_int refused
        (:class:`~accel.encoding.PlaintextOverflowError`, a ValueError)."""
        enc = self.codec.encode(values.reshape(-1))
        return FV(enc.encodings, enc.exponents)

    def _decode_floats(self, vec: Any) -> np.ndarray:
        fv = FV.of(vec)
        return self.codec.decode([v % self.n for v in fv.values], fv.exps, integers_toward_zero=True)

    def _decode_ints(self, vec: Any) -> list[int]:
        fv = FV.of(vec)
        return [_wrap_i64(v) for v in self.codec.decode_floor([v % self.n for v in fv.values], fv.exps)]

    # -- floats and ints, vectors ----------------------------------------------------------
    def encode_f64_vec(self, vec: Any) -> FV:
        return self._encode(to_numpy(vec, np.float64))

    def encode_f32_vec(self, vec: Any) -> FV:
        return self._encode(to_numpy(vec, np.float32).astype(np.float64))

    def encode_i64_vec(self, vec: Any) -> FV:
        return self._encode(to_numpy(vec, np.int64))

    def encode_i32_vec(self, vec: Any) -> FV:
        return self._encode(to_numpy(vec, np.int32))

    def decode_f64_vec(self, vec: Any) -> torch.Tensor:
        return torch.tensor(self._decode_floats(vec), dtype=torch.float64)

    def decode_f32_vec(self, vec: Any) -> torch.Tensor:
        return torch.tensor(self._decode_floats(vec).astype(np.float32))

    def decode_i64_vec(self, vec: Any) -> torch.Tensor:
        return torch.tensor(self._decode_ints(vec), dtype=torch.int64)

    def decode_i32_vec(self, vec: Any) -> torch.Tensor:
        # fate_utils decodes i32 through f64 and a saturating cast
        f = self._decode_floats(vec)
        return torch.tensor(np.clip(np.trunc(f), -2**31, 2**31 - 1).astype(np.int32))

    # -- scalars (length-1 FVs) ------------------------------------------------------------
    def encode_f64(self, val: float) -> FV:
        return self.encode_f64_vec(np.array([float(val)]))

    def encode_f32(self, val: float) -> FV:
        return self.encode_f32_vec(np.array([val], dtype=np.float32))

    def encode_i64(self, val: int) -> FV:
        return self._encode(np.array([int(val)], dtype=object))

    def encode_i32(self, val: int) -> FV:
        return self.encode_i64(val)

    def decode_f64(self, val: Any) -> float:
        return float(self._decode_floats(val)[0])

    def decode_f32(self, val: Any) -> float:
        return float(np.float32(self._decode_floats(val)[0]))

    def decode_i64(self, val: Any) -> int:
        return self._decode_ints(val)[0]

    def decode_i32(self, val: Any) -> int:
        return int(self.decode_i32_vec(val)[0])

    # -- FATE's tensor-level API (same dispatch as the stock Coder) ------------------------
    _VECTOR_ENCODERS = {torch.float64: "encode_f64_vec", torch.float32: "encode_f32_vec",
                        torch.int64: "encode_i64_vec", torch.int32: "encode_i32_vec"}
    _VECTOR_DECODERS = {torch.float64: "decode_f64_vec", torch.float32: "decode_f32_vec",
                        torch.int64: "decode_i64_vec", torch.int32: "decode_i32_vec"}
    _SCALAR_ENCODERS = {torch.float64: "encode_f64", torch.float32: "encode_f32",
                        torch.int64: "encode_i64", torch.int32: "encode_i32"}

    def _for_dtype(self, table: dict, dtype: Any) -> Callable:
        name = table.get(dtype)
        if name is None:
            raise NotImplementedError(f"{dtype} not supported")
        return getattr(self, name)

    def encode_tensor(self, tensor: torch.Tensor, dtype: torch.dtype = None) -> FV:
        return self.encode_vec(tensor.flatten(), dtype=tensor.dtype)

    def decode_tensor(self, tensor: Any, dtype: torch.dtype, shape: torch.Size = None, device=None) -> torch.Tensor:
        data = self.decode_vec(tensor, dtype)
        if shape is not None:
            data = data.reshape(shape)
        if device is not None:
            data = data.to(device.to_torch_device())
        return data

    def encode_vec(self, vec: torch.Tensor, dtype: torch.dtype = None) -> FV:
        if dtype is None:
            dtype = vec.dtype
        elif dtype != vec.dtype:
            vec = vec.to(dtype=dtype)
        return self._for_dtype(self._VECTOR_ENCODERS, dtype)(vec)

    def decode_vec(self, vec: Any, dtype: torch.dtype) -> torch.Tensor:
        return self._for_dtype(self._VECTOR_DECODERS, dtype)(vec)

    def encode(self, val: Any, dtype=None) -> FV:
        """One value (a number, or a 0-d tensor whose dtype then wins) as a length-1 FV."""
        if isinstance(val, torch.Tensor):
            if val.ndim != 0:
                raise ValueError(f"Coder.encode takes a scalar; got a tensor of shape {tuple(val.shape)} "
                                 "(encode_tensor encodes tensors)")
            dtype = val.dtype
            val = val.item()
        return self._for_dtype(self._SCALAR_ENCODERS, dtype)(val)

    # -- packing (SecureBoost's g/h) ---------------------------------------------------------
    def _pack_slots(self, ints: list[int], slot_bits: int, per_pack: int) -> FV:
        """fate_utils' packed layout: chunks of ``per_pack`` ints as x = (x << slot_bits) + v,
        the first in the most significant slot; exponent 0."""
        packed = []
        for s in range(0, len(ints), per_pack):
            acc = 0
            for v in ints[s:s + per_pack]:
                acc = (acc << slot_bits) + v
            packed.append(acc % self.n)
        return FV(packed, np.zeros(len(packed), dtype=np.int64))

    def pack_floats(self, float_tensor: Any, offset_bit: int, pack_num: int, precision: int) -> FV:
        """Chunks of ``pack_num`` floats as one integer each: x = (x << offset_bit) +
        round(v * 2^precision), rounding half away from zero as fate_utils does; exponent 0."""
        offset_bit, pack_num = positive_int(offset_bit, "offset_bit"), positive_int(pack_num, "pack_num")
        vals = to_numpy(float_tensor, np.float64).reshape(-1)
        scaled = np.ldexp(vals, int(precision))
        mag = np.abs(scaled)
        rounded = np.where(mag >= 2.0**52, mag, np.floor(mag + 0.5)) * np.sign(scaled)
        return self._pack_slots([int(v) for v in rounded.tolist()], offset_bit, pack_num)

    def unpack_floats(self, packed: Any, offset_bit: int, pack_num: int, precision: int,
                      total_num: int) -> torch.Tensor:
        offset_bit, pack_num = positive_int(offset_bit, "offset_bit"), positive_int(pack_num, "pack_num")
        slots = _unpack_slots(FV.of(packed).values, offset_bit, pack_num, int(total_num))
        return torch.tensor([to_f64_toward_zero(v, -int(precision)) for v in slots])

    def pack_vec(self, vec: torch.LongTensor, num_shift_bit: int, num_elem_each_pack: int) -> FV:
        num_shift_bit = positive_int(num_shift_bit, "num_shift_bit")
        per_pack = positive_int(num_elem_each_pack, "num_elem_each_pack")
        return self._pack_slots([v & (_I64 - 1) for v in int_list(vec)], num_shift_bit, per_pack)

    def unpack_vec(self, vec: Any, num_shift_bit: int, num_elem_each_pack: int, total_num: int) -> torch.LongTensor:
        num_shift_bit = positive_int(num_shift_bit, "num_shift_bit")
        per_pack = positive_int(num_elem_each_pack, "num_elem_each_pack")
        slots = _unpack_slots(FV.of(vec).values, num_shift_bit, per_pack, int(total_num))
        return torch.LongTensor([_wrap_i64(v) for v in slots])
