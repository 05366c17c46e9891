"""The native engine's CPython extension (gmp_pyints.c): add, add_plain and sum on lists of ints,
bit-exact against gmpy2, the same errors as the packed path, and the fallback where it cannot build."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import sysconfig
import threading
from fractions import Fraction
from pathlib import Path

import gmpy2
import numpy as np
import pytest

from accel import CpuBackend, PublicKey
from accel.backends import _native, _native_ints

from .conftest import keypair

ROOT = Path(__file__).resolve().parent.parent
#: key sizes, and odd ones whose widths are not whole 64-bit limbs (n^2 of 2000 bits: 252 bytes)
BITS = [1024, 2048, 3072, 4096, 1000, 2047]


def _random_key(bits: int) -> PublicKey:
    """A public key for arithmetic only: odd n of exactly ``bits`` bits (no factors needed)."""
    return PublicKey(secrets.randbits(bits - 2) | (1 << (bits - 1)) | 1)


def _ciphertexts(n2: int, count: int) -> list[int]:
    edges = [1, n2 - 1, 2, n2 - 2, (1 << 64) - 1, 1 << 64]
    return (edges + [secrets.randbelow(n2 - 1) + 1 for _ in range(count)])[:count]


def _plaintexts(n: int, count: int) -> list[int]:
    edges = [0, 1, n - 1, (1 << 63) - 1, 1 << 64]
    return (edges + [secrets.randbelow(n) for _ in range(count)])[:count]


def _product(cs, n2):
    acc = gmpy2.mpz(1)
    for c in cs:
        acc = gmpy2.f_mod(acc * c, n2)
    return int(acc)


@pytest.fixture(scope="module")
def ext():
    mod, why = _native_ints.probe()
    assert mod is not None, f"the int extension should build here (gcc, libgmp, Python headers): {why}"
    return mod


@pytest.fixture(scope="module")
def backends(ext):
    """(extension, ctypes engine on packed blobs, gmpy2 only), all in process."""
    with_ext = CpuBackend(workers=1, native=True)
    packed = CpuBackend(workers=1, native=True, native_ints=False)  # the ctypes path: lists packed to blobs
    plain = CpuBackend(workers=1, native=False)
    assert with_ext.native_ints is ext
    yield with_ext, packed, plain
    for be in (with_ext, packed, plain):
        be.close()


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("count", [0, 1, 2, 7, 33])
def test_matches_gmpy2(ext, bits, count):
    pk = _random_key(bits)
    n, n2, pw, cw = pk.n, pk.nsquare, pk.plaintext_width, pk.ciphertext_width
    a, b, m = _ciphertexts(n2, count), _ciphertexts(n2, count)[::-1], _plaintexts(n, count)
    got = ext.add(a, b, n2, cw)
    assert got == [int(gmpy2.f_mod(gmpy2.mpz(x) * y, n2)) for x, y in zip(a, b)]
    assert all(type(v) is int for v in got)
    assert ext.add_plain(a, m, n, n2, pw, cw) == [int(gmpy2.f_mod(gmpy2.mpz(c) * (1 + v * n), n2))
                                                  for c, v in zip(a, m)]
    assert ext.product(a, n2, cw) == _product(a, n2)


@pytest.mark.parametrize("bits", [1024, 2048, 4096])  # Montgomery sum to 64 limbs, division above
def test_long_sums_match_gmpy2(ext, bits):
    pk = _random_key(bits)
    cs = _ciphertexts(pk.nsquare, 1500)
    assert ext.product(cs, pk.nsquare, pk.ciphertext_width) == _product(cs, pk.nsquare)


def test_conversion_at_every_length_and_block_boundary(ext):
    """Digits to limbs and back (960-bit blocks, then one digit at a time) for every length up to
    a 4096-bit key's ciphertexts, and refusal of what does not fit the width."""
    for k in list(range(0, 8200, 13)) + [960 * j + d for j in range(1, 9) for d in (-31, -30, -1, 0, 1, 30)]:
        for v in (2**k - 1, 2**k, 2**k + 1, secrets.randbits(k + 1) | 1):
            assert ext.roundtrip(v, 1024) == v
            assert ext.roundtrip(gmpy2.mpz(v), 1024) == v
    assert ext.roundtrip(2**8192, 1024) is None and ext.roundtrip(2**8191, 1024) == 2**8191
    assert ext.roundtrip(2**64, 8) is None and ext.roundtrip(2**64 - 1, 8) == 2**64 - 1


def test_results_are_normal_ints(ext):
    pk = _random_key(1024)
    n2, cw = pk.nsquare, pk.ciphertext_width
    inv = pow(2, -1, n2)  # n is odd
    out = ext.add([2, 1, 2**64 + 1], [inv, 1, 1], n2, cw)  # 1, 1 and a two-limb value
    assert out == [1, 1, 2**64 + 1]
    assert [v.bit_length() for v in out] == [1, 1, 65] and hash(out[2]) == hash(2**64 + 1)
    assert out[0] + 0 == 1 and out[2] - (2**64 + 1) == 0 and str(out[2]) == str(2**64 + 1)


@pytest.mark.parametrize("bits", [1024, 2048, 3072])
@pytest.mark.parametrize("count", [0, 1, 9, 64])
def test_the_backend_takes_lists_through_the_extension(backends, bits, count):
    pk = _random_key(bits)
    n, n2 = pk.n, pk.nsquare
    a, b, m = _ciphertexts(n2, count), _ciphertexts(n2, count)[::-1], _plaintexts(n, count)
    with_ext, packed, plain = backends
    for be in (with_ext, packed, plain):
        assert be.raw_add(pk, a, b) == [x * y % n2 for x, y in zip(a, b)]
        assert be.raw_add_plain(pk, a, m) == [c * (1 + v * n) % n2 for c, v in zip(a, m)]
        assert be.raw_sum(pk, a) == _product(a, n2)
    # tuples and gmpy2 mpz elements too, and mixed
    mixed = [gmpy2.mpz(x) if i % 2 else x for i, x in enumerate(a)]
    assert with_ext.raw_add(pk, tuple(mixed), b) == packed.raw_add(pk, a, b)
    assert with_ext.raw_add_plain(pk, mixed, [gmpy2.mpz(v) for v in m]) == packed.raw_add_plain(pk, a, m)
    assert with_ext.raw_sum(pk, tuple(mixed)) == packed.raw_sum(pk, a)


def test_results_decrypt(backends):
    pk, sk = keypair(1024)
    be = backends[0]
    ms, ks = _plaintexts(pk.n, 9), _plaintexts(pk.n, 9)[::-1]
    cs, cs2 = be.raw_encrypt(pk, ms, private_key=sk), be.raw_encrypt(pk, ks, private_key=sk)
    assert be.raw_decrypt(sk, be.raw_add(pk, cs, cs2)) == [(a + b) % pk.n for a, b in zip(ms, ks)]
    assert be.raw_decrypt(sk, be.raw_add_plain(pk, cs, ks)) == [(a + b) % pk.n for a, b in zip(ms, ks)]
    assert be.raw_decrypt(sk, [be.raw_sum(pk, cs)]) == [sum(ms) % pk.n]


def test_elements_it_does_not_take_go_the_general_way(ext, backends):
    """int subclasses and numpy ints are valid input: the extension declines them (None) and the
    packed path computes the same result."""
    pk = _random_key(1024)
    n2, cw = pk.nsquare, pk.ciphertext_width

    class MyInt(int):
        pass

    for odd in (MyInt(5), np.int64(5), np.uint64(5)):
        assert ext.add([3, odd], [2, 7], n2, cw) is None
        assert backends[0].raw_add(pk, [3, odd], [2, 7]) == [6, 35]
        assert backends[0].raw_sum(pk, [3, odd]) == 15


def _error(fn, *args):
    with pytest.raises((TypeError, ValueError)) as e:
        fn(*args)
    return type(e.value), str(e.value)


@pytest.mark.parametrize("bad", ["zero", "n2", "wide", "negative", "str", "float", "bool", "none", "fraction"])
def test_bad_elements_fail_like_the_packed_path(ext, backends, bad):
    pk = _random_key(1024)
    n, n2, cw = pk.n, pk.nsquare, pk.ciphertext_width
    value = {"zero": 0, "n2": n2, "wide": 1 << (8 * cw + 5), "negative": -3, "str": "7", "float": 7.0,
             "bool": True, "none": None, "fraction": Fraction(7, 1)}[bad]
    good, broken, ms = [5, 7, 11], [5, 7, value], [1, 2, 3]
    with_ext, packed, _ = backends
    if bad not in ("str", "float", "none", "fraction"):  # what the C code sees
        assert ext.add(good, broken, n2, cw) is None and ext.product(broken, n2, cw) is None
    for args in ((pk, good, broken), (pk, broken, good)):
        assert _error(with_ext.raw_add, *args) == _error(packed.raw_add, *args)
    assert _error(with_ext.raw_add_plain, pk, broken, ms) == _error(packed.raw_add_plain, pk, broken, ms)
    assert _error(with_ext.raw_sum, pk, broken) == _error(packed.raw_sum, pk, broken)
    kind, message = _error(with_ext.raw_add, pk, good, broken)
    assert "ciphertext b[2]" in message  # says which operand and element


@pytest.mark.parametrize("bad", [None, "n", "negative", "wide", "str"])
def test_bad_plaintexts_fail_like_the_packed_path(backends, bad):
    pk = _random_key(1024)
    with_ext, packed, _ = backends
    cs = [5, 7, 11]
    ms = [1, 2, {None: 3, "n": pk.n, "negative": -1, "wide": 1 << 2000, "str": "x"}[bad]]
    if bad is None:
        assert with_ext.raw_add_plain(pk, cs, ms) == packed.raw_add_plain(pk, cs, ms)
        return
    kind, message = _error(with_ext.raw_add_plain, pk, cs, ms)
    assert (kind, message) == _error(packed.raw_add_plain, pk, cs, ms)
    assert "plaintext[2]" in message


def test_length_mismatch_and_closed(ext):
    pk = _random_key(1024)
    be = CpuBackend(workers=1)
    with pytest.raises(ValueError, match="length mismatch"):
        be.raw_add(pk, [1, 2], [3])
    with pytest.raises(ValueError, match="length mismatch"):
        be.raw_add_plain(pk, [1, 2], [3])
    assert ext.add([1, 2], [3], pk.nsquare, pk.ciphertext_width) is None  # never reads past the shorter
    be.close()
    with pytest.raises(RuntimeError, match="closed"):
        be.raw_add(pk, [1], [1])


def test_other_threads_run_during_a_call(ext):
    """The GMP loop runs with the GIL released: a Python thread makes progress meanwhile."""
    pk = _random_key(4096)
    cs = _ciphertexts(pk.nsquare, 3000)
    ticks = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(1)

    for _ in range(3):  # a few tries: the spinner may not be scheduled during a short call
        ticks.clear()
        t = threading.Thread(target=spin)
        stop.clear()
        t.start()
        while not ticks:
            pass
        before = len(ticks)
        ext.add(cs, cs, pk.nsquare, pk.ciphertext_width)
        during = len(ticks) - before
        stop.set()
        t.join()
        if during > 100:
            break
    assert during > 100, f"the spinner ran {during} times during the call"


def test_describe_names_the_extension(backends):
    with_ext, packed, plain = backends
    d = with_ext.describe()
    assert d["native_ints"] and d["native_ints"].endswith(sysconfig.get_config_var("EXT_SUFFIX"))
    assert d["native_ints_unavailable"] is None
    assert plain.describe()["native_ints"] is None and "native=False" in plain.describe()["native_ints_unavailable"]
    assert packed.describe()["native"] and "native_ints=False" in packed.describe()["native_ints_unavailable"]


def test_the_montgomery_sum_falls_back_to_division_for_an_even_modulus(ext):
    from accel.backends import _gmp_ops as ops

    lib = _native.load()
    for mod in ((1 << 1023) + 2, (1 << 2047) | 1, secrets.randbits(4094) | (1 << 4095) | 1):  # even, 32, 64+ limbs
        width = -(-mod.bit_length() // 32) * 4
        cs = [secrets.randbelow(mod - 1) + 1 for _ in range(17)]
        blob = b"".join(c.to_bytes(width, "little") for c in cs)
        assert _native.product(lib, blob, mod, width) == ops.product(blob, mod, width)
        assert ext.product(cs, mod, width) == _product(cs, mod)


# -- the fallback: the ctypes engine where the extension cannot be built -----------------------
@pytest.fixture
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("HEA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_native_ints, "_modules", {})
    monkeypatch.setattr(_native_ints, "_failed", {})
    return tmp_path


def _still_computes(be: CpuBackend) -> None:
    pk, sk = keypair(1024)
    ms = _plaintexts(pk.n, 5)
    cs = be.raw_encrypt(pk, ms, private_key=sk)
    assert be.raw_decrypt(sk, be.raw_add(pk, cs, cs)) == [2 * m % pk.n for m in ms]
    assert be.raw_decrypt(sk, [be.raw_sum(pk, cs)]) == [sum(ms) % pk.n]


def test_fallback_without_python_headers(fresh, monkeypatch):
    real = sysconfig.get_paths()
    monkeypatch.setattr(sysconfig, "get_paths", lambda *a, **k: {**real, "include": str(fresh / "no-headers")})
    mod, why = _native_ints.probe()
    assert mod is None and "no Python headers" in why
    assert _native_ints.probe() == (None, why)  # tried once per process
    with CpuBackend(workers=1) as be:
        d = be.describe()
        assert d["native"] and d["native_ints"] is None and "no Python headers" in d["native_ints_unavailable"]
        _still_computes(be)


def test_fallback_without_a_compiler(fresh, monkeypatch):
    monkeypatch.setenv("CC", str(fresh / "no-such-compiler"))
    mod, why = _native_ints.probe()
    assert mod is None and "no-such-compiler" in why


def test_fallback_when_the_build_fails(fresh, monkeypatch):
    broken = fresh / "gmp_pyints.c"
    broken.write_text("#include <Python.h>\n#error deliberately broken\n")
    monkeypatch.setattr(_native_ints, "SOURCE", broken)
    mod, why = _native_ints.probe()
    assert mod is None and "failed" in why and "deliberately broken" in why
    with CpuBackend(workers=1) as be:
        assert be.describe()["native_ints"] is None
        _still_computes(be)


def test_a_module_that_misreads_ints_is_refused(fresh, monkeypatch):
    """The load-time check on known values: a module whose conversion disagrees is not used."""
    class Wrong:
        limb_bits = 64

        @staticmethod
        def roundtrip(x, width):
            return x + 1

    monkeypatch.setattr(_native_ints, "_import", lambda path: Wrong)
    monkeypatch.setattr(_native_ints, "build", lambda: Path("/nonexistent.so"))
    mod, why = _native_ints.probe()
    assert mod is None and "misreads" in why


def test_turned_off_by_the_environment(fresh, monkeypatch):
    monkeypatch.setenv("HEA_CPU_NATIVE", "0")
    mod, why = _native_ints.probe()
    assert mod is None and "HEA_CPU_NATIVE" in why


# -- other Pythons: the digit layouts of 3.10-3.13 and the public-API build ---------------------
_CHECK = r"""
import importlib.machinery, importlib.util, secrets, sys
path = sys.argv[1]
loader = importlib.machinery.ExtensionFileLoader("_hea_pyints", path)
spec = importlib.util.spec_from_file_location("_hea_pyints", path, loader=loader)
m = importlib.util.module_from_spec(spec); loader.exec_module(m)
for v in [0, 1, 2**30 - 1, 2**30, 2**64 - 1, 2**64, 3**500, 2**2047 - 1]:
    assert m.roundtrip(v, 512) == v, v
assert m.roundtrip(-1, 64) is None and m.roundtrip(2**600, 64) is None
n = secrets.randbits(1022) | (1 << 1023) | 1; n2 = n * n
a = [secrets.randbelow(n2 - 1) + 1 for _ in range(50)]; b = a[::-1]; ms = [secrets.randbelow(n) for _ in a]
assert m.add(a, b, n2, 256) == [x * y % n2 for x, y in zip(a, b)]
assert m.add_plain(a, ms, n, n2, 128, 256) == [c * (1 + v * n) % n2 for c, v in zip(a, ms)]
p = 1
for x in a: p = p * x % n2
assert m.product(a, n2, 256) == p
print("ok", m.digit_layout)
"""


def _interpreters() -> list[str]:
    """python3.10-3.13 on PATH, and those pyenv installed (its shims on PATH may not run them)."""
    found = []
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    for v in ("3.10", "3.11", "3.12", "3.13"):
        exe = shutil.which(f"python{v}")
        if exe:
            found.append(exe)
        found += [str(p) for p in sorted(pyenv.glob(f"{v}*/bin/python{v}"))]
    return found


@pytest.mark.parametrize("portable", [False, True])
def test_other_pythons_build_and_agree(tmp_path, portable):
    """Every python3.10-3.13 on PATH: the extension builds against its headers and computes right
    (portable: the PyLong_*NativeBytes build, 3.13+ only). Runs with the interpreters found; the
    current one is always among them."""
    cc = shutil.which("cc") or shutil.which("gcc")
    tried, seen = 0, set()
    for exe in [sys.executable, *_interpreters()]:
        info = subprocess.run([exe, "-c", "import sys, sysconfig, importlib.machinery as m; "
                               "print(sysconfig.get_paths()['include']); print(m.EXTENSION_SUFFIXES[0]); "
                               "print(sys.version_info[:2] >= (3, 13)); print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60)
        if info.returncode:
            continue
        include, suffix, new, version = info.stdout.split()
        if version in seen or not os.path.exists(os.path.join(include, "Python.h")) or (portable and new != "True"):
            continue
        out = tmp_path / f"_hea_pyints-{tried}{suffix}"
        flags = [*_native.CFLAGS, f"-I{include}"] + (["-DHEA_PORTABLE_LONGS"] if portable else [])
        subprocess.run([cc, *flags, "-o", str(out), str(_native_ints.SOURCE), str(_native.SOURCE), *_native.LIBS],
                       check=True, capture_output=True, text=True)
        run = subprocess.run([exe, "-c", _CHECK, str(out)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0 and run.stdout.split() == ["ok", "0" if portable else "1"], (exe, run.stderr)
        tried += 1
        seen.add(version)
    if portable and not tried:
        pytest.skip("no Python 3.13+ with headers on PATH for the portable build")
    assert tried >= 1
