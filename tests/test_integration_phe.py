"""accel.integrations.phe: conversions, batch helpers on phe objects (checked against phe's own
per-value arithmetic, i.e. gmpy2 underneath), the engine swap, and phe's own test suite run
with our engine underneath (in a subprocess, as its README command does)."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

paillier = pytest.importorskip("phe.paillier")

from accel.integrations import phe as hphe  # noqa: E402


@pytest.fixture(scope="module")
def phe_keys(key1024):
    pk, sk = key1024
    pub = paillier.PaillierPublicKey(pk.n)
    return pub, paillier.PaillierPrivateKey(pub, sk.p, sk.q)


def _values(rng, n):
    edges = [0, 1, -1, 0.0, -0.5, 2**60, -(2**60), 1e-30, 3.25e12]
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-8, 9, n)).tolist()
    return (edges + x)[:n]


def test_keys_convert_both_ways_and_cache_weakly(phe_keys):
    pub, priv = phe_keys
    pk, sk = hphe.public_key_from_phe(pub), hphe.private_key_from_phe(priv)
    assert pk.n == pub.n and {sk.p, sk.q} == {priv.p, priv.q}
    assert hphe.private_key_from_phe(priv) is sk
    assert hphe.public_key_to_phe(pk) == pub and hphe.private_key_to_phe(sk) == priv
    # nothing of ours is attached to phe's objects: they pickle as stock phe keys
    assert b"accel" not in pickle.dumps(priv) and b"accel" not in pickle.dumps(pub)
    with pytest.raises(TypeError):
        hphe.public_key_from_phe(pk)
    with pytest.raises(TypeError):
        hphe.private_key_from_phe(sk)


@pytest.mark.parametrize("n", [0, 1, 7, 33])
def test_encrypt_gives_phe_numbers_phe_decrypts(inline_backend, phe_keys, n):
    pub, priv = phe_keys
    vals = _values(np.random.default_rng(), n)
    out = hphe.encrypt(pub, vals, backend=inline_backend)
    assert len(out) == n
    assert all(type(x) is paillier.EncryptedNumber and x.public_key is pub for x in out)
    assert [x.exponent for x in out] == [pub.encrypt(v).exponent for v in vals]
    assert [priv.decrypt(x) for x in out] == [priv.decrypt(pub.encrypt(v)) for v in vals]
    # fresh obfuscation each, and phe does not obfuscate them again
    assert len({x.ciphertext() for x in hphe.encrypt(pub, [5] * 10, backend=inline_backend)}) == 10


def test_encrypt_precision_matches_phe(inline_backend, phe_keys):
    pub, priv = phe_keys
    vals = [0.123456789, -7.5, 100]
    out = hphe.encrypt(pub, vals, precision=1e-3, backend=inline_backend)
    assert [x.exponent for x in out] == [pub.encrypt(v, precision=1e-3).exponent for v in vals]
    assert [priv.decrypt(x) for x in out] == [priv.decrypt(pub.encrypt(v, precision=1e-3)) for v in vals]


def test_decrypt_reads_phe_ciphertexts_with_phes_types(inline_backend, phe_keys):
    pub, priv = phe_keys
    vals = _values(np.random.default_rng(), 25)
    theirs = [pub.encrypt(v) for v in vals]
    got = hphe.decrypt(priv, theirs, backend=inline_backend)
    want = [priv.decrypt(t) for t in theirs]
    assert got == want and [type(g) for g in got] == [type(w) for w in want]
    assert hphe.decrypt(priv, [], backend=inline_backend) == []
    other = paillier.generate_paillier_keypair(n_length=512)[0]
    with pytest.raises(ValueError):
        hphe.decrypt(priv, [other.encrypt(1)], backend=inline_backend)


def test_add_mul_sum_dot_match_phe(inline_backend, phe_keys):
    pub, priv = phe_keys
    rng = np.random.default_rng()
    a_vals, b_vals = _values(rng, 12), (rng.standard_normal(12) * 1e3).tolist()
    a = [pub.encrypt(v) for v in a_vals]   # misaligned exponents throughout
    b = [pub.encrypt(v) for v in b_vals]
    dec = lambda xs: [priv.decrypt(x) for x in xs]  # noqa: E731

    assert dec(hphe.add(a, b, backend=inline_backend)) == dec([x + y for x, y in zip(a, b)])
    assert dec(hphe.add(a, b_vals, backend=inline_backend)) == dec([x + y for x, y in zip(a, b_vals)])
    assert dec(hphe.add(a, 3, backend=inline_backend)) == dec([x + 3 for x in a])
    ks = [2, -3, 0, 1, -1, 7, 0.5, -0.25, 10**6, 3, 4, 5]
    assert dec(hphe.mul(a, ks, backend=inline_backend)) == dec([x * k for x, k in zip(a, ks)])
    assert dec(hphe.mul(a, -2, backend=inline_backend)) == dec([x * -2 for x in a])
    with pytest.warns(DeprecationWarning, match="use mul"):  # the old name, until it goes
        assert dec(hphe.multiply(a, -2, backend=inline_backend)) == dec([x * -2 for x in a])
    total = hphe.sum_numbers(b, backend=inline_backend)
    assert priv.decrypt(total) == pytest.approx(priv.decrypt(sum(b[1:], b[0])), rel=1e-12)

    X = rng.standard_normal((12, 4))
    got = dec(hphe.dot(b, X, backend=inline_backend))
    want = [priv.decrypt(sum((b[i] * float(X[i, j]) for i in range(1, 12)), b[0] * float(X[0, j])))
            for j in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(got, np.array(b_vals) @ X, rtol=1e-9)
    with pytest.raises(ValueError):
        hphe.to_vector([])


def test_vector_round_trip_keeps_ciphertexts(inline_backend, phe_keys):
    pub, priv = phe_keys
    theirs = [pub.encrypt(v) for v in (1, -2.5, 3e-9)]
    vec = hphe.to_vector(theirs, backend=inline_backend)
    back = hphe.from_vector(vec)
    assert [x.ciphertext(False) for x in back] == [t.ciphertext(False) for t in theirs]
    assert [x.exponent for x in back] == [t.exponent for t in theirs]
    with pytest.raises(TypeError):
        hphe.to_vector([theirs[0], 5])


def test_install_routes_phe_arithmetic_and_uninstall_restores(inline_backend, phe_keys):
    pub, priv = phe_keys
    stock = paillier.EncryptedNumber._raw_add
    engine = hphe.install(inline_backend)
    try:
        assert hphe.installed() is engine
        x, y = pub.encrypt(1.5), pub.encrypt(-4)
        z = (x + y) * 3 + 2
        assert priv.decrypt(z) == (1.5 - 4) * 3 + 2
        # a value encrypted by the swapped engine reads back under stock phe too
        for k in ("raw_encrypt", "raw_add", "raw_mul", "raw_decrypt"):
            assert engine.calls[k] > 0, k
    finally:
        hphe.uninstall()
    assert hphe.installed() is None and paillier.EncryptedNumber._raw_add is stock
    assert priv.decrypt(z) == (1.5 - 4) * 3 + 2


def test_phe_own_test_suite_passes_on_our_engine(tmp_path):
    """phe's 234 shipped tests, unchanged, with every powmod/encrypt/decrypt/add/mul through our
    CPU backend (the plugin fails the run if any patched entry point saw no calls)."""
    pytest.importorskip("click")  # phe.tests imports phe's CLI
    env = dict(os.environ, HEA_PHE_BACKEND="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "accel.integrations.phe_pytest", "--pyargs",
         "phe.tests", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail, tail
    passed = int(tail.split(" passed")[0].split()[-1])
    assert passed >= 234, tail
    assert "he-accel cpu backend under phe:" in tail, tail


def test_helpers_and_install_without_a_backend_use_the_librarys_default(monkeypatch, inline_backend, phe_keys):
    """One default backend: backend=None means accel.backends.default_backend(), as for an
    EncryptedVector given none ("auto" until set_default_backend chooses another)."""
    import accel.backends as backends

    pub, priv = phe_keys
    monkeypatch.setattr(backends, "_default", "auto")
    assert hphe.to_vector([pub.encrypt(1)]).backend is backends.get_backend("auto")
    backends.set_default_backend(inline_backend)
    numbers = hphe.encrypt(pub, [1.5, -2, 0])
    vec = hphe.to_vector(numbers)
    assert vec.backend is inline_backend
    assert [priv.decrypt(x) for x in hphe.from_vector(vec.sum())] == [-0.5]
    assert hphe.decrypt(priv, numbers) == [1.5, -2, 0]
    engine = hphe.install()
    try:
        assert engine.backend is inline_backend
    finally:
        hphe.uninstall()
