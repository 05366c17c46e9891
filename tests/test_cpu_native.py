"""The CPU backend's native engine (gmp_batch.c) against the gmpy2 path as oracle, and its fallback."""
from __future__ import annotations

import os
import random
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import gmpy2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel import CpuBackend
from accel.backends import _gmp_ops as ops
from accel.backends import _native
from accel.djn import DjnKey

from .conftest import keypair

SIZES = [64, 256, 1024, 2048]
ROOT = Path(__file__).resolve().parent.parent


def _pack(values, width):
    return b"".join(int(v).to_bytes(width, "little") for v in values)


@pytest.fixture(scope="module")
def lib():
    path, why = _native.probe()
    assert path is not None, f"the native engine should build on this machine (gcc, libgmp): {why}"
    return _native.load(path)


def _ciphertexts(n2: int, count: int) -> list[int]:
    edges = [1, 2, n2 - 1, n2 - 2]
    return (edges + [secrets.randbelow(n2 - 1) + 1 for _ in range(count)])[:count]


def _plaintexts(n: int, count: int) -> list[int]:
    edges = [0, 1, n - 1, n // 2]
    return (edges + [secrets.randbelow(n) for _ in range(count)])[:count]


@pytest.mark.parametrize("bits", SIZES)
@pytest.mark.parametrize("count", [0, 1, 2, 7, 33])
def test_cheap_ops_match_gmpy2(lib, bits, count):
    pk, _ = keypair(bits)
    n, n2, pw, cw = pk.n, pk.nsquare, pk.plaintext_width, pk.ciphertext_width
    a = _pack(_ciphertexts(n2, count), cw)
    b = _pack(_ciphertexts(n2, count)[::-1], cw)
    m = _pack(_plaintexts(n, count), pw)
    assert _native.mulmod(lib, a, b, n2, cw) == ops.add(a, b, n2, cw)
    assert _native.add_plain(lib, a, m, n, pw, cw) == ops.add_plain(a, m, n, pw, cw)
    assert _native.product(lib, a, n2, cw) == ops.product(a, n2, cw)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_cheap_ops_match_gmpy2_hypothesis(lib, data):
    pk, _ = keypair(256)
    n, n2, pw, cw = pk.n, pk.nsquare, pk.plaintext_width, pk.ciphertext_width
    cs = data.draw(st.lists(st.integers(1, n2 - 1), max_size=9))
    ds = data.draw(st.lists(st.integers(1, n2 - 1), min_size=len(cs), max_size=len(cs)))
    ms = data.draw(st.lists(st.integers(0, n - 1), min_size=len(cs), max_size=len(cs)))
    a, b, m = _pack(cs, cw), _pack(ds, cw), _pack(ms, pw)
    assert ops.read(_native.mulmod(lib, a, b, n2, cw), cw) == [x * y % n2 for x, y in zip(cs, ds)]
    assert ops.read(_native.add_plain(lib, a, m, n, pw, cw), cw) == [c * (1 + v * n) % n2 for c, v in zip(cs, ms)]
    want = 1
    for c in cs:
        want = want * c % n2
    assert int.from_bytes(_native.product(lib, a, n2, cw), "little") == want


def _edge_exponents(bits: int, count: int) -> list[int]:
    top = (1 << bits) - 1
    edges = [1, 2, top, top - 1, 1 << (bits - 1), int("10" * (bits // 2), 2)]
    return (edges + [secrets.randbits(bits) or 1 for _ in range(count)])[:count]


@pytest.mark.parametrize("bits", SIZES)
@pytest.mark.parametrize("window", [None, 4, 7])
@pytest.mark.parametrize("count", [0, 1, 9, 40])  # 40: more than one block of the C loop
def test_djn_matches_powmod_sec(lib, bits, window, count):
    pk, _ = keypair(bits)
    djn = DjnKey.generate(pk)
    pw, cw = pk.plaintext_width, pk.ciphertext_width
    window = window or _native.djn_window(cw, djn.exponent_bits)
    rs = _pack(_edge_exponents(djn.exponent_bits, count), pw)
    ms = _pack(_plaintexts(pk.n, count), pw)
    got = _native.djn_encrypt(lib, ms, rs, pk.n, djn.hs, djn.exponent_bits, window, pw, cw)
    assert got == ops.encrypt_djn_powmod_sec(ms, rs, pk.n, djn.hs, pw, cw)
    obf = _native.djn_encrypt(lib, None, rs, pk.n, djn.hs, djn.exponent_bits, window, pw, cw)
    assert ops.read(obf, cw) == [gmpy2.powmod(djn.hs, r, pk.nsquare) for r in ops.read(rs, pw)]


def test_djn_table_layout(lib):
    pk, _ = keypair(256)
    djn = DjnKey.generate(pk)
    cw = pk.ciphertext_width
    limbs = -(-cw // 8)
    t = _native.djn_table_build(lib, pk.n, djn.hs, djn.exponent_bits, 5, cw)
    assert t.shape == (-(-djn.exponent_bits // 5), 32, limbs) and t.dtype == np.uint64
    mont = 1 << (64 * limbs)
    for k, d in [(0, 0), (0, 1), (1, 31), (t.shape[0] - 1, 17)]:
        entry = int.from_bytes(t[k, d].tobytes(), "little")
        assert entry == pow(djn.hs, d << (5 * k), pk.nsquare) * mont % pk.nsquare


def test_window_choice_stays_in_range_and_memory():
    for bits in (256, 1024, 2048, 3072, 4096):
        cw = 2 * (-(-bits // 32) * 4)
        w = _native.djn_window(cw, bits // 2)
        assert 4 <= w <= 9
        assert -(-(bits // 2) // w) * (1 << w) * -(-cw // 8) * 8 <= _native.DJN_TABLE_BYTES


# -- errors: the same as the gmpy2 path's ----------------------------------------------------
def _message(fn, *args) -> str:
    with pytest.raises(ValueError) as e:
        fn(*args)
    return str(e.value)


@pytest.mark.parametrize("bad", ["zero", "n2", "wide"])
def test_bad_ciphertexts_fail_like_gmpy2(lib, bad):
    pk, _ = keypair(256)
    n, n2, pw, cw = pk.n, pk.nsquare, pk.plaintext_width, pk.ciphertext_width
    value = {"zero": 0, "n2": n2, "wide": (1 << (8 * cw)) - 1}[bad]
    good = _pack([5, 7, 11], cw)
    broken = _pack([5, 7, value], cw)
    m = _pack([1, 2, 3], pw)
    assert _message(_native.mulmod, lib, good, broken, n2, cw) == _message(ops.add, good, broken, n2, cw)
    assert _message(_native.mulmod, lib, broken, good, n2, cw, 4) == _message(ops.add, broken, good, n2, cw, 4)
    assert _message(_native.add_plain, lib, broken, m, n, pw, cw) == _message(ops.add_plain, broken, m, n, pw, cw)
    assert _message(_native.product, lib, broken, n2, cw) == _message(ops.product, broken, n2, cw)


def test_bad_plaintexts_and_exponents_fail_like_gmpy2(lib):
    pk, _ = keypair(256)
    djn = DjnKey.generate(pk, exponent_bits=64)
    n, pw, cw = pk.n, pk.plaintext_width, pk.ciphertext_width
    cs, ms = _pack([5, 7], cw), _pack([1, n], pw)
    assert _message(_native.add_plain, lib, cs, ms, n, pw, cw) == _message(ops.add_plain, cs, ms, n, pw, cw)
    rs = _pack([3, 5], pw)
    assert "plaintext[1]" in _message(_native.djn_encrypt, lib, ms, rs, n, djn.hs, 64, 6, pw, cw)
    long_r = _pack([3, 1 << 70], pw)
    assert "exponent" in _message(_native.djn_encrypt, lib, None, long_r, n, djn.hs, 64, 6, pw, cw)


# -- the backend: native and gmpy2 paths agree, in process and in the pool ----------------------
@pytest.fixture(scope="module")
def backends():
    made = [CpuBackend(workers=1, native=True), CpuBackend(workers=1, native=False),
            CpuBackend(workers=2, chunks_per_worker=8, native=True)]
    yield made
    for be in made:
        be.close()


def test_describe_names_the_engine(backends):
    native, plain, _ = backends
    assert native.describe()["native"] and native.describe()["native_unavailable"] is None
    assert plain.describe()["native"] is None and "native=False" in plain.describe()["native_unavailable"]


@pytest.mark.parametrize("count", [0, 1, 5, 4099])  # 4099: the pool takes cheap ops from 4096
def test_backends_agree(backends, count):
    pk, _ = keypair(1024)
    n, n2 = pk.n, pk.nsquare
    cs, cs2, ks = _ciphertexts(n2, count), _ciphertexts(n2, count)[::-1], _plaintexts(n, count)
    ref = backends[1]
    want = (ref.raw_add(pk, cs, cs2), ref.raw_add_plain(pk, cs, ks), ref.raw_sum(pk, cs))
    assert want[0] == [x * y % n2 for x, y in zip(cs, cs2)]
    for be in (backends[0], backends[2]):
        assert be.raw_add(pk, cs, cs2) == want[0]
        assert be.raw_add_plain(pk, cs, ks) == want[1]
        assert be.raw_sum(pk, cs) == want[2]
        blob = _pack(cs, pk.ciphertext_width)  # packed input, packed output
        assert be.raw_sum(pk, blob) == want[2].to_bytes(pk.ciphertext_width, "little")


def test_native_results_decrypt(backends):
    pk, sk = keypair(1024)
    be = backends[0]
    ms, ks = _plaintexts(pk.n, 9), _plaintexts(pk.n, 9)[::-1]
    cs, cs2 = be.raw_encrypt(pk, ms, private_key=sk), be.raw_encrypt(pk, ks, private_key=sk)
    assert be.raw_decrypt(sk, be.raw_add(pk, cs, cs2)) == [(a + b) % pk.n for a, b in zip(ms, ks)]
    assert be.raw_decrypt(sk, be.raw_add_plain(pk, cs, ks)) == [(a + b) % pk.n for a, b in zip(ms, ks)]
    assert be.raw_decrypt(sk, [be.raw_sum(pk, cs)]) == [sum(ms) % pk.n]


@pytest.mark.parametrize("count", [0, 1, 9, 70])
def test_djn_backends_agree_and_decrypt(backends, count):
    pk, sk = keypair(1024)
    djn = DjnKey.generate(pk)
    ms = _plaintexts(pk.n, count)
    outs = [be.raw_encrypt(pk, ms, djn=djn, rng=random.Random(11)) for be in backends]
    assert outs[0] == outs[1] == outs[2]
    assert backends[0].raw_decrypt(sk, outs[0]) == ms
    fresh = backends[2].raw_encrypt(pk, ms, djn=djn)
    assert len(set(fresh)) == len(fresh) and backends[2].raw_decrypt(sk, fresh) == ms


def test_the_pool_shares_one_native_table_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    pk, sk = keypair(1024)
    djn = DjnKey.generate(pk)
    ms = list(range(20))
    with CpuBackend(workers=2, native=True) as be:
        assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms, djn=djn)) == ms
    files = list((tmp_path / "he-accel").glob("djn-native-*.npy"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    with CpuBackend(workers=2, native=True) as be:  # a later process reuses it
        assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms, djn=djn)) == ms
    assert files[0].stat().st_mtime_ns == stamp
    engine = _native.djn_engine(_native.load(), pk.ciphertext_width)
    window = _native.djn_window(pk.ciphertext_width, djn.exponent_bits, engine)
    built = _native.djn_table_build(_native.load(), pk.n, djn.hs, djn.exponent_bits, window, pk.ciphertext_width,
                                    engine)
    assert np.array_equal(np.load(files[0], mmap_mode="r"), built)


def test_a_damaged_native_table_file_is_rebuilt(lib, tmp_path):
    pk, _ = keypair(256)
    djn = DjnKey.generate(pk)
    pw, cw = pk.plaintext_width, pk.ciphertext_width
    path = tmp_path / "djn-native-bad.npy"
    path.write_bytes(b"not a table")
    rs = _pack([12345, 678], pw)
    got = _native.djn_encrypt(lib, None, rs, pk.n, djn.hs, djn.exponent_bits, 5, pw, cw, str(path))
    assert got == ops.encrypt_djn_powmod_sec(None, rs, pk.n, djn.hs, pw, cw)


# -- the IFMA engine (djn_ifma.c): on this CPU where it has AVX-512 IFMA, and everywhere in the
# emulated build (the same source with each vector operation as plain C) ---------------------------
def _cpu_has_ifma() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512ifma" in line for line in f)
    except OSError:
        return False


def _build_emulated(out: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("needs a C compiler")
    subprocess.run([cc, *_native.CFLAGS, "-DHEA_IFMA_EMULATE", "-o", str(out), str(_native.SOURCE), *_native.LIBS],
                   check=True, capture_output=True, text=True)
    return out


@pytest.fixture(scope="module")
def emulated_lib(tmp_path_factory):
    return _native.load(_build_emulated(tmp_path_factory.mktemp("ifma") / "gmp_batch_emulated.so"))


@pytest.fixture(scope="module", params=["ifma", "ifma-emulated"])
def ifma_lib(request, lib, emulated_lib):
    if request.param == "ifma-emulated":
        return emulated_lib
    if _native.ifma_unavailable(lib, 512):
        why = _native.ifma_unavailable(lib, 512)
        pytest.skip(f"the IFMA engine does not run here: {why} (the emulated build does)")
    return lib


def test_ifma_dispatch_follows_the_cpu_and_the_switch(lib, monkeypatch):
    monkeypatch.delenv("HEA_CPU_IFMA", raising=False)
    assert bool(lib.hea_ifma_available()) == _cpu_has_ifma()
    assert _native.djn_engine(lib, 512) == ("ifma" if _cpu_has_ifma() else "mpn")
    assert _native.djn_engine(lib, 8 * 1024) == "mpn"  # 8192-bit keys: beyond the IFMA sizes
    for cw in (16, 256, 512, 768, 1240):
        assert lib.hea_ifma_digits(cw) == _native.ifma_digits(cw) and _native.ifma_digits(cw) % 8 == 0
        assert 1 << (52 * _native.ifma_digits(cw)) > 2 << (8 * cw)  # R > 2 n^2 for every n^2 of cw bytes
    assert lib.hea_ifma_digits(1248) == _native.ifma_digits(1248) == 0
    monkeypatch.setenv("HEA_CPU_IFMA", "0")
    assert _native.djn_engine(lib, 512) == "mpn"
    assert "HEA_CPU_IFMA" in _native.ifma_unavailable(lib, 512)
    pk, _ = keypair(256)
    djn = DjnKey.generate(pk)
    rs = _pack([5], pk.plaintext_width)
    with pytest.raises(_native.NativeUnavailable, match="HEA_CPU_IFMA"):
        _native.djn_encrypt(lib, None, rs, pk.n, djn.hs, djn.exponent_bits, 5, pk.plaintext_width,
                            pk.ciphertext_width, engine="ifma")
    with CpuBackend(workers=1, native=True) as be:
        assert be.describe()["djn_engine"] == "mpn (turned off by HEA_CPU_IFMA)"


def _djn_reference(ms, rs, pk, hs) -> bytes:
    n, n2, cw = pk.n, pk.nsquare, pk.ciphertext_width
    if ms is None:
        return _pack([gmpy2.powmod(hs, r, n2) for r in rs], cw)
    return _pack([(1 + m * n) * gmpy2.powmod(hs, r, n2) % n2 for m, r in zip(ms, rs)], cw)


@pytest.mark.parametrize("bits", [64, 256, 1024, 2048, 3072])
@pytest.mark.parametrize("window", [None, 5])
@pytest.mark.parametrize("count", [0, 1, 9, 40])
def test_djn_ifma_matches_gmpy2(ifma_lib, bits, window, count):
    pk, _ = keypair(bits)
    djn = DjnKey.generate(pk)
    n, pw, cw = pk.n, pk.plaintext_width, pk.ciphertext_width
    window = window or _native.djn_window(cw, djn.exponent_bits, "ifma")
    rs = ([0] + _edge_exponents(djn.exponent_bits, count))[:count]  # r = 0, 1, 2, all ones, ...
    ms = ([0, 1, n - 1, n - 12345] + _plaintexts(n, count))[:count]  # n - k: the encoding of -k
    got = _native.djn_encrypt(ifma_lib, _pack(ms, pw), _pack(rs, pw), n, djn.hs, djn.exponent_bits, window, pw, cw,
                              engine="ifma")
    assert got == _djn_reference(ms, rs, pk, djn.hs)
    obf = _native.djn_encrypt(ifma_lib, None, _pack(rs, pw), n, djn.hs, djn.exponent_bits, window, pw, cw,
                              engine="ifma")
    assert obf == _djn_reference(None, rs, pk, djn.hs)


@pytest.mark.parametrize("bits", [1024, 2048, 3072])
def test_djn_portable_engine_takes_the_same_edges(lib, bits):
    pk, _ = keypair(bits)
    djn = DjnKey.generate(pk)
    n, pw, cw = pk.n, pk.plaintext_width, pk.ciphertext_width
    rs = [0] + _edge_exponents(djn.exponent_bits, 8)
    ms = [0, 1, n - 1, n - 12345] + _plaintexts(n, 5)
    got = _native.djn_encrypt(lib, _pack(ms, pw), _pack(rs, pw), n, djn.hs, djn.exponent_bits, 8, pw, cw,
                              engine="mpn")
    assert got == _djn_reference(ms, rs, pk, djn.hs)


def test_djn_ifma_table_layout(ifma_lib):
    pk, _ = keypair(256)
    djn = DjnKey.generate(pk)
    cw = pk.ciphertext_width
    digits = _native.ifma_digits(cw)
    t = _native.djn_table_build(ifma_lib, pk.n, djn.hs, djn.exponent_bits, 5, cw, "ifma")
    assert t.shape == (-(-djn.exponent_bits // 5), 32, digits) and t.dtype == np.uint64
    assert t.ctypes.data % 64 == 0 and int(t.max()) < 1 << 52
    mont = 1 << (52 * digits)
    for k, d in [(0, 0), (0, 1), (1, 31), (t.shape[0] - 1, 17)]:
        entry = sum(int(x) << (52 * j) for j, x in enumerate(t[k, d]))
        assert entry == pow(djn.hs, d << (5 * k), pk.nsquare) * mont % pk.nsquare


def test_djn_ifma_window_stays_in_range_and_memory():
    for bits in (256, 1024, 2048, 3072, 4096):
        cw = 2 * (-(-bits // 32) * 4)
        w = _native.djn_window(cw, bits // 2, "ifma")
        assert 4 <= w <= _native.IFMA_WINDOW
        assert -(-(bits // 2) // w) * (1 << w) * _native.ifma_digits(cw) * 8 <= _native.DJN_TABLE_BYTES


def test_djn_ifma_refuses_bad_input_like_gmpy2(ifma_lib):
    pk, _ = keypair(256)
    djn = DjnKey.generate(pk, exponent_bits=64)
    n, pw, cw = pk.n, pk.plaintext_width, pk.ciphertext_width
    ms, rs = _pack([1, n], pw), _pack([3, 5], pw)
    assert "plaintext[1]" in _message(_native.djn_encrypt, ifma_lib, ms, rs, n, djn.hs, 64, 6, pw, cw, None, 0, "ifma")
    long_r = _pack([3, 1 << 70], pw)
    assert "exponent" in _message(_native.djn_encrypt, ifma_lib, None, long_r, n, djn.hs, 64, 6, pw, cw, None, 0,
                                  "ifma")


def test_backend_djn_engines_agree(monkeypatch):
    """The backend's IFMA choice (where the CPU has it) and the forced portable path give the same
    ciphertexts, in process and in the pool (which memory-maps each engine's own table file)."""
    pk, sk = keypair(2048)
    djn = DjnKey.generate(pk)
    ms = _plaintexts(pk.n, 11)
    outs = {}
    for switch in ("1", "0"):
        monkeypatch.setenv("HEA_CPU_IFMA", switch)
        with CpuBackend(workers=1, native=True) as one, \
                CpuBackend(workers=2, chunks_per_worker=8, native=True) as two:
            outs[switch] = [be.raw_encrypt(pk, ms, djn=djn, rng=random.Random(5)) for be in (one, two)]
            engine = one.describe()["djn_engine"]
            if switch == "0":
                assert engine == "mpn (turned off by HEA_CPU_IFMA)"
            else:
                assert engine == "ifma" if _cpu_has_ifma() else engine.startswith("mpn (")
    assert outs["1"][0] == outs["1"][1] == outs["0"][0] == outs["0"][1]
    assert CpuBackend(workers=1, native=False).raw_decrypt(sk, outs["1"][0]) == ms


def test_backend_djn_engine_choice(lib):
    pk, sk = keypair(1024)
    djn = DjnKey.generate(pk)
    ms = _plaintexts(pk.n, 5)
    with CpuBackend(workers=1, djn_engine="mpn") as be:
        assert be.describe()["djn_engine"] == "mpn (djn_engine='mpn')"
        assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms, djn=djn)) == ms
    for bad in ("avx", "gmpy2"):
        with pytest.raises(ValueError, match="djn_engine"):
            CpuBackend(workers=1, djn_engine=bad)
    with pytest.raises(ValueError, match="djn_engine"):
        CpuBackend(workers=1, native=False, djn_engine="mpn")
    with CpuBackend(workers=1, djn_engine="ifma") as be:
        if _native.ifma_unavailable(lib, pk.ciphertext_width):
            assert be.describe()["djn_engine"].startswith("ifma required, unavailable")
            with pytest.raises(_native.NativeUnavailable):
                be.raw_encrypt(pk, ms, djn=djn)
        else:
            assert be.describe()["djn_engine"] == "ifma"
            assert be.raw_decrypt(sk, be.raw_encrypt(pk, ms, djn=djn)) == ms


def test_ifma_kernels_branch_only_on_their_loop_counters(lib):
    """The compiled IFMA multiplication and selection (real build): no calls, and every
    conditional branch jumps backwards (a loop's back edge; the loops count digits and table
    entries, see djn_ifma.c). A structural check of the machine code that valgrind cannot run."""
    objdump = shutil.which("objdump")
    if not objdump:
        pytest.skip("needs objdump (binutils)")
    asm = subprocess.run([objdump, "-d", "--no-show-raw-insn", lib.path], check=True, capture_output=True,
                         text=True).stdout
    if "<amm_10>:" not in asm:  # built without the IFMA path (not x86-64 with GCC or clang): nothing to check
        assert not lib.hea_ifma_available()
        pytest.skip("this build has no IFMA kernels")
    checked = 0
    for name, body in re.findall(r"<((?:amm|select)_\d+)>:\n(.*?)(?:\n\n|\Z)", asm, re.S):
        for line in body.splitlines():
            fields = line.split("\t")
            if len(fields) < 2:
                continue
            op = fields[1].split()[0] if fields[1].split() else ""
            assert not op.startswith("call"), (name, line)
            if op.startswith("j") and op != "jmp":
                here, target = int(fields[0].strip().rstrip(":"), 16), int(fields[1].split()[1], 16)
                assert target < here, (name, line)
        checked += 1
    assert checked == 2 * 24


# -- the fallback: where the engine cannot be built, gmpy2 runs and describe() says why ---------
@pytest.fixture
def no_engine(tmp_path, monkeypatch):
    """No cached library and no compiler: the build is impossible."""
    monkeypatch.setenv("HEA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(_native, "_libs", {})
    monkeypatch.setattr(_native, "_failed", {})


def test_fallback_without_a_compiler(no_engine):
    path, why = _native.probe()
    assert path is None and "no-such-compiler" in why
    assert _native.probe() == (None, why)  # tried once per process
    pk, sk = keypair(1024)
    djn = DjnKey.generate(pk)
    ms = _plaintexts(pk.n, 6)
    with CpuBackend(workers=1) as be:
        d = be.describe()
        assert d["native"] is None and "no-such-compiler" in d["native_unavailable"]
        cs = be.raw_encrypt(pk, ms, djn=djn)
        assert be.raw_decrypt(sk, cs) == ms
        assert be.raw_decrypt(sk, [be.raw_sum(pk, cs)]) == [sum(ms) % pk.n]
    with pytest.raises(_native.NativeUnavailable, match="no-such-compiler"):
        CpuBackend(workers=1, native=True)


def test_fallback_when_the_build_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("HEA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_native, "_libs", {})
    monkeypatch.setattr(_native, "_failed", {})
    broken = tmp_path / "gmp_batch.c"
    broken.write_text("#include <no_such_header.h>\n")
    monkeypatch.setattr(_native, "SOURCE", broken)
    path, why = _native.probe()
    assert path is None and "failed" in why and "no_such_header" in why


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("HEA_CPU_NATIVE", "0")
    monkeypatch.setattr(_native, "_libs", {})
    monkeypatch.setattr(_native, "_failed", {})
    with CpuBackend(workers=1) as be:
        assert be.describe()["native"] is None
        assert "HEA_CPU_NATIVE" in be.describe()["native_unavailable"]


# -- constant time: the DJN path under valgrind memcheck with the exponents marked secret ------
def _ct_harness(tmp_path, *defines):
    valgrind, cc = shutil.which("valgrind"), shutil.which("cc") or shutil.which("gcc")
    if not valgrind or not cc or not os.path.exists("/usr/include/valgrind/memcheck.h"):
        pytest.skip("needs valgrind and its headers (apt-get install valgrind) and a C compiler")
    exe = tmp_path / "ct_harness"
    flags = [f for f in _native.CFLAGS if f not in ("-shared", "-fPIC")]  # the engine's own optimisation
    subprocess.run([cc, *flags, *defines, "-o", str(exe), str(ROOT / "tests" / "ct_harness.c"), str(_native.SOURCE),
                    *_native.LIBS], check=True, capture_output=True, text=True)
    return valgrind, exe


def _ct_input(tmp_path, bits: int, window: int, count: int):
    pk, _ = keypair(bits)
    djn = DjnKey.generate(pk)
    pw, cw = pk.plaintext_width, pk.ciphertext_width
    rs, ms = _edge_exponents(djn.exponent_bits, count), _plaintexts(pk.n, count)
    path = tmp_path / "input.bin"
    header = np.array([pw, cw, djn.exponent_bits, window, count], dtype="<u8").tobytes()
    path.write_bytes(header + _pack([pk.n], pw) + _pack([djn.hs], cw) + _pack(rs, pw) + _pack(ms, pw))
    want = ops.encrypt_djn_powmod_sec(_pack(ms, pw), _pack(rs, pw), pk.n, djn.hs, pw, cw)
    return path, want


def _memcheck(valgrind, exe, mode, path):
    return subprocess.run([valgrind, "--tool=memcheck", "--error-exitcode=99", "--quiet", str(exe), mode, str(path)],
                          capture_output=True, timeout=600)


@pytest.mark.parametrize("window", [5, 8])
def test_djn_has_no_secret_dependent_branch_or_address(tmp_path, window):
    valgrind, exe = _ct_harness(tmp_path)
    path, want = _ct_input(tmp_path, 256, window, 3)
    run = _memcheck(valgrind, exe, "encrypt", path)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    assert run.stdout == want  # and the instrumented run computed the right ciphertexts


def test_the_constant_time_check_catches_a_secret_index(tmp_path):
    valgrind, exe = _ct_harness(tmp_path)
    path, _ = _ct_input(tmp_path, 256, 5, 1)
    run = _memcheck(valgrind, exe, "leak", path)
    assert run.returncode == 99 and b"uninitialised" in run.stderr


def test_djn_ifma_algorithm_has_no_secret_dependent_branch_or_address(tmp_path, window=6):
    """The IFMA engine's source built with HEA_IFMA_EMULATE (valgrind cannot decode AVX-512): the
    same control flow and addresses, each vector operation a branch-free C loop."""
    valgrind, exe = _ct_harness(tmp_path, "-DHEA_IFMA_EMULATE")
    path, want = _ct_input(tmp_path, 256, window, 3)
    run = _memcheck(valgrind, exe, "encrypt52", path)
    assert run.returncode == 0, run.stderr.decode()[-3000:]
    assert run.stdout == want
