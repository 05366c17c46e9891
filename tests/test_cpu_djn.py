"""DJN encryption on the CPU by fixed-base comb tables, against powmod_sec(hs, r, n^2) as oracle."""
from __future__ import annotations

import os
import random
import secrets

import gmpy2
import numpy as np
import pytest

from accel import CpuBackend
from accel.backends import _gmp_ops as ops
from accel.djn import DjnKey

from .conftest import keypair


def _pack(values, width):
    return b"".join(int(v).to_bytes(width, "little") for v in values)


def _edge_exponents(bits: int, count: int) -> list[int]:
    top = (1 << bits) - 1
    edges = [1, 2, top, top - 1, 1 << (bits - 1), int("10" * (bits // 2), 2), int("1" + "0" * (bits - 1), 2) | 1]
    return (edges + [secrets.randbits(bits) or 1 for _ in range(count)])[:max(count, len(edges))]


@pytest.mark.parametrize("bits", [256, 1024, 2048])
@pytest.mark.parametrize("window", [4, 5, 7, 8])
def test_comb_matches_powmod_sec(bits, window):
    pk, sk = keypair(bits)
    djn = DjnKey.generate(pk)
    pw, cw = pk.plaintext_width, pk.ciphertext_width
    rs = _edge_exponents(djn.exponent_bits, 9)  # odd-sized, edges first
    ms = [0, 1, pk.n - 1, pk.max_int] + [secrets.randbelow(pk.n) for _ in range(len(rs) - 4)]
    got = ops.encrypt_djn(_pack(ms, pw), _pack(rs, pw), pk.n, djn.hs, djn.exponent_bits, window, None, pw, cw)
    want = ops.encrypt_djn_powmod_sec(_pack(ms, pw), _pack(rs, pw), pk.n, djn.hs, pw, cw)
    assert got == want
    obf = ops.encrypt_djn(None, _pack(rs, pw), pk.n, djn.hs, djn.exponent_bits, window, None, pw, cw)
    n2 = pk.nsquare
    assert ops.read(obf, cw) == [gmpy2.powmod(djn.hs, r, n2) for r in rs]


def test_comb_table_layout():
    pk, _ = keypair(256)
    djn = DjnKey.generate(pk)
    cw = pk.ciphertext_width
    t = ops.djn_table_build(pk.n, djn.hs, djn.exponent_bits, 5, cw)
    assert t.shape == (-(-djn.exponent_bits // 5), 32, cw // 4) and t.dtype == np.float64
    for k, d in [(0, 0), (0, 1), (1, 31), (t.shape[0] - 1, 17)]:
        entry = int.from_bytes(t[k, d].astype("<u4").tobytes(), "little")
        assert entry == pow(djn.hs, d << (5 * k), pk.nsquare)


def test_window_fits_the_memory_cap():
    chosen = {}
    for bits in (1024, 2048, 3072, 4096):
        cw = 2 * (-(-bits // 32) * 4)
        w = chosen[bits] = ops.djn_window(cw, bits // 2)
        assert -(-(bits // 2) // w) * (1 << w) * cw // 4 * 8 <= ops.DJN_TABLE_BYTES
    assert chosen == {1024: 8, 2048: 8, 3072: 7, 4096: 6}


def test_exponent_longer_than_the_key_is_refused():
    pk, _ = keypair(256)
    djn = DjnKey.generate(pk, exponent_bits=64)
    pw, cw = pk.plaintext_width, pk.ciphertext_width
    with pytest.raises(ValueError, match="exponent"):
        ops.encrypt_djn(None, _pack([1 << 70], pw), pk.n, djn.hs, 64, 8, None, pw, cw)


def test_plaintext_out_of_range_names_the_index():
    pk, _ = keypair(256)
    djn = DjnKey.generate(pk)
    pw, cw = pk.plaintext_width, pk.ciphertext_width
    with pytest.raises(ValueError, match=r"plaintext\[1\]"):
        ops.encrypt_djn(_pack([1, pk.n], pw), _pack([3, 5], pw), pk.n, djn.hs, djn.exponent_bits, 6, None, pw, cw)


@pytest.mark.parametrize("count", [0, 1, 7, 33])
def test_backends_decrypt_to_the_plaintexts(inline_backend, pool_backend, count):
    pk, sk = keypair(1024)
    djn = DjnKey.generate(pk)
    ms = [secrets.randbelow(pk.n) for _ in range(count)]
    for be in (inline_backend, pool_backend):
        cs = be.raw_encrypt(pk, ms, djn=djn)
        assert be.raw_decrypt(sk, cs) == ms
        assert len(set(cs)) == len(cs)  # fresh exponents: no two ciphertexts alike
    # the same exponents give the same ciphertexts in process and in the pool
    a = inline_backend.raw_encrypt(pk, ms, djn=djn, rng=random.Random(5))
    b = pool_backend.raw_encrypt(pk, ms, djn=djn, rng=random.Random(5))
    assert a == b


def test_the_pool_shares_one_table_file(tmp_path, monkeypatch):
    """The gmpy2 path's table (the native engine's has its own test in test_cpu_native.py)."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    pk, sk = keypair(1024)
    djn = DjnKey.generate(pk)
    ms = list(range(20))
    with CpuBackend(workers=2, native=False) as be:
        assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms, djn=djn)) == ms
    files = list((tmp_path / "he-accel").glob("djn-*.npy"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    with CpuBackend(workers=2, native=False) as be:  # a later process of the job reuses it, not rebuilds it
        assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms, djn=djn)) == ms
    assert files[0].stat().st_mtime_ns == stamp
    table = np.load(files[0], mmap_mode="r")
    window = ops.djn_window(pk.ciphertext_width, djn.exponent_bits)
    assert np.array_equal(table, ops.djn_table_build(pk.n, djn.hs, djn.exponent_bits, window, pk.ciphertext_width))


def test_a_damaged_table_file_is_rebuilt(tmp_path):
    pk, _ = keypair(256)
    djn = DjnKey.generate(pk)
    pw, cw = pk.plaintext_width, pk.ciphertext_width
    path = tmp_path / "djn-bad.npy"
    path.write_bytes(b"not a table")
    rs = _pack([12345, 678], pw)
    got = ops.encrypt_djn(None, rs, pk.n, djn.hs, djn.exponent_bits, 6, str(path), pw, cw)
    assert got == ops.encrypt_djn_powmod_sec(None, rs, pk.n, djn.hs, pw, cw)


def test_runtime_dir_refuses_a_shared_directory(tmp_path, monkeypatch):
    from accel.backends._pool import runtime_dir

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    (tmp_path / "he-accel").mkdir(mode=0o777)
    os.chmod(tmp_path / "he-accel", 0o777)
    with pytest.raises(PermissionError, match="0700"):
        runtime_dir()
