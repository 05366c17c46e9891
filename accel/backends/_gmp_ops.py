"""gmpy2 batch kernels on packed blobs: the CPU backend's arithmetic and the project's oracle.

Every function takes and returns fixed-width little-endian blobs (see :mod:`accel.packing`)
plus plain ints for key material, so a worker process receives a few large ``bytes`` objects
per task and no pickled objects. ``offset`` is the batch index of the chunk's first element,
so errors name the caller's index.

Preconditions are checked here, not assumed: plaintexts in [0, n), ciphertexts in [1, n^2).
Exponentiations with a secret exponent (decryption, CRT obfuscators) use ``powmod_sec``
(GMP's ``mpz_powm_sec``: no secret-dependent branches or memory indices).
"""
from __future__ import annotations

from functools import lru_cache
from numbers import Integral

import gmpy2
import numpy as np
from gmpy2 import mpz

from . import _native

_from = mpz.from_bytes
_MPZ = type(mpz(0))


def read(blob: bytes, width: int) -> list:
    mv = memoryview(blob)
    return [_from(mv[i : i + width], "little") for i in range(0, len(mv), width)]


def write(values, width: int) -> bytes:
    return b"".join(v.to_bytes(width, "little") for v in values)


def _check_plain(ms, n, offset: int, what: str = "plaintext") -> None:
    for i, m in enumerate(ms):
        if m >= n:
            raise ValueError(f"{what}[{offset + i}] is out of range: must be < n")


def _check_cipher(cs, n2, offset: int, what: str = "ciphertext") -> None:
    for i, c in enumerate(cs):
        if c == 0 or c >= n2:
            raise ValueError(f"{what}[{offset + i}] is out of range: must be in [1, n^2)")


# -- encryption -----------------------------------------------------------------------------
def encrypt_textbook(ms_blob: bytes, rs_blob: bytes, n: int, pw: int, cw: int, offset: int = 0) -> bytes:
    """c = (1 + m n) * r^n mod n^2 for each (m, r); r in [1, n) coprime to n."""
    n = mpz(n)
    n2 = n * n
    ms = read(ms_blob, pw)
    _check_plain(ms, n, offset)
    rs = read(rs_blob, pw)
    pm = gmpy2.powmod
    return write([(1 + m * n) * pm(r, n, n2) % n2 for m, r in zip(ms, rs)], cw)


@lru_cache(maxsize=16)
def _crt_constants(p: int, q: int):
    p, q = mpz(p), mpz(q)
    p2, q2 = p * p, q * q
    return p, q, p2, q2, gmpy2.invert(q2, p2)


def obfuscators_crt(zp_blob: bytes, zq_blob: bytes, p: int, q: int, pw: int) -> list:
    """Uniform n-th residues mod n^2 from the key holder's CRT: x = CRT(zp^p mod p^2, zq^q mod q^2).

    z^p mod p^2 depends only on z mod p and maps Z_p^* one-to-one onto the order-(p-1)
    subgroup of Z_{p^2}^*, so for uniform zp, zq the result is uniform over the n-th
    residues mod n^2, exactly like r^n for uniform r, at the cost of two |n|/2-bit
    exponentiations modulo |n|-bit numbers instead of one |n|-bit one modulo n^2.
    """
    p, q, p2, q2, q2_inv = _crt_constants(p, q)
    ps = gmpy2.powmod_sec
    out = []
    for zp, zq in zip(read(zp_blob, pw), read(zq_blob, pw)):
        xp = ps(zp, p, p2)
        xq = ps(zq, q, q2)
        out.append(xq + q2 * ((xp - xq) * q2_inv % p2))
    return out


def encrypt_crt(ms_blob: bytes, zp_blob: bytes, zq_blob: bytes, p: int, q: int, pw: int, cw: int,
                offset: int = 0) -> bytes:
    n = mpz(p) * mpz(q)
    n2 = n * n
    ms = read(ms_blob, pw)
    _check_plain(ms, n, offset)
    obf = obfuscators_crt(zp_blob, zq_blob, p, q, pw)
    return write([(1 + m * n) * x % n2 for m, x in zip(ms, obf)], cw)


def obfuscators_textbook(rs_blob: bytes, n: int, pw: int, cw: int, offset: int = 0) -> bytes:
    n = mpz(n)
    n2 = n * n
    pm = gmpy2.powmod
    return write([pm(r, n, n2) for r in read(rs_blob, pw)], cw)


def obfuscators_crt_blob(zp_blob: bytes, zq_blob: bytes, p: int, q: int, pw: int, cw: int,
                         offset: int = 0) -> bytes:
    return write(obfuscators_crt(zp_blob, zq_blob, p, q, pw), cw)


# -- DJN with fixed-base comb tables ----------------------------------------------------------
#: Most bytes one key's comb table may take; the window shrinks to stay below it.
DJN_TABLE_BYTES = 64 << 20


def djn_window(ciphertext_width: int, exponent_bits: int) -> int:
    """The widest comb window (8 down to 4 bits) whose table fits DJN_TABLE_BYTES. Wider windows
    mean fewer multiplications (one per window) but a longer column to read per window."""
    chunks = ciphertext_width // 4
    for w in (8, 7, 6, 5):
        if -(-exponent_bits // w) * (1 << w) * chunks * 8 <= DJN_TABLE_BYTES:
            return w
    return 4


def djn_table_build(n: int, hs: int, exponent_bits: int, window: int, cw: int) -> np.ndarray:
    """The comb table T[k][d] = hs^(d 2^(window k)) mod n^2 for k < ceil(exponent_bits / window),
    d < 2^window, as float64 copies of the entries' 32-bit chunks (little-endian), shape
    (windows, 2^window, cw / 4): the layout the constant-time selection multiplies by (BLAS)."""
    n2 = mpz(n) ** 2
    f = gmpy2.f_mod
    windows, size = -(-exponent_bits // window), 1 << window
    out = np.empty((windows, size, cw // 4), dtype=np.float64)
    base = f(mpz(hs), n2)
    for k in range(windows):
        row = [mpz(1)]
        for _ in range(size - 1):
            row.append(f(row[-1] * base, n2))
        out[k] = np.frombuffer(write(row, cw), dtype="<u4").reshape(size, -1)
        base = f(row[-1] * base, n2)  # hs^(2^(window (k + 1)))
    return out


@lru_cache(maxsize=4)
def djn_table(n: int, hs: int, exponent_bits: int, window: int, cw: int, path: str | None = None) -> np.ndarray:
    """The comb table, from ``path`` (memory-mapped: every process on the machine shares the
    pages) when that file holds it, else built here; cached per process either way."""
    shape = (-(-exponent_bits // window), 1 << window, cw // 4)
    if path is not None:
        try:
            table = np.load(path, mmap_mode="r")
            if table.shape == shape and table.dtype == np.float64:
                return table
        except (OSError, ValueError):
            pass  # missing or damaged: build it
    return djn_table_build(n, hs, exponent_bits, window, cw)


def _djn_obfuscators(rs_blob: bytes, n2, table: np.ndarray, pw: int, cw: int) -> list:
    """hs^r mod n^2 for each r: one multiplication per window, no squarings.

    r is secret, so no branch and no memory address depends on it: each window's digit selects
    its entry by multiplying a one-hot row by the whole column (every entry read, all but one
    weighted 0), a BLAS product whose time does not depend on the values (integers below 2^32,
    no subnormals). The multiplications then run on operands of fixed size (an entry shorter
    than n^2 by a whole limb has probability about 2^-60), in GMP's mpz_mul and mpz_fdiv_r.
    """
    windows, size, _ = table.shape
    window = size.bit_length() - 1
    r = np.frombuffer(rs_blob, dtype=np.uint8).reshape(-1, pw)
    count = r.shape[0]
    if count == 0:
        return []
    bits = np.unpackbits(r, axis=1, bitorder="little")
    span = windows * window
    if bits.shape[1] > span:
        if bits[:, span:].any():
            raise ValueError("a DJN exponent is longer than the key's exponent_bits")
        bits = bits[:, :span]
    elif bits.shape[1] < span:
        bits = np.pad(bits, ((0, 0), (0, span - bits.shape[1])))
    digits = bits.reshape(count, windows, window).astype(np.int64) @ (np.int64(1) << np.arange(window))
    entries = np.arange(size)
    fb, f = _from, gmpy2.f_mod
    acc: list = []
    for k in range(windows):
        onehot = (digits[:, k, None] == entries).astype(np.float64)
        picked = memoryview((onehot @ table[k]).astype("<u4").tobytes())
        if k == 0:
            acc = [fb(picked[i * cw : (i + 1) * cw], "little") for i in range(count)]
        else:
            acc = [f(a * fb(picked[i * cw : (i + 1) * cw], "little"), n2) for i, a in enumerate(acc)]
    return acc


def encrypt_djn(ms_blob: bytes | None, rs_blob: bytes, n: int, hs: int, exponent_bits: int, window: int,
                table_path: str | None, pw: int, cw: int, offset: int = 0) -> bytes:
    """c = (1 + m n) * hs^r mod n^2 (or hs^r alone without plaintexts), hs^r from the comb table."""
    n = mpz(n)
    n2 = n * n
    ms = None
    if ms_blob is not None:
        ms = read(ms_blob, pw)
        _check_plain(ms, n, offset)
    table = djn_table(int(n), int(hs), exponent_bits, window, cw, table_path)
    obf = _djn_obfuscators(rs_blob, n2, table, pw, cw)
    if ms is None:
        return write(obf, cw)
    f = gmpy2.f_mod
    return write([f((1 + m * n) * x, n2) for m, x in zip(ms, obf)], cw)


def encrypt_djn_powmod_sec(ms_blob: bytes | None, rs_blob: bytes, n: int, hs: int, pw: int, cw: int,
                           offset: int = 0) -> bytes:
    """The same ciphertexts by powmod_sec(hs, r, n^2): the comb path's oracle in tests."""
    n, hs = mpz(n), mpz(hs)
    n2 = n * n
    ps = gmpy2.powmod_sec
    obf = [ps(hs, r, n2) for r in read(rs_blob, pw)]
    if ms_blob is None:
        return write(obf, cw)
    ms = read(ms_blob, pw)
    _check_plain(ms, n, offset)
    return write([(1 + m * n) * x % n2 for m, x in zip(ms, obf)], cw)


def noop() -> None:
    """A worker's first task: answers once its imports are done."""


def encrypt_with(ms_blob: bytes, obf_blob: bytes | None, n: int, pw: int, cw: int, offset: int = 0) -> bytes:
    """c = (1 + m n) * x mod n^2 with precomputed obfuscators x (or none: x = 1, insecure)."""
    n = mpz(n)
    n2 = n * n
    ms = read(ms_blob, pw)
    _check_plain(ms, n, offset)
    if obf_blob is None:
        return write([(1 + m * n) % n2 for m in ms], cw)
    return write([(1 + m * n) * x % n2 for m, x in zip(ms, read(obf_blob, cw))], cw)


def rerandomize(cs_blob: bytes, rs_blob: bytes, n: int, pw: int, cw: int, offset: int = 0) -> bytes:
    n = mpz(n)
    n2 = n * n
    cs = read(cs_blob, cw)
    _check_cipher(cs, n2, offset)
    pm = gmpy2.powmod
    return write([c * pm(r, n, n2) % n2 for c, r in zip(cs, read(rs_blob, pw))], cw)


def rerandomize_with(cs_blob: bytes, obf_blob: bytes, n: int, cw: int, offset: int = 0) -> bytes:
    n2 = mpz(n) ** 2
    cs = read(cs_blob, cw)
    _check_cipher(cs, n2, offset)
    return write([c * x % n2 for c, x in zip(cs, read(obf_blob, cw))], cw)


# -- decryption -----------------------------------------------------------------------------
def decrypt_crt(cs_blob: bytes, p: int, q: int, hp: int, hq: int, q_inv: int, pw: int, cw: int,
                offset: int = 0) -> bytes:
    """m = CRT(L_p(c^(p-1) mod p^2) hp mod p, L_q(c^(q-1) mod q^2) hq mod q), Garner form."""
    p, q, hp, hq, q_inv = mpz(p), mpz(q), mpz(hp), mpz(hq), mpz(q_inv)
    p2, q2 = p * p, q * q
    n2 = p2 * q2
    cs = read(cs_blob, cw)
    _check_cipher(cs, n2, offset)
    ps = gmpy2.powmod_sec
    pm1, qm1 = p - 1, q - 1
    out = []
    for c in cs:
        mp = (ps(c % p2, pm1, p2) - 1) // p * hp % p
        mq = (ps(c % q2, qm1, q2) - 1) // q * hq % q
        out.append(mq + q * ((mp - mq) * q_inv % p))
    return write(out, pw)


def decrypt_textbook(cs_blob: bytes, n: int, lam: int, pw: int, cw: int, offset: int = 0) -> bytes:
    """m = L(c^lambda mod n^2) * mu mod n: the non-CRT path, kept as a benchmark baseline."""
    n, lam = mpz(n), mpz(lam)
    n2 = n * n
    mu = gmpy2.invert((gmpy2.powmod(n + 1, lam, n2) - 1) // n, n)
    cs = read(cs_blob, cw)
    _check_cipher(cs, n2, offset)
    ps = gmpy2.powmod_sec
    return write([(ps(c, lam, n2) - 1) // n * mu % n for c in cs], pw)


# -- cheap ops on lists of ints: no packing, for batches that stay in process ------------------
def mpz_list(values, what: str) -> list:
    """mpz copies of a list of ints, refused like the packed path refuses (bools, non-ints,
    negatives), so both paths fail alike."""
    out = []
    for i, v in enumerate(values):
        if type(v) is not int and (isinstance(v, bool) or not isinstance(v, (Integral, _MPZ))):
            raise TypeError(f"{what}[{i}] must be an int, got {type(v).__name__}")
        v = mpz(v)
        if v < 0:
            raise ValueError(f"{what}[{i}] is negative; numbers here are unsigned")
        out.append(v)
    return out


def add_ints(a: list, b: list, n2: int) -> list[int]:
    n2 = mpz(n2)
    a, b = mpz_list(a, "ciphertext a"), mpz_list(b, "ciphertext b")
    _check_cipher(a, n2, 0, "ciphertext a")
    _check_cipher(b, n2, 0, "ciphertext b")
    f = gmpy2.f_mod
    return [int(f(x * y, n2)) for x, y in zip(a, b)]


def add_plain_ints(cs: list, ms: list, n: int) -> list[int]:
    n = mpz(n)
    n2 = n * n
    cs, ms = mpz_list(cs, "ciphertext"), mpz_list(ms, "plaintext")
    _check_cipher(cs, n2, 0)
    _check_plain(ms, n, 0)
    f = gmpy2.f_mod
    return [int(f(c * (1 + m * n), n2)) for c, m in zip(cs, ms)]


def product_ints(cs: list, n2: int) -> int:
    n2 = mpz(n2)
    cs = mpz_list(cs, "ciphertext")
    _check_cipher(cs, n2, 0)
    f = gmpy2.f_mod
    acc = mpz(1)
    for c in cs:
        acc = f(acc * c, n2)
    return int(acc)


def product_groups_ints(cs: list, sizes: list[int], n2: int) -> list[int]:
    """The product of each consecutive group of ``sizes[g]`` ciphertexts mod n2 (1 if empty)."""
    n2 = mpz(n2)
    cs = mpz_list(cs, "ciphertext")
    _check_cipher(cs, n2, 0)
    f = gmpy2.f_mod
    out, at = [], 0
    for k in sizes:
        acc = cs[at] if k else mpz(1)
        for c in cs[at + 1:at + k]:
            acc = f(acc * c, n2)
        out.append(int(acc))
        at += k
    return out


# -- the native engine (gmp_batch.c): one C call per chunk ------------------------------------
# The backend picks these instead of their gmpy2 twins when the engine loaded; ``lib_path`` is
# the library the parent built, so a worker loads it without compiling anything.
def add_native(lib_path: str, a_blob: bytes, b_blob: bytes, n2: int, cw: int, offset: int = 0) -> bytes:
    return _native.mulmod(_native.load(lib_path), a_blob, b_blob, n2, cw, offset=offset)


def add_plain_native(lib_path: str, cs_blob: bytes, ms_blob: bytes, n: int, pw: int, cw: int,
                     offset: int = 0) -> bytes:
    return _native.add_plain(_native.load(lib_path), cs_blob, ms_blob, n, pw, cw, offset=offset)


def product_native(lib_path: str, cs_blob: bytes, n2: int, cw: int, offset: int = 0) -> bytes:
    return _native.product(_native.load(lib_path), cs_blob, n2, cw, offset=offset)


def product_groups_native(lib_path: str, cs_blob: bytes, sizes: list[int], n2: int, cw: int) -> bytes:
    return _native.product_groups(_native.load(lib_path), cs_blob, sizes, n2, cw)


def encrypt_djn_native(lib_path: str, ms_blob: bytes | None, rs_blob: bytes, n: int, hs: int, exponent_bits: int,
                       window: int, table_path: str | None, pw: int, cw: int, engine: str | None = None,
                       offset: int = 0) -> bytes:
    """encrypt_djn in C: constant-time comb selection and Montgomery multiplication (see gmp_batch.c;
    ``engine`` "ifma": djn_ifma.c), the engine the parent chose so that it matches the table file."""
    return _native.djn_encrypt(_native.load(lib_path), ms_blob, rs_blob, n, hs, exponent_bits, window, pw, cw,
                               table_path, offset=offset, engine=engine)


# -- homomorphic operations -------------------------------------------------------------------
def add(a_blob: bytes, b_blob: bytes, n2: int, cw: int, offset: int = 0) -> bytes:
    n2 = mpz(n2)
    a, b = read(a_blob, cw), read(b_blob, cw)
    _check_cipher(a, n2, offset, "ciphertext a")
    _check_cipher(b, n2, offset, "ciphertext b")
    f = gmpy2.f_mod
    return write([f(x * y, n2) for x, y in zip(a, b)], cw)


def add_plain(cs_blob: bytes, ms_blob: bytes, n: int, pw: int, cw: int, offset: int = 0) -> bytes:
    n = mpz(n)
    n2 = n * n
    cs, ms = read(cs_blob, cw), read(ms_blob, pw)
    _check_cipher(cs, n2, offset)
    _check_plain(ms, n, offset)
    f = gmpy2.f_mod
    return write([f(c * (1 + m * n), n2) for c, m in zip(cs, ms)], cw)


def _inverse(c, n2, index: int):
    try:
        return gmpy2.invert(c, n2)
    except ZeroDivisionError:
        raise ValueError(f"ciphertext[{index}] is not invertible mod n^2 (not a valid ciphertext)") from None


def mul(cs_blob: bytes, ks: list[int], n2: int, cw: int, offset: int = 0) -> bytes:
    """c^k mod n^2; a negative k uses the inverse of c, so the exponent stays |k| bits."""
    n2 = mpz(n2)
    cs = read(cs_blob, cw)
    _check_cipher(cs, n2, offset)
    pm = gmpy2.powmod
    out = []
    for i, (c, k) in enumerate(zip(cs, ks)):
        if k < 0:
            out.append(pm(_inverse(c, n2, offset + i), -k, n2))
        else:
            out.append(pm(c, k, n2))
    return write(out, cw)


def product(cs_blob: bytes, n2: int, cw: int, offset: int = 0) -> bytes:
    """The product of a chunk mod n^2 (homomorphic sum), as one packed ciphertext."""
    n2 = mpz(n2)
    cs = read(cs_blob, cw)
    _check_cipher(cs, n2, offset)
    f = gmpy2.f_mod
    acc = mpz(1)
    for c in cs:
        acc = f(acc * c, n2)
    return acc.to_bytes(cw, "little")


def _window_for(rows: int, cols: int, bits: int) -> int:
    # Straus: tables cost rows*(2^w - 2) mulmods once, shared by every column; each column
    # then costs about rows*bits/w multiplies plus bits squarings. Pick w minimising the sum.
    if bits == 0:
        return 1
    best_w, best = 1, None
    for w in range(1, 9):
        cost = rows * ((1 << w) - 2) + cols * rows * ((bits + w - 1) // w)
        if best is None or cost < best:
            best_w, best = w, cost
    return best_w


def matvec(cs_blob: bytes, rows_x: list[list[int]], n2: int, cw: int, offset: int = 0) -> bytes:
    """out_j = prod_i c_i^X[i][j] mod n^2 over this chunk of rows, by Straus multi-exponentiation.

    Squarings are shared by all rows of a column and the per-row window tables by all columns.
    Negative entries go into a second accumulator that is inverted once per column.
    """
    n2 = mpz(n2)
    cs = read(cs_blob, cw)
    _check_cipher(cs, n2, offset)
    cols = len(rows_x[0]) if rows_x else 0
    if not cs:
        return write([mpz(1)] * cols, cw)
    bits = max((abs(x).bit_length() for row in rows_x for x in row), default=0)
    w = _window_for(len(cs), cols, bits)
    mask = (1 << w) - 1
    tables = []
    for c in cs:
        t = [mpz(1), c]
        for _ in range(mask - 1):
            t.append(t[-1] * c % n2)
        tables.append(t)
    n_windows = (bits + w - 1) // w
    out = []
    for j in range(cols):
        col = [(i, row[j]) for i, row in enumerate(rows_x) if row[j]]
        pos = [(tables[i], x) for i, x in col if x > 0]
        neg = [(tables[i], -x) for i, x in col if x < 0]
        accs = []
        for terms in (pos, neg):
            acc = mpz(1)
            for win in range(n_windows - 1, -1, -1):
                if acc != 1:
                    for _ in range(w):
                        acc = acc * acc % n2
                shift = win * w
                for t, x in terms:
                    d = (x >> shift) & mask
                    if d:
                        acc = acc * t[d] % n2
            accs.append(acc)
        pos_acc, neg_acc = accs
        if neg_acc != 1:
            try:
                pos_acc = pos_acc * gmpy2.invert(neg_acc, n2) % n2
            except ZeroDivisionError:
                raise ValueError(
                    f"matvec column {j}: a ciphertext with a negative coefficient is not invertible mod n^2"
                ) from None
        out.append(pos_acc)
    return write(out, cw)


def powmod(bases: list[int], exps: list[int], mod: int) -> list[int]:
    m = mpz(mod)
    pm = gmpy2.powmod
    try:
        return [int(pm(b, e, m)) for b, e in zip(bases, exps)]
    except ValueError as e:  # negative exponent with a non-invertible base
        raise ValueError(f"powmod: {e}") from None
