"""DJN on the cooperative core (kernels/djn_coop.cu): the device-resident fixed-base comb table and
encryption with masked reads of every entry, run by the lockstep emulator and checked bit-exact
against gmpy2 at every key class, and through GpuBackend(cooperative=True)."""
import ctypes
import secrets

import gmpy2
import numpy as np
import pytest

from accel.backends.gpu import DJN_COMB_BITS, GpuBackend
from accel.djn import DjnKey
from accel.gpu import emulator
from accel.gpu.build import COOP_TPI
from accel.gpu.emulator import run_kernel
from accel.gpu.limbs import limbs, pub_rec

from .conftest import keypair, recording_runtime

lib = emulator.load()
BLOCK = 128
NO_ERROR = 2**64 - 1


def _call(kernel, grid, args):
    c_args = []
    for a in args:
        if isinstance(a, np.ndarray):
            c_args.append(ctypes.c_void_p(a.ctypes.data))
        elif isinstance(a, np.uint64):
            c_args.append(ctypes.c_ulonglong(int(a)))
        else:
            c_args.append(ctypes.c_int(int(a)))
    ptrs = (ctypes.c_void_p * len(c_args))(*[ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in c_args])
    run_kernel(lib, kernel, grid, BLOCK, ptrs)


def _ints(rows):
    return [int.from_bytes(r.tobytes(), "little") for r in rows]


def build_table(pk, lp, hs, rows, comb, grid=None):
    L = 2 * lp
    hs_m = (hs << (32 * L)) % pk.nsquare
    table = np.zeros((rows, 1 << comb, L), np.uint32)
    key = pub_rec(pk, lp)
    _call(f"djn_table_coop_{lp}", grid or -(-rows * COOP_TPI[L] // BLOCK), [table, limbs(hs_m, L), rows, comb, key])
    return table, key


def encrypt(pk, lp, table, key, ms, rs, comb, *, ps=None, grid=None):
    """Run djn_encrypt_coop (ms None: obfuscators); returns (results, error word)."""
    L = 2 * lp
    rows = table.shape[0]
    ps = ps or lp
    count = len(rs)
    out = np.zeros((count, L), np.uint32)
    err = np.array([NO_ERROR], np.uint64)
    m_rows = np.stack([limbs(m, ps) for m in ms]) if ms is not None else np.zeros((1, ps), np.uint32)
    r_rows = np.stack([limbs(r, lp) for r in rs])
    _call(f"djn_encrypt_coop_{lp}", grid or -(-count * COOP_TPI[L] // BLOCK),
          [out, m_rows, int(ms is not None), r_rows, np.uint64(count), table, rows, comb, key, ps, lp, L, err])
    return _ints(out), int(err[0])


def edge_exponents(bits, count):
    top = (1 << bits) - 1
    fixed = [1, 2, top, top - 1, 1 << (bits - 1), int("10" * (bits // 2), 2)]
    return (fixed + [secrets.randbits(bits) | 1 for _ in range(count)])[:max(count, len(fixed))]


# (key bits, DJN exponent bits, comb bits): the full default exponent where the emulator is quick,
# shorter ones (whole rows, a partial top row) at the large classes; comb widths 8 and others
# (3: one tree of selects per row; 2: rows narrower than a tree, the per-entry masked read)
COOP_CASES = [(1024, 512, 8), (1024, 60, 5), (2048, 64, 8), (2048, 36, 4), (3072, 24, 8), (4096, 16, 8),
              (1024, 30, 3), (2048, 22, 2)]


@pytest.mark.parametrize("bits,ebits,comb", COOP_CASES)
def test_comb_table_and_encryption_against_gmpy2(bits, ebits, comb):
    pk, _ = keypair(bits)
    lp = -(-bits // 1024) * 32
    djn = DjnKey.generate(pk, exponent_bits=ebits)
    rows = -(-djn.exponent_bits // comb)
    table, key = build_table(pk, lp, djn.hs, rows, comb)
    n2, R = pk.nsquare, 1 << (64 * lp)
    # every entry of the first and last rows, a sample of the others: hs^(d 2^(comb k)) R mod n^2
    check = [(k, d) for k in {0, rows - 1} for d in range(1 << comb)]
    check += [(secrets.randbelow(rows), secrets.randbelow(1 << comb)) for _ in range(8)]
    for k, d in check:
        want = gmpy2.powmod(djn.hs, d << (comb * k), n2) * R % n2
        assert _ints(table[k, d : d + 1])[0] == want, (k, d)

    rs = edge_exponents(djn.exponent_bits, 7)
    ms = [0, 1, pk.n - 1, pk.n - 2] + [secrets.randbelow(pk.n) for _ in range(len(rs) - 4)]
    got, err = encrypt(pk, lp, table, key, ms, rs, comb)
    assert err == NO_ERROR
    want = [(1 + m * pk.n) * gmpy2.powmod(djn.hs, r, n2) % n2 for m, r in zip(ms, rs)]
    assert got == want
    obf, err = encrypt(pk, lp, table, key, None, rs, comb)
    assert err == NO_ERROR and obf == [gmpy2.powmod(djn.hs, r, n2) for r in rs]


def test_grid_stride_odd_batches_and_narrow_plaintexts():
    """More elements than groups launched, counts that leave groups idle, plaintexts stored in
    fewer limbs than the class (zero-extended), and an exponent of zero (the identity)."""
    pk, _ = keypair(1024)
    lp, comb = 32, 8
    djn = DjnKey.generate(pk, exponent_bits=40)
    rows = -(-40 // comb)
    table, key = build_table(pk, lp, djn.hs, rows, comb, grid=1)
    n2 = pk.nsquare
    for count, grid in ((1, 1), (17, 1), (37, 2), (9, 3)):
        rs = [0] + [secrets.randbits(40) for _ in range(count - 1)]
        ms = [secrets.randbelow(1 << 64) for _ in range(count)]
        got, err = encrypt(pk, lp, table, key, ms, rs, comb, ps=2, grid=grid)
        assert err == NO_ERROR
        assert got == [(1 + m * pk.n) * gmpy2.powmod(djn.hs, r, n2) % n2 for m, r in zip(ms, rs)]


def test_plaintext_range_errors_name_the_lowest_failing_element():
    pk, _ = keypair(1024)
    lp, comb = 32, 4
    djn = DjnKey.generate(pk, exponent_bits=16)
    table, key = build_table(pk, lp, djn.hs, 4, comb)
    rs = [3, 5, 7, 9]
    got, err = encrypt(pk, lp, table, key, [4, pk.n, 6, pk.n + 1], rs, comb)
    assert err == (1 << 8) | 1  # element 1: ERR_PLAINTEXT_RANGE
    n2 = pk.nsquare
    assert got[0] == (1 + 4 * pk.n) * pow(djn.hs, 3, n2) % n2 and got[2] == (1 + 6 * pk.n) * pow(djn.hs, 7, n2) % n2


@pytest.mark.parametrize("bits", [1024, 2048])
def test_backend_djn_runs_the_cooperative_comb(bits, inline_backend):
    """GpuBackend(cooperative=True): encrypt(djn=...) and obfuscators(djn=...) launch the comb
    table once per key and djn_encrypt_coop, and match the CPU backend with the same randomness."""
    from .test_gpu_backend import SeededRng

    rt = recording_runtime()
    gpu = GpuBackend(runtime=rt, fallback=inline_backend, cooperative=True)
    pk, sk = keypair(bits)
    djn = DjnKey.generate(pk, exponent_bits=512 if bits == 1024 else 48)
    lp = bits // 1024 * 32
    ms = [0, 1, pk.n - 1, secrets.randbelow(pk.n), 5]
    cs = gpu.raw_encrypt(pk, ms, djn=djn, rng=SeededRng(9))
    assert cs == inline_backend.raw_encrypt(pk, ms, djn=djn, rng=SeededRng(9))
    assert inline_backend.raw_decrypt(sk, cs) == ms
    obf = gpu.obfuscators(pk, 3, djn=djn, rng=SeededRng(2))
    assert obf == inline_backend.obfuscators(pk, 3, djn=djn, rng=SeededRng(2))
    rows = -(-djn.exponent_bits // DJN_COMB_BITS)
    tpi = COOP_TPI[2 * lp]
    assert rt.launched == [(f"djn_table_coop_{lp}", rows * tpi), (f"djn_encrypt_coop_{lp}", 5 * tpi),
                           (f"djn_encrypt_coop_{lp}", 3 * tpi)]
    with pytest.raises(ValueError, match=r"plaintext\[1\]"):
        gpu.raw_encrypt(pk, [5, pk.n], djn=djn)
    assert gpu.stats["cpu_fallbacks"] == 0
