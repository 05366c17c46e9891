"""The cooperative Montgomery core (kernels/coop_mont.cuh) through powmod_coop, bit-exact against
gmpy2 at every size class, run by the lockstep emulator (groups of 8/16/32 lanes exchanging limbs
with shuffles), and through GpuBackend on the emulated runtime."""
import ctypes
import secrets

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.backends.gpu import GpuBackend
from accel.gpu import emulator
from accel.gpu.build import COOP_TPI
from accel.gpu.emulator import EmulatedRuntime, run_kernel
from accel.gpu.limbs import MOD_CLASSES, limbs, mod_rec

from .conftest import recording_runtime

lib = emulator.load()
BLOCK = 128
NO_ERROR = 2**64 - 1


def _arg(a):
    if isinstance(a, np.ndarray):
        return ctypes.c_void_p(a.ctypes.data)
    if isinstance(a, np.uint64):
        return ctypes.c_ulonglong(int(a))
    return ctypes.c_int(int(a))


def powmod_coop(L, bases, exps, m, *, secret=False, el=None, bstride=None, grid=None, base_rows=None):
    """Run powmod_coop_L; returns (results, error word)."""
    n = len(bases)
    el = el or max(1, -(-max(e.bit_length() for e in exps) // 32))
    bstride = bstride or L
    rows = base_rows if base_rows is not None else np.stack([limbs(b, bstride) for b in bases])
    out = np.zeros((n, L), np.uint32)
    err = np.array([NO_ERROR], np.uint64)
    args = [out, np.ascontiguousarray(rows), np.stack([limbs(e, el) for e in exps]), np.uint64(n), mod_rec(m, L),
            bstride, el, int(secret), err]
    c_args = [_arg(a) for a in args]
    ptrs = (ctypes.c_void_p * len(c_args))(*[ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in c_args])
    run_kernel(lib, f"powmod_coop_{L}", grid or -(-n * COOP_TPI[L] // BLOCK), BLOCK, ptrs)
    return [int.from_bytes(r.tobytes(), "little") for r in out], int(err[0])


def odd_modulus(bits):
    return secrets.randbits(bits) | (1 << (bits - 1)) | 1


def test_threads_per_number_agree_with_the_kernels():
    for L in MOD_CLASSES:
        assert getattr(lib, f"emu_coop_tpi_{L}")() == COOP_TPI[L]
        assert L % COOP_TPI[L] == 0 and COOP_TPI[L] in (8, 16, 32)


# exponent bits per size class: full-width exponents where the emulator is quick, shorter above
EXP_BITS = {32: 1024, 64: 1024, 96: 256, 128: 256, 192: 96, 256: 64}


@pytest.mark.parametrize("L", MOD_CLASSES)
@pytest.mark.parametrize("secret", [False, True])
def test_powmod_coop_edges_and_random_against_gmpy2(L, secret):
    bits = 32 * L
    eb = EXP_BITS[L]
    for m in (odd_modulus(bits), odd_modulus(bits - 31), (1 << bits) - 1):
        bases = [0, 1, 2, m - 1, m - 2, secrets.randbelow(m), secrets.randbelow(m), (1 << (bits - 1)) % m]
        exps = [0, 1, 2, (1 << eb) - 1, secrets.randbits(eb), 0, 1, secrets.randbits(eb) | 1]
        got, err = powmod_coop(L, bases, exps, m, secret=secret, el=-(-eb // 32))
        assert err == NO_ERROR
        assert got == [int(gmpy2.powmod(b, e, m)) for b, e in zip(bases, exps)]


def _slice_edges(L, m):
    """Bases that stress the dedicated squaring's carries: every limb all ones, every lane's top
    limb with its top bit set (the doubling's carry out of a slice), alternating limbs."""
    lpt = L // COOP_TPI[L]
    ones = (1 << (32 * L)) - 1
    tops = sum(0x80000000 << (32 * (lane * lpt + lpt - 1)) for lane in range(COOP_TPI[L]))
    alt = sum(0xFFFFFFFF << (64 * k) for k in range(L // 2))
    return [ones % m, tops % m, alt % m, (ones >> 1) % m]


@pytest.mark.parametrize("L", MOD_CLASSES)
def test_squarings_at_every_class(L):
    """b^2, b^4 and b^(2^k + 1) (squarings in a row, then one product) against gmpy2, with the
    bases that give the block squaring its largest sums and carries, for moduli whose limbs are
    all ones, random and one limb short."""
    bits = 32 * L
    for m in ((1 << bits) - 1, odd_modulus(bits), odd_modulus(bits - 32)):
        bases = [0, 1, 2, m - 1, m - 2, secrets.randbelow(m), *_slice_edges(L, m)]
        for e in (2, 4, (1 << 9) + 1):
            for secret in (False, True):
                got, err = powmod_coop(L, bases, [e] * len(bases), m, secret=secret)
                assert err == NO_ERROR
                assert got == [int(gmpy2.powmod(b, e, m)) for b in bases], (m, e, secret)


def test_public_windows_at_every_table_size():
    """Public exponents of 1 ... 400 bits use 2 ... all of the table's entries (about one per 16
    bits) and fractional windows (digits up to 2E - 1): digit patterns just above and below the
    largest digit, all ones, sparse, against gmpy2 at a class with four and one with three limbs
    per lane."""
    for L in (32, 96):
        most = getattr(lib, f"emu_coop_pub_entries_{L}")()
        m = odd_modulus(32 * L)
        base = secrets.randbelow(m)
        exps = [0, 1, 3]
        for bits in (5, 16, 31, 32, 33, 48, 64, 100, 16 * most - 1, 16 * most, 16 * most + 1, 400):
            exps += [(1 << bits) - 1, secrets.randbits(bits) | (1 << (bits - 1)), 1 << (bits - 1)]
            for digit in (2 * most - 1, 2 * most + 1, 2 * most + 3, 31, 25, 17):
                exps.append(int(bin(digit)[2:] * max(1, bits // 5), 2))
        got, err = powmod_coop(L, [base] * len(exps), exps, m)
        assert err == NO_ERROR and got == [int(gmpy2.powmod(base, e, m)) for e in exps]


def test_table_sizes_keep_half_occupancy_and_agree_with_the_model():
    """The public table's entries per class (coop_pub_entries) are what the kernel model counts,
    and where the dedicated squaring runs its shared memory and the table fit 8 blocks of 128
    threads per sm_90 SM (50% occupancy) beside the 1 KB each block reserves."""
    from accel.bench.kernel_model import public_table_entries

    for L in MOD_CLASSES:
        lpt = L // COOP_TPI[L]
        entries = getattr(lib, f"emu_coop_pub_entries_{L}")()
        sqr = getattr(lib, f"emu_coop_sqr_blocks_{L}")()
        assert entries == public_table_entries(lpt)
        assert 8 <= entries <= 16 and bool(sqr) == (lpt <= 4)
        smem = 4 * BLOCK * lpt * max(entries, 8) + (4 * BLOCK * (3 * lpt + 1) if sqr else 0)
        if lpt <= 4:
            assert 8 * (smem + 1024) <= 228 * 1024


def test_small_moduli_and_exponent_edges():
    L = 32
    for m in (3, 5, 0xFFFFFFFF, (1 << 33) + 1):
        bases = [0, 1, m - 1, 2 % m]
        exps = [0, 1, (1 << 64) - 1, 65537]
        for secret in (False, True):
            got, err = powmod_coop(L, bases, exps, m, secret=secret)
            assert err == NO_ERROR and got == [pow(b, e, m) for b, e in zip(bases, exps)]


@pytest.mark.parametrize("L", [64, 128])
def test_paillier_shaped_powmod_at_full_exponent_length(L):
    """r^n mod n^2 with a full-length n, as textbook encryption does (n of 16 L bits)."""
    n = odd_modulus(16 * L)
    nsq = n * n
    rs = [secrets.randbelow(nsq) for _ in range(3)]
    got, err = powmod_coop(L, rs, [n] * 3, nsq)
    assert err == NO_ERROR and got == [int(gmpy2.powmod(r, n, nsq)) for r in rs]


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([32, 64]), st.integers(min_value=1), st.lists(st.integers(min_value=0), min_size=1, max_size=5),
       st.lists(st.integers(min_value=0, max_value=2**300), min_size=1, max_size=5), st.booleans())
def test_powmod_coop_property(L, m, bases, exps, secret):
    m = (m % (1 << (32 * L))) | 1
    k = min(len(bases), len(exps))
    bases, exps = [b % m for b in bases[:k]], exps[:k]
    got, err = powmod_coop(L, bases, exps, m, secret=secret)
    assert err == NO_ERROR and got == [pow(b, e, m) for b, e in zip(bases, exps)]


def test_grid_stride_and_partial_blocks():
    """More numbers than threads launched (grid-stride over groups), a count that is no multiple
    of the groups per block."""
    L = 32  # 16 groups per block
    m = odd_modulus(1000)
    bases = [secrets.randbelow(m) for _ in range(37)]
    exps = [secrets.randbits(40) for _ in range(37)]
    for grid in (1, 2, 3):
        got, err = powmod_coop(L, bases, exps, m, grid=grid)
        assert err == NO_ERROR and got == [pow(b, e, m) for b, e in zip(bases, exps)]


def test_range_errors_name_the_lowest_failing_element():
    L = 64
    m = odd_modulus(2000)
    bases = [5, m, 7, m + 1]
    got, err = powmod_coop(L, bases, [3, 3, 3, 3], m, bstride=L)
    assert err == (1 << 8) | 5  # element 1: ERR_INPUT_RANGE
    assert got[0] == pow(5, 3, m) and got[2] == pow(7, 3, m)


def test_wide_base_rows_are_checked_above_L():
    L = 32
    m = odd_modulus(1024)
    rows = np.stack([limbs(3, 40), limbs(4 + (1 << (32 * 35)), 40)])
    got, err = powmod_coop(L, [3, 4], [5, 5], m, bstride=40, base_rows=rows)
    assert err == (1 << 8) | 5 and got[0] == pow(3, 5, m)


def test_even_modulus_is_refused():
    got, err = powmod_coop(32, [3], [5], 1 << 100)
    assert err & 0xFF == 4  # ERR_MODULUS_EVEN


def test_backend_powmod_runs_the_cooperative_kernel(inline_backend, monkeypatch):
    monkeypatch.delenv("HEA_GPU_COOPERATIVE", raising=False)
    rt = recording_runtime()
    launched = rt.launched
    gpu = GpuBackend(runtime=rt, fallback=inline_backend, cooperative=True)
    for bits in (1024, 2048, 4096, 8192):
        m = odd_modulus(bits)
        bases = [0, 1, m - 1, secrets.randbelow(m)]
        exps = [0, 1, 65537, secrets.randbits(64)]
        assert gpu.powmod(bases, exps, m) == [pow(b, e, m) for b, e in zip(bases, exps)]
    lcs = [32, 64, 128, 256]
    assert launched == [(f"powmod_coop_{lc}", 4 * COOP_TPI[lc]) for lc in lcs]
    # negative exponents take the one-thread kernel (it inverts the base per element)
    launched.clear()
    m = int(gmpy2.next_prime(odd_modulus(1024)))  # 3 is invertible
    assert gpu.powmod([3, 5], [-1, 7], m) == [pow(3, -1, m), pow(5, 7, m)]
    assert launched == [("powmod_32", 2)]
    assert gpu.stats["cpu_fallbacks"] == 0
    # opt-in: off by default (HEA_GPU_COOPERATIVE unset), on with HEA_GPU_COOPERATIVE=1
    launched.clear()
    plain = GpuBackend(runtime=rt, fallback=inline_backend)
    assert plain.powmod([3], [5], m) == [pow(3, 5, m)]
    assert launched == [("powmod_32", 1)]
    monkeypatch.setenv("HEA_GPU_COOPERATIVE", "1")
    assert GpuBackend(runtime=recording_runtime(), fallback=inline_backend).cooperative


@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096])
def test_cooperative_encryption_and_obfuscators_match_the_cpu(bits, inline_backend):
    """paillier_encrypt_coop / paillier_obfuscate_coop against the CPU backend with the same
    randomness, at every key class, with plaintext edges and a range error."""
    from .conftest import keypair
    from .test_gpu_backend import SeededRng

    rt = recording_runtime()
    launched = rt.launched
    gpu = GpuBackend(runtime=rt, fallback=inline_backend, cooperative=True)
    pk, sk = keypair(bits)
    ms = [0, 1, pk.n - 1, secrets.randbelow(pk.n)] if bits <= 2048 else [pk.n - 1]  # the emulator is slow
    cs = gpu.raw_encrypt(pk, ms, rng=SeededRng(11))
    assert cs == inline_backend.raw_encrypt(pk, ms, rng=SeededRng(11))
    assert inline_backend.raw_decrypt(sk, cs) == ms
    assert gpu.obfuscators(pk, 1, rng=SeededRng(4)) == inline_backend.obfuscators(pk, 1, rng=SeededRng(4))
    lp = -(-bits // 1024) * 32
    assert {k for k, _ in launched} == {f"paillier_encrypt_coop_{lp}", f"paillier_obfuscate_coop_{lp}"}
    assert all(t % COOP_TPI[2 * lp] == 0 for _, t in launched)
    if bits <= 2048:
        with pytest.raises(ValueError, match=r"plaintext\[1\]"):
            gpu.raw_encrypt(pk, [5, pk.n, 7], rng=SeededRng(1))
    assert gpu.stats["cpu_fallbacks"] == 0
