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

import gmpy2
from gmpy2 import mpz

_from = mpz.from_bytes


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


def encrypt_djn(ms_blob: bytes | None, rs_blob: bytes, n: int, hs: int, pw: int, cw: int,
                offset: int = 0) -> bytes:
    """c = (1 + m n) * hs^r mod n^2 (or hs^r alone without plaintexts); r secret: powmod_sec."""
    n, hs = mpz(n), mpz(hs)
    n2 = n * n
    ps = gmpy2.powmod_sec
    obf = [ps(hs, r, n2) for r in read(rs_blob, pw)]
    if ms_blob is None:
        return write(obf, cw)
    ms = read(ms_blob, pw)
    _check_plain(ms, n, offset)
    return write([(1 + m * n) * x % n2 for m, x in zip(ms, obf)], cw)


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


# -- homomorphic operations -------------------------------------------------------------------
def add(a_blob: bytes, b_blob: bytes, n2: int, cw: int, offset: int = 0) -> bytes:
    n2 = mpz(n2)
    a, b = read(a_blob, cw), read(b_blob, cw)
    _check_cipher(a, n2, offset, "ciphertext a")
    _check_cipher(b, n2, offset, "ciphertext b")
    return write([x * y % n2 for x, y in zip(a, b)], cw)


def add_plain(cs_blob: bytes, ms_blob: bytes, n: int, pw: int, cw: int, offset: int = 0) -> bytes:
    n = mpz(n)
    n2 = n * n
    cs, ms = read(cs_blob, cw), read(ms_blob, pw)
    _check_cipher(cs, n2, offset)
    _check_plain(ms, n, offset)
    return write([c * (1 + m * n) % n2 for c, m in zip(cs, ms)], cw)


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
    acc = mpz(1)
    for c in cs:
        acc = acc * c % n2
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
