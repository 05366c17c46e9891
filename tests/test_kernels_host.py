"""The kernels' arithmetic, compiled with g++ from the same sources, against gmpy2.

CI has no GPU; these run the ``__host__ __device__`` code of kernels/*.cuh directly (primitives)
and the ``__global__`` kernels through the emulated launcher, at every size class, on edges and
fresh random inputs.
"""
import ctypes
import secrets

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.gpu import emulator
from accel.gpu.limbs import KEY_CLASSES, MOD_CLASSES, crt_rec_size, limbs, mod_rec, pub_rec_size

from .conftest import keypair

lib = emulator.load()


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.c_void_p)


def _int(a: np.ndarray) -> int:
    return int.from_bytes(a.astype("<u4").tobytes(), "little")


def random_odd_modulus(L: int, bits: int | None = None) -> int:
    bits = bits or 32 * L
    return secrets.randbits(bits) | (1 << (bits - 1)) | 1


def mont_mul(L, a, b, m):
    rec = mod_rec(m, L)
    r = np.zeros(L, np.uint32)
    getattr(lib, f"emu_mont_mul_{L}")(_ptr(r), _ptr(limbs(a, L)), _ptr(limbs(b, L)), _ptr(rec))
    return _int(r)


def edge_values(m):
    return [0, 1, 2, m - 1, m - 2, m // 2, secrets.randbelow(m), secrets.randbelow(m)]


@pytest.mark.parametrize("L", MOD_CLASSES)
def test_mont_mul_against_gmpy2(L):
    R = 1 << (32 * L)
    for m in (random_odd_modulus(L), random_odd_modulus(L, 32 * L - 31), (1 << (32 * L)) - 1, 3):
        rinv = pow(R, -1, m)
        vals = edge_values(m)
        for a in vals:
            for b in vals[:4] + [secrets.randbelow(m)]:
                assert mont_mul(L, a, b, m) == a * b * rinv % m


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(MOD_CLASSES), st.integers(min_value=0), st.integers(min_value=0), st.integers(min_value=1))
def test_mont_mul_property(L, a, b, m):
    R = 1 << (32 * L)
    m = (m % R) | 1
    a, b = a % R, b % m  # the documented precondition: a < R, b < m
    assert mont_mul(L, a, b, m) == a * b * pow(R, -1, m) % m


@pytest.mark.parametrize("L", [32, 64, 128])
def test_reduce_to_mont_of_wide_inputs(L):
    m = random_odd_modulus(L, 32 * L - 3)
    R = 1 << (32 * L)
    for xl in (1, L, 2 * L, 2 * L + 5):
        for x in (0, 1, (1 << (32 * xl)) - 1, secrets.randbits(32 * xl)):
            r = np.zeros(L, np.uint32)
            getattr(lib, f"emu_reduce_to_mont_{L}")(_ptr(r), _ptr(limbs(x, xl)), ctypes.c_int(xl), _ptr(mod_rec(m, L)))
            assert _int(r) == x * R % m


@pytest.mark.parametrize("L", [32, 64, 256])
def test_mod_add_sub_inverse(L):
    m = random_odd_modulus(L)
    rec = mod_rec(m, L)
    for a in edge_values(m):
        for b in edge_values(m)[:5]:
            r = np.zeros(L, np.uint32)
            getattr(lib, f"emu_mod_add_{L}")(_ptr(r), _ptr(limbs(a, L)), _ptr(limbs(b, L)), _ptr(rec))
            assert _int(r) == (a + b) % m
            getattr(lib, f"emu_mod_sub_{L}")(_ptr(r), _ptr(limbs(a, L)), _ptr(limbs(b, L)), _ptr(rec))
            assert _int(r) == (a - b) % m
        r = np.zeros(L, np.uint32)
        ok = getattr(lib, f"emu_mod_inverse_{L}")(_ptr(r), _ptr(limbs(a, L)), _ptr(rec))
        if gmpy2.gcd(a, m) == 1:
            assert ok and _int(r) == pow(a, -1, m)
        else:
            assert not ok
    # a modulus sharing a factor: 3 * 5 * big, a = 3k is not invertible
    m = 15 * random_odd_modulus(L, 32 * L - 8)
    r = np.zeros(L, np.uint32)
    assert not getattr(lib, f"emu_mod_inverse_{L}")(_ptr(r), _ptr(limbs(9, L)), _ptr(mod_rec(m, L)))


@pytest.mark.parametrize("L", [32, 128])
def test_mul_low_is_exact_division_helper(L):
    R = 1 << (32 * L)
    for _ in range(5):
        a, b = secrets.randbits(32 * L), secrets.randbits(32 * L)
        r = np.zeros(L, np.uint32)
        getattr(lib, f"emu_mul_low_{L}")(_ptr(r), _ptr(limbs(a, L)), _ptr(limbs(b, L)))
        assert _int(r) == a * b % R


@pytest.mark.parametrize("lp", KEY_CLASSES)
def test_record_layouts_match_the_cpp_structs(lp):
    assert getattr(lib, f"emu_sizeof_pub_rec_{lp}")() == pub_rec_size(lp)
    assert getattr(lib, f"emu_sizeof_crt_rec_{lp}")() == crt_rec_size(lp)


@pytest.mark.parametrize("bits", [1024, 2048])
def test_record_builders_produce_the_declared_sizes(bits):
    from accel.gpu.limbs import crt_rec, key_class, pub_rec

    pk, sk = keypair(bits)
    lp = key_class(pk, sk)
    assert len(pub_rec(pk, lp)) == pub_rec_size(lp)
    assert len(crt_rec(sk, lp)) == crt_rec_size(lp)


@pytest.mark.parametrize("L", MOD_CLASSES)
def test_powmod_kernel_every_size_public_and_secret(L):
    from accel.gpu.emulator import EmulatedRuntime
    from accel.gpu.errors import NO_ERROR, raise_for
    from accel.gpu.limbs import signed_magnitudes

    rt = EmulatedRuntime()
    m = random_odd_modulus(L, 32 * L - secrets.randbelow(31))
    count = 4 if L >= 192 else 9
    bases = (edge_values(m) * 2)[:count]
    exps = [0, 1, 2, -1, (1 << 100) + 1, secrets.randbits(64), -secrets.randbits(40), secrets.randbits(256), 65537][:count]
    el = max(1, -(-max(abs(e).bit_length() for e in exps) // 32))
    mags, neg = signed_magnitudes(exps, el)
    unit = next(u for u in range(2, 1000) if gmpy2.gcd(u, m) == 1)
    for i, (b, e) in enumerate(zip(bases, exps)):
        if e < 0 and gmpy2.gcd(b, m) != 1:
            bases[i] = unit  # keep the batch valid; the error path is tested below
    for secret in (0, 1):
        out = rt.empty((count, L))
        err = rt.upload(np.array([NO_ERROR], np.uint64))
        rt.launch(f"powmod_{L}", count, [out, rt.upload(np.stack([limbs(b, L) for b in bases])), rt.upload(mags),
                                         rt.upload(neg), np.uint64(count), rt.upload(mod_rec(m, L)), np.int32(L),
                                         np.int32(el), np.int32(secret), err])
        raise_for(rt.download(err)[0])
        got = [_int(row) for row in rt.download(out)]
        assert got == [pow(b, e, m) for b, e in zip(bases, exps)]


def test_powmod_kernel_reports_errors():
    from accel.gpu.emulator import EmulatedRuntime
    from accel.gpu.errors import INPUT_RANGE, MODULUS_EVEN, NO_ERROR, NOT_INVERTIBLE
    from accel.gpu.limbs import signed_magnitudes

    rt = EmulatedRuntime()
    L = 32

    def run(m, bases, exps):
        mags, neg = signed_magnitudes(exps, 1)
        out = rt.empty((len(bases), L))
        err = rt.upload(np.array([NO_ERROR], np.uint64))
        rt.launch(f"powmod_{L}", len(bases), [out, rt.upload(np.stack([limbs(b, L) for b in bases])),
                                              rt.upload(mags), rt.upload(neg), np.uint64(len(bases)),
                                              rt.upload(mod_rec(m, L)), np.int32(L), np.int32(1), np.int32(0), err])
        word = int(rt.download(err)[0])
        return word & 0xFF, word >> 8

    assert run(100, [3], [1])[0] == MODULUS_EVEN
    assert run(15, [2, 9, 3], [1, 1, -1]) == (NOT_INVERTIBLE, 2)
    assert run(15, [2, 16, 3, 20], [1, 1, 1, 1]) == (INPUT_RANGE, 1)  # lowest failing index wins
