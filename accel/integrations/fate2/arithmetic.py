"""Batched ciphertext arithmetic on :class:`EV`: every exponent alignment, sum and product is
one (or a log-depth sequence of) whole-vector backend calls. The backend is an argument.

Ciphertext 1 (FATE's zero) is the identity of addition, exponent and all, as in fate_utils;
otherwise operands align down to the finer (smaller) exponent before they are combined.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np

from ...backends import Backend
from ...encoding import BASE, FixedPointCodec
from ...keys import PublicKey
from .. import _batch
from .vectors import EV, FV


def lower(be: Backend, pk: PublicKey, cts: list[int], exps: np.ndarray, target: np.ndarray) -> list[int]:
    """Ciphertexts re-expressed at the (smaller or equal) exponents ``target``, one batch."""
    return _batch.lower(be, pk, cts, exps, target)


def add(be: Backend, pk: PublicKey, a: EV, b: EV) -> EV:
    """Element-wise a + b (equal lengths)."""
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} vs {len(b)}")
    if not len(a):
        return EV([], [])
    cts, exps = list(a.cts), a.exps.copy()
    work = []
    for i, (x, y) in enumerate(zip(a.cts, b.cts)):
        if y == 1:
            continue
        if x == 1:
            cts[i], exps[i] = y, b.exps[i]
        else:
            work.append(i)
    if work:
        ea, eb = a.exps[work], b.exps[work]
        t = np.minimum(ea, eb)
        xa = lower(be, pk, [a.cts[i] for i in work], ea, t)
        xb = lower(be, pk, [b.cts[i] for i in work], eb, t)
        res = be.raw_add(pk, xa, xb)
        for j, i in enumerate(work):
            cts[i], exps[i] = res[j], t[j]
    return EV(cts, exps)


def negate(be: Backend, pk: PublicKey, a: EV) -> EV:
    idx = [i for i, c in enumerate(a.cts) if c != 1]
    cts = list(a.cts)
    if idx:
        res = be.raw_mul(pk, [a.cts[i] for i in idx], [-1] * len(idx))
        for i, c in zip(idx, res):
            cts[i] = c
    return EV(cts, a.exps.copy())


def multiply(be: Backend, pk: PublicKey, a: EV, b: FV) -> EV:
    """Element-wise a * b for encoded plaintexts b (one is broadcast): c^k with the signed
    mantissa k; exponents add. Encodings in the gap (max_int, n - max_int) are refused, as in
    fate_utils."""
    if len(b) == 1 and len(a) != 1:
        b = FV(b.values * len(a), np.full(len(a), int(b.exps[0]), dtype=np.int64))
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} ciphertexts, {len(b)} plaintexts")
    n, max_int = pk.n, pk.n // 2
    ks = []
    for i, v in enumerate(b.values):
        v %= n
        if v <= max_int:
            ks.append(v)
        elif v >= n - max_int:
            ks.append(v - n)
        else:  # pragma: no cover - unreachable with max_int = n // 2
            raise ValueError(f"plaintext[{i}] is outside the encodable range")
    if not ks:
        return EV([], [])
    return EV(be.raw_mul(pk, a.cts, ks), a.exps + b.exps)


def scatter_add(be: Backend, pk: PublicKey, a: EV, targets: np.ndarray, sources: np.ndarray, b: EV) -> None:
    """In place: a[targets[k]] += b[sources[k]] for every k, all targets at once: one alignment
    batch (each target's group to its finest live exponent) and one grouped sum
    (:meth:`~accel.Backend.raw_sum_groups`). The index work is numpy's, so the Python cost per
    pair is a list lookup, not a loop iteration with tuples and dicts."""
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    sources = np.asarray(sources, dtype=np.int64).reshape(-1)
    if targets.shape != sources.shape:
        raise ValueError(f"length mismatch: {targets.size} targets, {sources.size} sources")
    for name, idx, size in (("target", targets, len(a)), ("source", sources, len(b))):
        if idx.size and (idx.min() < 0 or idx.max() >= size):
            raise IndexError(f"{name} index out of range for a vector of {size}")
    a.reduce_in_place(pk)
    if not targets.size:
        return
    order = np.argsort(targets, kind="stable")
    b_cts = b.cts
    src = [b_cts[i] for i in sources[order].tolist()]
    live = np.fromiter((c != 1 for c in src), dtype=bool, count=len(src))  # 1 is zero: adds nothing
    if not live.any():
        return
    keep = np.flatnonzero(live)
    src = [src[i] for i in keep.tolist()]
    src_exps = b.exps[sources[order][keep]]
    tgt, starts, counts = np.unique(targets[order][keep], return_index=True, return_counts=True)
    tmin = np.minimum.reduceat(src_exps, starts)
    a_cts = a.cts
    a_live = np.fromiter((a_cts[t] != 1 for t in tgt.tolist()), dtype=bool, count=tgt.size)
    tmin = np.where(a_live, np.minimum(tmin, a.exps[tgt]), tmin)
    # one alignment batch: the targets' own values first, then the sources
    t_idx = np.flatnonzero(a_live)
    align_cts = [a_cts[t] for t in tgt[t_idx].tolist()] + src
    align_exps = np.concatenate([a.exps[tgt[t_idx]], src_exps])
    align_to = np.concatenate([tmin[t_idx], np.repeat(tmin, counts)])
    if (align_exps != align_to).any():
        align_cts = lower(be, pk, align_cts, align_exps, align_to)
    own, src = align_cts[:t_idx.size], align_cts[t_idx.size:]
    flat: list[int] = []
    it = iter(own)
    for k, (s0, n) in enumerate(zip(starts.tolist(), counts.tolist())):
        if a_live[k]:
            flat.append(next(it))
        flat.extend(src[s0:s0 + n])
    sums = be.raw_sum_groups(pk, flat, (counts + a_live).tolist())
    for t, c in zip(tgt.tolist(), sums):
        a_cts[t] = c
    a.exps[tgt] = tmin


def row_pairs(rows: Any, value_rows: Sequence[int] | None, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """FATE's histogram positions as (targets, sources): for row i and each position p in it,
    the ``stride`` slots p*stride + k take values from slot v*stride + k, v = ``value_rows[i]``
    (i itself when None)."""
    rows = [r.tolist() if hasattr(r, "tolist") else list(r) for r in rows]
    if value_rows is not None:
        rows = rows[:len(value_rows)]
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    flat = np.fromiter((int(p) for r in rows for p in r), dtype=np.int64, count=int(lengths.sum()))
    vals = np.arange(len(rows), dtype=np.int64) if value_rows is None else np.asarray(value_rows, dtype=np.int64)
    src_rows = np.repeat(vals[:len(rows)], lengths)
    k = np.arange(stride, dtype=np.int64)
    return (flat[:, None] * stride + k).reshape(-1), (src_rows[:, None] * stride + k).reshape(-1)


def prefix_sums(be: Backend, pk: PublicKey, a: EV, sequences: Sequence[Sequence[int]]) -> None:
    """In place: along each sequence of positions, a[s_j] becomes a[s_0] + ... + a[s_j]. All
    sequences at once: one alignment batch (each sequence to its finest non-zero exponent),
    then a log-depth Hillis-Steele scan of whole-batch additions."""
    a.reduce_in_place(pk)
    idx: list[int] = []
    tgt: list[int] = []
    for seq in sequences:
        live = [i for i in seq if a.cts[i] != 1]
        if live:
            t = int(a.exps[live].min())
            idx.extend(live)
            tgt.extend([t] * len(live))
    if idx:
        low = lower(be, pk, [a.cts[i] for i in idx], a.exps[idx], np.asarray(tgt, dtype=np.int64))
        a.scatter(idx, EV(low, tgt))
    # after the round with offset d, x[j] holds the sum of x[j-2d+1 .. j]
    d = 1
    while any(len(s) > d for s in sequences):
        tgt, src = [], []
        for seq in sequences:
            for j in range(len(seq) - 1, d - 1, -1):
                tgt.append(seq[j])
                src.append(seq[j - d])
        a.scatter(tgt, add(be, pk, a.gather(tgt), a.gather(src)))
        d *= 2


def horner_squeeze(be: Backend, pk: PublicKey, a: EV, pack_num: int, shift_bit: int) -> EV:
    """Each chunk of ``pack_num`` ciphertexts to one: E(sum_k x_k 2^(shift (L-1-k))), by
    Horner's rule over all chunks at once: acc = acc^(2^shift) * x_k for k = 1 .. L-1, two
    whole-batch backend calls per step and shift * (L-1) squarings per chunk (raising x_k to
    2^(shift (L-1-k)) directly would cost L/2 times more)."""
    groups = [range(s, min(s + pack_num, len(a))) for s in range(0, len(a), pack_num)]
    if groups and (1 << (shift_bit * (len(groups[0]) - 1))) >= pk.n:
        raise OverflowError("pack_num * shift_bit exceeds the key size")
    acc = [a.cts[g[0]] for g in groups]
    factor = 1 << shift_bit
    for k in range(1, len(groups[0]) if groups else 0):
        live = [gi for gi, g in enumerate(groups) if len(g) > k]
        raised = be.raw_mul(pk, [acc[gi] for gi in live], [factor] * len(live))
        summed = be.raw_add(pk, raised, [a.cts[groups[gi][k]] for gi in live])
        for gi, c in zip(live, summed):
            acc[gi] = c
    return EV(acc, np.zeros(len(groups), dtype=np.int64))


def matvec_columns(be: Backend, pk: PublicKey, cols: list[EV], B: np.ndarray, codec: FixedPointCodec) -> list[EV]:
    """For each encrypted column x (length K) and plain matrix B (K x J): x^T B, one
    ``raw_matvec`` per column. B is encoded per output column at that column's finest
    exponent (exact for floats), and x is aligned to its finest exponent, so every term of
    a sum shares one exponent."""
    K, J = B.shape
    if B.dtype.kind in "iu":
        Bi = [[int(v) for v in row] for row in B.tolist()]
        col_exp = np.zeros(J, dtype=np.int64)
    else:
        flat = codec.encode(B.astype(np.float64).reshape(-1))
        e = flat.exponents.reshape(K, J)
        col_exp = e.min(axis=0) if K else np.zeros(J, dtype=np.int64)
        Bi = [[0] * J for _ in range(K)]
        for k in range(K):
            for j in range(J):
                Bi[k][j] = flat.mantissas[k * J + j] * BASE ** int(e[k, j] - col_exp[j])
    out = []
    for x in cols:
        live = [i for i, c in enumerate(x.cts) if c != 1]
        if not live:
            out.append(EV([1] * J, np.zeros(J, dtype=np.int64)))
            continue
        t = int(x.exps[live].min())
        xs = lower(be, pk, [x.cts[i] for i in live], x.exps[live], np.full(len(live), t, dtype=np.int64))
        out.append(EV(be.raw_matvec(pk, xs, [Bi[i] for i in live]), t + col_exp))
    return out
