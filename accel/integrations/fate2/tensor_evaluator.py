"""FATE's ``evaluator`` (its ``TensorEvaluator`` contract): static methods that normalise FATE's
arguments and run :mod:`.arithmetic` on this process's backend, one or a few whole-vector
backend calls each."""
from __future__ import annotations

import functools
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import torch

from ...keys import PublicKey
from . import arithmetic, interop
from .arguments import int_list, matrix_shape, positive_int, to_numpy
from .coder import Coder
from .runtime import current_backend
from .vectors import EV, FV


def _key(pk: Any) -> PublicKey:
    return interop.public_key_of(pk)


def _encrypt_operand(key: PublicKey, fv: FV) -> EV:
    """(1 + m n) mod n^2, unobfuscated: only for a plaintext operand combined at once with a
    ciphertext (the result carries the ciphertext's randomness), never a value that leaves."""
    if not len(fv):
        return EV([], [])
    return EV(current_backend().raw_encrypt(key, [v % key.n for v in fv.values], obfuscate=False), fv.exps)


def _with_plain_operand(op: str, scalar: bool) -> staticmethod:
    """``{op}_plain`` (a tensor b) or ``{op}_plain_scalar`` (a number b) from ``evaluator.{op}``:
    b encoded by the coder at ``output_dtype``, encrypted as an operand, then ``op``.
    ``evaluator.{op}`` is looked up per call (a profiler may wrap it)."""
    def encode(b: Any, coder: Coder, output_dtype: Any) -> FV:
        if scalar:
            return FV.of(coder.encode(b, dtype=output_dtype))
        return coder.encode_tensor(b, dtype=b.dtype if output_dtype is None else output_dtype)

    def method(a: Any, b: Any, pk: Any, coder: Coder, output_dtype: Any = None) -> EV:
        return getattr(evaluator, op)(a, _encrypt_operand(_key(pk), encode(b, coder, output_dtype)), pk)

    method.__name__ = f"{op}_plain_scalar" if scalar else f"{op}_plain"
    method.__qualname__ = f"evaluator.{method.__name__}"
    method.__doc__ = f"``{op}`` with a plaintext {'number' if scalar else 'tensor'} as the second operand."
    return staticmethod(method)


def _in_place(fn: Callable) -> staticmethod:
    """An in-place op on an :class:`EV`. A fate_utils target (e.g. from a process without the
    plugin) is converted, updated, and written back through its own ``__setstate__``, so the
    caller's object changes as FATE expects."""

    @functools.wraps(fn)
    def wrapper(pk, a, *args, **kwargs):
        if isinstance(a, EV):
            return fn(pk, a, *args, **kwargs)
        ours = EV.of(a, _key(pk))
        if args and args[0] is a:  # a += a[...]
            args = (ours,) + args[1:]
        fn(pk, ours, *args, **kwargs)
        a.__setstate__(interop.fixedpoint_state(ours.cts, ours.exps.tolist()))

    return staticmethod(wrapper)


def _add_range(pk: Any, a: EV, b: Any, sa: int, sb: int, size: Optional[int], sign: int) -> None:
    """In place: a[sa:sa+size] += sign * b[sb:sb+size] (size None: as much as both have)."""
    key = _key(pk)
    be = current_backend()
    same = b is a
    a.reduce_in_place(key)
    b = EV.of(b, key)
    if size is None:
        size = min(len(a) - sa, len(b) - sb)
    if sa + size > len(a) or sb + size > len(b):
        raise IndexError(f"range out of bounds: sa={sa}, sb={sb}, size={size}, sizes {len(a)}, {len(b)}")
    if size <= 0:
        return
    if same and sa != sb and abs(sa - sb) < size:
        # overlapping self-update: element by element, reading updated values, as fate_utils
        for k in range(size):
            one = a.slice(sb + k, 1)
            if sign < 0:
                one = arithmetic.negate(be, key, one)
            a.scatter([sa + k], arithmetic.add(be, key, a.slice(sa + k, 1), one))
        return
    src = b.slice(sb, size)
    if sign < 0:
        src = arithmetic.negate(be, key, src)
    r = arithmetic.add(be, key, a.slice(sa, size), src)
    a.cts[sa:sa + size] = r.cts
    a.exps[sa:sa + size] = r.exps


def _matmul_operand(b: torch.Tensor, output_dtype: Any) -> np.ndarray:
    return to_numpy(b.to(output_dtype) if output_dtype is not None else b, None)


class evaluator:  # noqa: N801 - the name FATE imports
    """FATE's ``TensorEvaluator`` static methods, each one or a few whole-vector backend calls."""

    # -- element-wise ------------------------------------------------------------------------
    @staticmethod
    def add(a: Any, b: Any, pk: Any) -> EV:
        key = _key(pk)
        a, b = EV.of(a, key), EV.of(b, key)
        return arithmetic.add(current_backend(), key, a, b.broadcast(len(a)))

    @staticmethod
    def sub(a: Any, b: Any, pk: Any) -> EV:
        key = _key(pk)
        be = current_backend()
        a, b = EV.of(a, key), EV.of(b, key)
        return arithmetic.add(be, key, a, arithmetic.negate(be, key, b.broadcast(len(a))))

    @staticmethod
    def rsub(a: Any, b: Any, pk: Any) -> EV:
        key = _key(pk)
        be = current_backend()
        a, b = EV.of(a, key), EV.of(b, key)
        return arithmetic.add(be, key, arithmetic.negate(be, key, a), b.broadcast(len(a)))

    add_plain = _with_plain_operand("add", scalar=False)
    add_plain_scalar = _with_plain_operand("add", scalar=True)
    sub_plain = _with_plain_operand("sub", scalar=False)
    sub_plain_scalar = _with_plain_operand("sub", scalar=True)
    rsub_plain = _with_plain_operand("rsub", scalar=False)
    rsub_plain_scalar = _with_plain_operand("rsub", scalar=True)

    @staticmethod
    def mul_plain(a: Any, b: torch.Tensor, pk: Any, coder: Coder, output_dtype=None) -> EV:
        if output_dtype is None:
            output_dtype = b.dtype
        key = _key(pk)
        return arithmetic.multiply(current_backend(), key, EV.of(a, key), coder.encode_tensor(b, dtype=output_dtype))

    @staticmethod
    def mul_plain_scalar(a: Any, b: Any, pk: Any, coder: Coder, output_dtype) -> EV:
        key = _key(pk)
        return arithmetic.multiply(current_backend(), key, EV.of(a, key), coder.encode(b, dtype=output_dtype))

    # -- matrix products ---------------------------------------------------------------------
    @staticmethod
    def matmul(a: Any, b: torch.Tensor, a_shape, b_shape, pk: Any, coder: Coder, output_dtype) -> EV:
        """Encrypted a (M x K, row-major) @ plain b (K x J) -> M x J, row-major."""
        key = _key(pk)
        a = EV.of(a, key)
        M, K = matrix_shape(a_shape, row=True)
        B = _matmul_operand(b, output_dtype).reshape(matrix_shape(b_shape, row=False))
        rows = [a.slice(i * K, K) for i in range(M)]
        res = arithmetic.matvec_columns(current_backend(), key, rows, B, coder.codec)
        return EV.concat(res)

    @staticmethod
    def rmatmul(a: Any, b: torch.Tensor, a_shape, b_shape, pk: Any, coder: Coder, output_dtype) -> EV:
        """Plain b (I x K) @ encrypted a (K x J) -> I x J, row-major: column j of the result is
        b @ a[:, j], i.e. a[:, j]^T b^T."""
        key = _key(pk)
        a = EV.of(a, key)
        K, J = matrix_shape(a_shape, row=False)
        I = matrix_shape(b_shape, row=True)[0]
        B = _matmul_operand(b, output_dtype).reshape(I, K)
        cols = [a.slice_indexes(range(j, K * J, J)) for j in range(J)]
        res = arithmetic.matvec_columns(current_backend(), key, cols, np.ascontiguousarray(B.T), coder.codec)
        out = EV.zeros(I * J)
        for j, col in enumerate(res):
            out.scatter(range(j, I * J, J), col)
        return out

    # -- construction, slicing, reordering ---------------------------------------------------
    @staticmethod
    def zeros(size, dtype=None) -> EV:
        return EV.zeros(size)

    @staticmethod
    def slice(a: Any, start: int, size: int) -> EV:
        return EV.of(a).slice(int(start), int(size))

    @staticmethod
    def intervals_slice(a: Any, intervals: List[Tuple[int, int]]) -> EV:
        a = EV.of(a)
        for s, e in intervals:
            if e > len(a):
                raise IndexError(f"end index out of range: start={s}, end={e}, data_size={len(a)}")
        return EV.concat([a.slice(s, e - s) for s, e in intervals])

    @staticmethod
    def cat(list: List[Any]) -> EV:  # noqa: A002 - FATE's parameter name
        return EV.concat([EV.of(x) for x in list])

    @_in_place
    def i_shuffle(pk: Any, a: EV, indices: Any) -> None:
        """In place: a = a[indices]."""
        idx = int_list(indices)
        if sorted(idx) != list(range(len(a))):
            raise ValueError("indices must be a permutation of the vector's positions")
        a.cts[:] = [a.cts[i] for i in idx]
        a.exps[:] = a.exps[idx]

    @staticmethod
    def shuffle(pk: Any, a: Any, indices: Any) -> EV:
        return EV.of(a, _key(pk)).slice_indexes(int_list(indices))

    # -- in-place updates (SecureBoost's histograms) -----------------------------------------
    @_in_place
    def i_add(pk: Any, a: EV, b: Any, sa=0, sb=0, size: Optional[int] = None) -> None:
        """In place: a[sa:sa+size] += b[sb:sb+size] (size None: as much as both have)."""
        _add_range(pk, a, b, sa, sb, size, 1)

    @_in_place
    def i_sub(pk: Any, a: EV, b: Any, sa=0, sb=0, size: Optional[int] = None) -> None:
        """In place: a[sa:sa+size] -= b[sb:sb+size]."""
        _add_range(pk, a, b, sa, sb, size, -1)

    @_in_place
    def i_update(pk: Any, a: EV, b: Any, positions, stride: int) -> None:
        """In place: for each row i of ``positions`` and each p in it,
        a[p*stride : p*stride+stride] += b[i*stride : i*stride+stride]."""
        key = _key(pk)
        targets, sources = arithmetic.row_pairs(positions, None, positive_int(stride, "stride"))
        arithmetic.scatter_add(current_backend(), key, a, targets, sources, EV.of(b, key))

    @_in_place
    def i_update_with_masks(pk: Any, a: EV, b: Any, positions, masks, stride: int) -> None:
        """As :meth:`i_update`, with row i of ``positions`` taking its values from the i-th
        position of b whose mask is true."""
        key = _key(pk)
        value_rows = [i for i, m in enumerate(int_list(masks)) if m]
        targets, sources = arithmetic.row_pairs(positions, value_rows, positive_int(stride, "stride"))
        arithmetic.scatter_add(current_backend(), key, a, targets, sources, EV.of(b, key))

    @_in_place
    def chunking_cumsum_with_step(pk: Any, a: EV, chunk_sizes: List[int], step: int) -> None:
        """In place: within each chunk, a[j] += a[j - step] running left to right (a prefix sum
        per residue class), computed as a log-depth scan of whole-batch additions."""
        sequences: list[list[int]] = []
        start = 0
        for size in chunk_sizes:
            for r in range(min(step, size)):
                seq = list(range(start + r, start + size, step))
                if len(seq) > 1:
                    sequences.append(seq)
            start += size
        if start > len(a):
            raise IndexError("chunk sizes exceed the vector")
        arithmetic.prefix_sums(current_backend(), _key(pk), a, sequences)

    @staticmethod
    def intervals_sum_with_step(pk: Any, a: Any, intervals: List[Tuple[int, int]], step: int) -> EV:
        """out[i*step + c] = sum of a[s + c], a[s + c + step], ... for interval i = (s, e)."""
        key = _key(pk)
        a = EV.of(a, key)
        out = EV.zeros(len(intervals) * step)
        pairs = [(i * step + (j - s) % step, j) for i, (s, e) in enumerate(intervals) for j in range(s, e)]
        targets, sources = (np.array([p[k] for p in pairs], dtype=np.int64) for k in (0, 1))
        arithmetic.scatter_add(current_backend(), key, out, targets, sources, a)
        return out

    @staticmethod
    def pack_squeeze(a: Any, pack_num: int, shift_bit: int, pk: Any) -> EV:
        """Each chunk of ``pack_num`` ciphertexts to one (Horner's rule, all chunks at once)."""
        key = _key(pk)
        return arithmetic.horner_squeeze(current_backend(), key, EV.of(a, key), pack_num, shift_bit)
