"""Kernel launchers: one typed method per kernel of ``kernels/*.cu``, beside the name table.

:class:`Launcher` is the only code that launches a kernel. Each launcher method knows its
kernel's name (family from :data:`accel.gpu.names.KERNEL_FILES` plus the size class), builds the
argument list in the order of the kernel's signature (device arrays, ``None`` for a null pointer,
numpy scalars: what :meth:`KernelRuntime.launch <accel.gpu.runtime.KernelRuntime.launch>` takes),
allocates the output, and picks the thread count: one thread per number, or ``COOP_TPI`` threads
per number for a cooperative kernel (the runtime turns threads into blocks of
:data:`~accel.gpu.runtime.BLOCK`). :meth:`Launcher.run` adds the error word for the kernels that
report errors and raises what they report (:mod:`accel.gpu.errors`).

Launchers take device arrays and return device arrays; they know nothing of batches, pieces,
devices or the CPU fallback (that is :class:`accel.backends.gpu.GpuBackend`'s scheduling).
:data:`LAUNCHERS` names the launcher of every kernel family; a test checks that it covers the
name table exactly.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gmpy2
import numpy as np

from . import errors as E
from .names import COOP_TPI
from .limbs import limbs, mod_rec, montgomery_powers, signed_magnitudes
from .runtime import KernelRuntime

#: Tree fan-in of the product (homomorphic sum) kernel.
SUM_CHUNK = 32
#: bits per row of the cooperative DJN comb (kernels/djn_coop.cu): 2^8 entries per row, so hs^r
#: for a 1024-bit r is 127 multiplications and no squaring (the one-thread kernel's rows have 4)
DJN_COMB_BITS = 8
#: bits per row of the one-thread DJN kernel's table (HEA_WINDOW in kernels/montgomery.cuh)
DJN_WINDOW_BITS = 4
#: matvec: (row chunk, column) threads to aim for; fewer rows per chunk means more threads
#: but more squarings (a chunk's rows share them).
MATVEC_THREADS = 16384
#: batch inversion (kernels/inverse_coop.cu): elements per chunk of a prefix level, walked by one
#: group (1 multiplication each, 2 more on the way back). Each level above has 16x fewer
#: elements, so 100,000 take five levels (6,250, 391, 25, 2, 1 totals) and about 3.2
#: multiplications per element; a group's chain stays 16 long.
INVERSE_CHUNK = 16


@dataclass(frozen=True)
class DeviceKey:
    """A key record on one device with the sizes its kernels need.

    ``record`` is a ``pub_rec`` (public key) or ``crt_rec`` (private key: secret, wiped by its
    owner after the call) of size class ``lp``; ``plaintext_limbs``/``ciphertext_limbs`` are the
    key's own widths (narrower than the class when the key is), the strides of output arrays;
    ``nsquare`` is n^2, for the host-side Montgomery constants of the sum and DJN tables.
    """

    lp: int
    record: Any
    plaintext_limbs: int
    ciphertext_limbs: int
    nsquare: int


def launcher_of(*families: str) -> Callable[[Callable], Callable]:
    """Marks a :class:`Launcher` method as the launcher of these kernel families."""
    def mark(fn: Callable) -> Callable:
        fn.kernel_families = families
        return fn
    return mark


def _limb_count(values: Sequence[int]) -> tuple[int, int]:
    """(largest |value| in bits, limbs to hold it: at least one)."""
    bits = max((abs(v).bit_length() for v in values), default=0)
    return bits, max(1, -(-bits // 32))


class Launcher:
    """Launches the kernels on any runtime; counts launches in ``stats["launches"]``.

    Args:
        stats: the counter launches are added to (the backend's ``stats``; default: a new one).
    """

    def __init__(self, stats: Counter | None = None):
        self.stats = stats if stats is not None else Counter()

    # -- the one launch path -----------------------------------------------------------------
    def run(self, rt: KernelRuntime, kernel: str, threads: int, args: list[Any], *, offset: int = 0,
            names: dict[int, str] | None = None, error_word: bool = True) -> None:
        """Launch ``kernel`` over ``threads`` threads. With ``error_word`` (the kernel's last
        parameter is ``unsigned long long* err``) a fresh word is appended and what the kernel
        reports is raised, its index shifted by ``offset`` (the piece's place in the caller's
        batch) and its operand named by ``names``."""
        if not error_word:
            rt.launch(kernel, threads, args)
            self.stats["launches"] += 1
            return
        err = rt.upload(np.array([E.NO_ERROR], dtype=np.uint64))
        rt.launch(kernel, threads, [*args, err])
        self.stats["launches"] += 1
        E.raise_for(rt.download(err)[0], offset, names)

    # -- paillier_encrypt.cu, paillier_coop.cu -----------------------------------------------
    @launcher_of("paillier_encrypt", "paillier_encrypt_coop")
    def paillier_encrypt(self, rt: KernelRuntime, key: DeviceKey, ms: Any, rs: Any, *,
                         cooperative: bool = False, offset: int = 0) -> Any:
        """(1 + m n) r^n mod n^2; the cooperative kernel runs a group of COOP_TPI[2 lp] threads
        per number (mod n^2), with the same arguments."""
        count = ms.shape[0]
        out = rt.empty((count, key.ciphertext_limbs))
        kernel, threads = self._variant("paillier_encrypt", key.lp, count, cooperative)
        self.run(rt, kernel, threads,
                 [out, ms, rs, np.uint64(count), key.record, np.int32(ms.shape[1]), np.int32(out.shape[1])],
                 offset=offset)
        return out

    @launcher_of("paillier_obfuscate", "paillier_obfuscate_coop")
    def paillier_obfuscate(self, rt: KernelRuntime, key: DeviceKey, rs: Any, *, cooperative: bool = False,
                           offset: int = 0) -> Any:
        """r^n mod n^2 (obfuscators)."""
        count = rs.shape[0]
        out = rt.empty((count, key.ciphertext_limbs))
        kernel, threads = self._variant("paillier_obfuscate", key.lp, count, cooperative)
        self.run(rt, kernel, threads,
                 [out, rs, np.uint64(count), key.record, np.int32(rs.shape[1]), np.int32(out.shape[1])],
                 offset=offset)
        return out

    @launcher_of("paillier_rerandomize")
    def paillier_rerandomize(self, rt: KernelRuntime, key: DeviceKey, cs: Any, rs: Any, *, offset: int = 0) -> Any:
        """c r^n mod n^2."""
        out = rt.empty(cs.shape)
        self.run(rt, f"paillier_rerandomize_{key.lp}", cs.shape[0],
                 [out, cs, rs, np.uint64(cs.shape[0]), key.record, np.int32(rs.shape[1]), np.int32(cs.shape[1])],
                 offset=offset)
        return out

    @launcher_of("paillier_encrypt_with")
    def paillier_encrypt_with(self, rt: KernelRuntime, key: DeviceKey, ms: Any, obf: Any | None, *,
                              offset: int = 0) -> Any:
        """(1 + m n) obf mod n^2 with given obfuscators, or (1 + m n) alone when ``obf`` is None."""
        count = ms.shape[0]
        out = rt.empty((count, key.ciphertext_limbs))
        self.run(rt, f"paillier_encrypt_with_{key.lp}", count,
                 [out, ms, obf, np.int32(obf is not None), np.uint64(count), key.record,
                  np.int32(ms.shape[1]), np.int32(out.shape[1])],
                 offset=offset, names={E.CIPHERTEXT_RANGE: "obfuscator"})
        return out

    @launcher_of("paillier_crt_obfuscate")
    def paillier_crt_obfuscate(self, rt: KernelRuntime, key: DeviceKey, zp: Any, zq: Any, *,
                               offset: int = 0) -> Any:
        """r^n mod n^2 by CRT from (zp, zq); ``key`` is a private (crt_rec) record."""
        count = zp.shape[0]
        out = rt.empty((count, key.ciphertext_limbs))
        self.run(rt, f"paillier_crt_obfuscate_{key.lp}", count,
                 [out, zp, zq, np.uint64(count), key.record, np.int32(zp.shape[1]), np.int32(out.shape[1])],
                 offset=offset)
        return out

    @launcher_of("paillier_crt_encrypt")
    def paillier_crt_encrypt(self, rt: KernelRuntime, key: DeviceKey, ms: Any, zp: Any, zq: Any, *,
                             offset: int = 0) -> Any:
        """(1 + m n) times the CRT obfuscator of (zp, zq); ``key`` is a private record."""
        count = zp.shape[0]
        out = rt.empty((count, key.ciphertext_limbs))
        self.run(rt, f"paillier_crt_encrypt_{key.lp}", count,
                 [out, ms, zp, zq, np.uint64(count), key.record, np.int32(ms.shape[1]), np.int32(out.shape[1])],
                 offset=offset)
        return out

    # -- paillier_decrypt.cu -----------------------------------------------------------------
    @launcher_of("paillier_decrypt", "paillier_decrypt_coop")
    def paillier_decrypt(self, rt: KernelRuntime, key: DeviceKey, cs: Any, *, cooperative: bool = False,
                         offset: int = 0) -> Any:
        """m by CRT; ``key`` is a private record. The cooperative kernel works mod p^2 and q^2,
        so a group of COOP_TPI[lp] threads per number."""
        out = rt.empty((cs.shape[0], key.plaintext_limbs))
        if cooperative:
            kernel, threads = f"paillier_decrypt_coop_{key.lp}", cs.shape[0] * COOP_TPI[key.lp]
        else:
            kernel, threads = f"paillier_decrypt_{key.lp}", cs.shape[0]
        self.run(rt, kernel, threads,
                 [out, cs, np.uint64(cs.shape[0]), key.record, np.int32(out.shape[1]), np.int32(cs.shape[1])],
                 offset=offset)
        return out

    # -- homomorphic.cu ----------------------------------------------------------------------
    @launcher_of("he_add", "he_add_coop")
    def he_add(self, rt: KernelRuntime, key: DeviceKey, a: Any, b: Any, *, cooperative: bool = False,
               offset: int = 0, names: dict[int, str] | None = None) -> Any:
        """a b mod n^2 (also rerandomisation with given obfuscators: ``names`` says which)."""
        out = rt.empty(a.shape)
        kernel, threads = self._variant("he_add", key.lp, a.shape[0], cooperative)
        self.run(rt, kernel, threads,
                 [out, a, b, np.uint64(a.shape[0]), key.record, np.int32(a.shape[1])], offset=offset, names=names)
        return out

    @launcher_of("he_add_plain")
    def he_add_plain(self, rt: KernelRuntime, key: DeviceKey, cs: Any, ms: Any, *, offset: int = 0) -> Any:
        """c (1 + m n) mod n^2."""
        out = rt.empty(cs.shape)
        self.run(rt, f"he_add_plain_{key.lp}", cs.shape[0],
                 [out, cs, ms, np.uint64(cs.shape[0]), key.record, np.int32(ms.shape[1]), np.int32(cs.shape[1])],
                 offset=offset)
        return out

    @launcher_of("he_mul_scalar", "he_mul_scalar_coop")
    def he_mul_scalar(self, rt: KernelRuntime, key: DeviceKey, cs: Any, ks: Sequence[int], *,
                      cooperative: bool = False, offset: int = 0) -> Any:
        """c^k mod n^2 for signed ints k (a negative k inverts c). The cooperative kernel takes
        the magnitudes; the results of negative scalars are then inverted by one
        :meth:`inverse` (the one-thread kernel inverts each such c on its own)."""
        _, kl = _limb_count(ks)
        mags, neg = signed_magnitudes(list(ks), kl)
        out = rt.empty(cs.shape)
        if cooperative:
            kernel, threads = self._variant("he_mul_scalar", key.lp, cs.shape[0], True)
            self.run(rt, kernel, threads, [out, cs, rt.upload(mags), np.uint64(cs.shape[0]), key.record,
                                           np.int32(cs.shape[1]), np.int32(kl)], offset=offset)
            if neg.any():  # c^-|k| = (c^|k|)^-1: those results inverted together (Montgomery's trick)
                self.inverse(rt, key, out, np.flatnonzero(neg), offset=offset)
            return out
        self.run(rt, f"he_mul_scalar_{key.lp}", cs.shape[0],
                 [out, cs, rt.upload(mags), rt.upload(neg), np.uint64(cs.shape[0]), key.record,
                  np.int32(cs.shape[1]), np.int32(kl)], offset=offset)
        return out

    # -- reduce.cu ---------------------------------------------------------------------------
    @launcher_of("he_product", "he_product_coop")
    def he_product(self, rt: KernelRuntime, key: DeviceKey, cs: Any, r_powers: Any, *, check: bool,
                   cooperative: bool = False, offset: int = 0) -> Any:
        """One tree level: the product of each group of SUM_CHUNK rows; ``check`` range-checks
        the inputs (the first level only: later levels read the kernel's own output)."""
        count = cs.shape[0]
        groups = -(-count // SUM_CHUNK)
        out = rt.empty((groups, cs.shape[1]))
        kernel, threads = self._variant("he_product", key.lp, groups, cooperative)
        self.run(rt, kernel, threads,
                 [out, cs, np.uint64(count), np.uint64(SUM_CHUNK), key.record, r_powers,
                  np.int32(cs.shape[1]), np.int32(int(check))], offset=offset)
        return out

    def product(self, rt: KernelRuntime, key: DeviceKey, cs: Any, *, cooperative: bool = False,
                offset: int = 0) -> Any:
        """prod c mod n^2 as a (1, width) array: :meth:`he_product` level after level (about one
        multiplication per input: the device-resident chain)."""
        r_powers = rt.upload(montgomery_powers(key.nsquare, 2 * key.lp, SUM_CHUNK))
        cur, check = cs, True
        while True:
            cur = self.he_product(rt, key, cur, r_powers, check=check, cooperative=cooperative, offset=offset)
            check = False
            if cur.shape[0] == 1:
                return cur

    # -- inverse_coop.cu ---------------------------------------------------------------------
    @launcher_of("he_inverse_prefix_coop")
    def he_inverse_prefix(self, rt: KernelRuntime, key: DeviceKey, xs: Any, idx: Any | None, count: int, *,
                          check: bool, offset: int = 0) -> tuple[Any, Any]:
        """One prefix level of :meth:`inverse`: (prefix products, chunk totals) of ``count``
        elements, INVERSE_CHUNK per group (element i: row idx[i] of xs, or row i without idx);
        ``check`` range-checks them (a first level)."""
        groups, cw = -(-count // INVERSE_CHUNK), xs.shape[1]
        prefix, totals = rt.empty((count, cw)), rt.empty((groups, cw))
        self.run(rt, f"he_inverse_prefix_coop_{key.lp}", groups * COOP_TPI[2 * key.lp],
                 [prefix, totals, xs, idx, np.uint64(count), np.uint64(INVERSE_CHUNK), key.record, np.int32(cw),
                  np.int32(int(check))], offset=offset)
        return prefix, totals

    @launcher_of("he_inverse_back_coop")
    def he_inverse_back(self, rt: KernelRuntime, key: DeviceKey, xs: Any, idx: Any | None, count: int,
                        prefix: Any, inv_totals: Any, factors: Any | None = None) -> None:
        """One back pass of :meth:`inverse`, in place: the elements become their inverses (times
        ``factors``) from their level's prefix products and inverted totals. No error word."""
        self.run(rt, f"he_inverse_back_coop_{key.lp}", -(-count // INVERSE_CHUNK) * COOP_TPI[2 * key.lp],
                 [xs, idx, prefix, inv_totals, factors, np.uint64(count), np.uint64(INVERSE_CHUNK), key.record,
                  np.int32(xs.shape[1])], error_word=False)

    def inverse(self, rt: KernelRuntime, key: DeviceKey, xs: Any, rows: Sequence[int] | None = None, *,
                factors: Any | None = None, check: bool = False, offset: int = 0,
                names: dict[int, str] | None = None) -> Any:
        """Invert rows of ``xs`` mod n^2 in place by Montgomery's trick and return ``xs``: row r
        becomes xs[r]^-1, or factors[r] xs[r]^-1 with ``factors`` (same shape), for every r in
        ``rows`` (ascending; all rows when None). :meth:`he_inverse_prefix` level after level
        until one total is left, that one number inverted here (gmpy2: one download and upload
        of one number), then :meth:`he_inverse_back` from the top level down
        (kernels/inverse_coop.cu). ``check`` range-checks the rows ([0, n^2)); our own kernels'
        outputs need not be. A row that is not a unit (0 or a multiple of p or q) raises
        NOT_INVERTIBLE at the lowest such row, shifted by ``offset`` and named by ``names`` (as
        :meth:`run`)."""
        count = xs.shape[0] if rows is None else len(rows)
        if count == 0:
            return xs
        idx = None if rows is None else rt.upload(np.asarray(rows, dtype=np.uint64))
        levels = []  # (elements, their row index or None, count, prefix products)
        cur, cur_idx, n = xs, idx, count
        while True:
            prefix, totals = self.he_inverse_prefix(rt, key, cur, cur_idx, n, check=check and not levels,
                                                    offset=offset)
            levels.append((cur, cur_idx, n, prefix))
            if totals.shape[0] == 1:
                break
            cur, cur_idx, n = totals, None, totals.shape[0]
        top = int.from_bytes(rt.download(totals).tobytes(), "little")
        try:
            inv = gmpy2.invert(top, key.nsquare)
        except ZeroDivisionError:
            self._raise_first_non_unit(rt, key, xs, rows, offset, names)
        inv_totals = rt.upload(limbs(int(inv), xs.shape[1]))
        for level in range(len(levels) - 1, -1, -1):
            cur, cur_idx, n, prefix = levels[level]
            self.he_inverse_back(rt, key, cur, cur_idx, n, prefix, inv_totals, factors if level == 0 else None)
            inv_totals = cur  # the totals of the level below, now inverted
        return xs

    @staticmethod
    def _raise_first_non_unit(rt: KernelRuntime, key: DeviceKey, xs: Any, rows: Sequence[int] | None,
                              offset: int, names: dict[int, str] | None) -> None:
        """The error path of :meth:`inverse` (malformed input only): name the lowest row that
        shares a factor with n^2."""
        host = rt.download(xs)
        for r in range(host.shape[0]) if rows is None else rows:
            if gmpy2.gcd(int.from_bytes(host[r].tobytes(), "little"), key.nsquare) != 1:
                E.raise_for((int(r) << 8) | E.NOT_INVERTIBLE, offset, names)
        raise RuntimeError("batch inversion: the product of the rows is not a unit mod n^2, yet every row is")

    # -- resident_coop.cu: device-resident ciphertexts in Montgomery form (c R mod n^2) ---------
    # Every one a cooperative kernel (COOP_TPI[2 lp] threads per number), whatever the backend's
    # ``cooperative`` says: the form itself is the opt-in.
    def _resident(self, rt: KernelRuntime, key: DeviceKey, family: str, count: int, args: list[Any], *,
                  offset: int = 0, names: dict[int, str] | None = None) -> None:
        self.run(rt, f"{family}_coop_{key.lp}", count * COOP_TPI[2 * key.lp], args, offset=offset, names=names)

    @launcher_of("he_to_mont_coop")
    def he_to_mont(self, rt: KernelRuntime, key: DeviceKey, cs: Any, *, offset: int = 0) -> Any:
        """c R mod n^2 (one multiplication by R^2): into Montgomery form, once per chain."""
        out = rt.empty(cs.shape)
        self._resident(rt, key, "he_to_mont", cs.shape[0],
                       [out, cs, np.uint64(cs.shape[0]), key.record, np.int32(cs.shape[1])], offset=offset)
        return out

    @launcher_of("he_from_mont_coop")
    def he_from_mont(self, rt: KernelRuntime, key: DeviceKey, xs: Any, *, offset: int = 0) -> Any:
        """x R^-1 mod n^2 (one REDC): out of Montgomery form, once per chain."""
        out = rt.empty(xs.shape)
        self._resident(rt, key, "he_from_mont", xs.shape[0],
                       [out, xs, np.uint64(xs.shape[0]), key.record, np.int32(xs.shape[1])], offset=offset)
        return out

    @launcher_of("he_add_mont_coop")
    def he_add_mont(self, rt: KernelRuntime, key: DeviceKey, a: Any, b: Any, *, offset: int = 0,
                    names: dict[int, str] | None = None) -> Any:
        """aR bR R^-1 = abR mod n^2: the add of two Montgomery-form arrays, one multiplication."""
        out = rt.empty(a.shape)
        self._resident(rt, key, "he_add_mont", a.shape[0],
                       [out, a, b, np.uint64(a.shape[0]), key.record, np.int32(a.shape[1])], offset=offset,
                       names=names)
        return out

    @launcher_of("he_product_mont_coop")
    def he_product_mont(self, rt: KernelRuntime, key: DeviceKey, xs: Any, *, check: bool, offset: int = 0) -> Any:
        """One tree level in Montgomery form: the product of each group of SUM_CHUNK rows, one
        multiplication per row after a group's first (no correction: the form is kept)."""
        count = xs.shape[0]
        groups = -(-count // SUM_CHUNK)
        out = rt.empty((groups, xs.shape[1]))
        self._resident(rt, key, "he_product_mont", groups,
                       [out, xs, np.uint64(count), np.uint64(SUM_CHUNK), key.record, np.int32(xs.shape[1]),
                        np.int32(int(check))], offset=offset)
        return out

    def product_mont(self, rt: KernelRuntime, key: DeviceKey, xs: Any, *, offset: int = 0) -> Any:
        """prod x R^-(count-1) = (prod c) R mod n^2 as a (1, width) Montgomery-form array."""
        cur, check = xs, True
        while True:
            cur = self.he_product_mont(rt, key, cur, check=check, offset=offset)
            check = False
            if cur.shape[0] == 1:
                return cur

    @launcher_of("he_mul_scalar_mont_coop")
    def he_mul_scalar_mont(self, rt: KernelRuntime, key: DeviceKey, xs: Any, ks: Sequence[int], *,
                           offset: int = 0) -> Any:
        """(cR)^k R^(1-k) = c^k R mod n^2 for NON-NEGATIVE ints k (sliding windows on cR as it is)."""
        _, kl = _limb_count(ks)
        mags, neg = signed_magnitudes(list(ks), kl)
        if neg.any():
            raise ValueError("he_mul_scalar_mont takes non-negative scalars")
        out = rt.empty(xs.shape)
        self._resident(rt, key, "he_mul_scalar_mont", xs.shape[0],
                       [out, xs, rt.upload(mags), np.uint64(xs.shape[0]), key.record, np.int32(xs.shape[1]),
                        np.int32(kl)], offset=offset)
        return out

    @launcher_of("he_add_plain_mont_coop")
    def he_add_plain_mont(self, rt: KernelRuntime, key: DeviceKey, xs: Any, ms: Any, *, offset: int = 0) -> Any:
        """c (1 + m n) R mod n^2 from cR (two multiplications, the form kept)."""
        out = rt.empty(xs.shape)
        self._resident(rt, key, "he_add_plain_mont", xs.shape[0],
                       [out, xs, ms, np.uint64(xs.shape[0]), key.record, np.int32(ms.shape[1]),
                        np.int32(xs.shape[1])], offset=offset)
        return out

    @launcher_of("he_rerandomize_mont_coop")
    def he_rerandomize_mont(self, rt: KernelRuntime, key: DeviceKey, xs: Any, rs: Any, *, offset: int = 0) -> Any:
        """c r^n R mod n^2 from cR and r in [1, n) (r^n by sliding windows, in Montgomery form)."""
        out = rt.empty(xs.shape)
        self._resident(rt, key, "he_rerandomize_mont", xs.shape[0],
                       [out, xs, rs, np.uint64(xs.shape[0]), key.record, np.int32(rs.shape[1]),
                        np.int32(xs.shape[1])], offset=offset)
        return out

    # -- matvec.cu ---------------------------------------------------------------------------
    @launcher_of("matvec_tables")
    def matvec_tables(self, rt: KernelRuntime, key: DeviceKey, cs: Any, *, offset: int = 0) -> Any:
        """Per row, the 16-entry window table of its ciphertext: a (rows, 16, 2 lp) array."""
        rows = cs.shape[0]
        tables = rt.empty((rows, 16, 2 * key.lp))
        self.run(rt, f"matvec_tables_{key.lp}", rows,
                 [tables, cs, np.uint64(rows), key.record, np.int32(cs.shape[1])], offset=offset)
        return tables

    @launcher_of("matvec_partial")
    def matvec_partial(self, rt: KernelRuntime, key: DeviceKey, tables: Any, mags: Any, neg: Any, *,
                       cols: int, chunk_rows: int, xl: int, bits: int, has_neg: bool) -> tuple[Any, Any | None]:
        """Per (row chunk, column): the products over positive and, with ``has_neg``, negative
        entries (Montgomery form). No error word: its inputs come from the other two kernels."""
        rows = tables.shape[0]
        chunks = -(-rows // chunk_rows)
        w = 2 * key.lp
        pos = rt.empty((chunks * cols, w))
        negs = rt.empty((chunks * cols, w)) if has_neg else None
        self.run(rt, f"matvec_partial_{key.lp}", chunks * cols,
                 [pos, negs, tables, mags, neg, np.uint64(rows), np.uint64(cols), np.uint64(chunk_rows),
                  np.int32(xl), np.int32(bits), np.int32(int(has_neg)), key.record], error_word=False)
        return pos, negs

    @launcher_of("matvec_finish")
    def matvec_finish(self, rt: KernelRuntime, key: DeviceKey, pos: Any, negs: Any | None, *, chunks: int,
                      cols: int, out_limbs: int) -> Any:
        """Per column: the chunks' products combined, the negative part inverted once."""
        out = rt.empty((cols, out_limbs))
        self.run(rt, f"matvec_finish_{key.lp}", cols,
                 [out, pos, negs, np.uint64(chunks), np.uint64(cols), np.int32(int(negs is not None)), key.record,
                  np.int32(out_limbs)], names={E.NOT_INVERTIBLE: "matvec column"})
        return out

    def matvec(self, rt: KernelRuntime, key: DeviceKey, cs: Any, rows_x: list[list[int]], *,
               cooperative: bool = False, offset: int = 0) -> Any:
        """out_j = prod_i c_i^X[i][j] mod n^2 as a (cols, width) array: tables, partial
        products over row chunks, then one finish per column. With ``cooperative`` and a
        negative entry, the finish runs for the positive and the negative products apart and
        every column's negative product is inverted by one :meth:`inverse` (times the positive
        one), instead of one inversion per column in matvec_finish."""
        rows, cols = cs.shape[0], len(rows_x[0])
        flat = [x for row in rows_x for x in row]
        bits, xl = _limb_count(flat)
        mags, neg = signed_magnitudes(flat, xl)
        has_neg = bool(neg.any())
        tables = self.matvec_tables(rt, key, cs, offset=offset)
        # Row chunks: enough (chunk, column) threads to fill the device, few enough that the
        # squarings (shared by a chunk's rows) stay a small part of the work.
        chunk_rows = max(1, min(rows, (rows * cols) // MATVEC_THREADS or 1))
        pos, negs = self.matvec_partial(rt, key, tables, rt.upload(mags), rt.upload(neg), cols=cols,
                                        chunk_rows=chunk_rows, xl=xl, bits=bits, has_neg=has_neg)
        chunks = -(-rows // chunk_rows)
        if not (cooperative and has_neg):
            return self.matvec_finish(rt, key, pos, negs, chunks=chunks, cols=cols, out_limbs=cs.shape[1])
        out = self.matvec_finish(rt, key, negs, None, chunks=chunks, cols=cols, out_limbs=cs.shape[1])
        pos_out = self.matvec_finish(rt, key, pos, None, chunks=chunks, cols=cols, out_limbs=cs.shape[1])
        return self.inverse(rt, key, out, factors=pos_out, names={E.NOT_INVERTIBLE: "matvec column"})

    # -- djn.cu ------------------------------------------------------------------------------
    @launcher_of("djn_table", "djn_table_coop")
    def djn_table(self, rt: KernelRuntime, key: DeviceKey, hs: int, exponent_bits: int, *,
                  cooperative: bool = False) -> Any:
        """The fixed-base table of hs in Montgomery form, one row per window of the exponent:
        (rows, 2^bits, 2 lp) with DJN_WINDOW_BITS-bit rows (one-thread kernel, a thread per row)
        or DJN_COMB_BITS-bit rows (cooperative, a group of COOP_TPI[2 lp] threads per row). No
        error word: hs was checked when the DJN key was made."""
        w = 2 * key.lp
        bits = DJN_COMB_BITS if cooperative else DJN_WINDOW_BITS
        rows = -(-exponent_bits // bits)
        hs_m = rt.upload(limbs((hs << (32 * w)) % key.nsquare, w))  # Montgomery form
        table = rt.empty((rows, 1 << bits, w))
        if cooperative:
            self.run(rt, f"djn_table_coop_{key.lp}", rows * COOP_TPI[w],
                     [table, hs_m, np.int32(rows), np.int32(bits), key.record], error_word=False)
        else:
            self.run(rt, f"djn_table_{key.lp}", rows, [table, hs_m, np.int32(rows), key.record], error_word=False)
        return table

    @launcher_of("djn_encrypt", "djn_encrypt_coop")
    def djn_encrypt(self, rt: KernelRuntime, key: DeviceKey, table: Any, ms: Any | None, rs: Any, *,
                    cooperative: bool = False, offset: int = 0) -> Any:
        """(1 + m n) hs^r mod n^2 from a :meth:`djn_table` made with the same ``cooperative``,
        or hs^r alone when ``ms`` is None."""
        count = rs.shape[0]
        out = rt.empty((count, key.ciphertext_limbs))
        ps = ms.shape[1] if ms is not None else rs.shape[1]
        head = [out, ms, np.int32(ms is not None), rs, np.uint64(count), table, np.int32(table.shape[0])]
        tail = [key.record, np.int32(ps), np.int32(rs.shape[1]), np.int32(out.shape[1])]
        if cooperative:  # the comb width is the table's: 2^bits entries per row
            bits = int(table.shape[1]).bit_length() - 1
            self.run(rt, f"djn_encrypt_coop_{key.lp}", count * COOP_TPI[2 * key.lp], [*head, np.int32(bits), *tail],
                     offset=offset)
        else:
            self.run(rt, f"djn_encrypt_{key.lp}", count, [*head, *tail], offset=offset)
        return out

    # -- modexp.cu, modexp_coop.cu -----------------------------------------------------------
    @launcher_of("powmod", "powmod_coop")
    def powmod(self, rt: KernelRuntime, lc: int, bases: Sequence[int], exps: Sequence[int], mod: int, *,
               cooperative: bool = False) -> Any:
        """b^e mod m for bases in [0, m) and signed exponents, modulus class ``lc``, as an
        (count, lc) array. The cooperative kernel (COOP_TPI[lc] threads per number) takes
        non-negative exponents; a negative one needs the one-thread kernel's per-element
        inversion, so such a batch runs there."""
        count = len(bases)
        _, el = _limb_count(exps)
        mags, neg = signed_magnitudes(list(exps), el)
        base_limbs = rt.upload(np.stack([limbs(b, lc) for b in bases]))
        out = rt.empty((count, lc))
        tail = [np.uint64(count), rt.upload(mod_rec(mod, lc)), np.int32(lc), np.int32(el), np.int32(0)]
        if cooperative and not neg.any():
            self.run(rt, f"powmod_coop_{lc}", count * COOP_TPI[lc], [out, base_limbs, rt.upload(mags), *tail])
        else:
            self.run(rt, f"powmod_{lc}", count, [out, base_limbs, rt.upload(mags), rt.upload(neg), *tail],
                     names={E.NOT_INVERTIBLE: "powmod: base"})
        return out

    @staticmethod
    def _variant(family: str, lp: int, count: int, cooperative: bool) -> tuple[str, int]:
        """(kernel, threads) of a Paillier family with a cooperative twin (work mod n^2, so
        a group of COOP_TPI[2 lp] threads per number)."""
        if cooperative:
            return f"{family}_coop_{lp}", count * COOP_TPI[2 * lp]
        return f"{family}_{lp}", count


#: kernel family -> name of the :class:`Launcher` method that launches it
LAUNCHERS: dict[str, str] = {
    family: name
    for name, fn in vars(Launcher).items()
    for family in getattr(fn, "kernel_families", ())
}

__all__ = ["DJN_COMB_BITS", "DJN_WINDOW_BITS", "INVERSE_CHUNK", "LAUNCHERS", "SUM_CHUNK", "DeviceKey", "Launcher",
           "launcher_of"]
