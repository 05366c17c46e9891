"""The FATE 1.x plugin against a stand-in ``federatedml`` (tests/fate1_standin, written from
FATE's documented semantics): batched entry points give what the stock per-value ones give,
as FATE's own wire objects, and stock and patched parties read each other's values."""
from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "fate1_standin"))

from federatedml.optim.gradient.hetero_linear_model_gradient import HeteroGradientBase  # noqa: E402
from federatedml.secureprotol import fate_paillier  # noqa: E402
from federatedml.secureprotol.encrypt import PaillierEncrypt  # noqa: E402
from federatedml.secureprotol.fixedpoint import FixedPointNumber  # noqa: E402
from table import Table  # noqa: E402

from accel.integrations import fate1  # noqa: E402

PEN = fate_paillier.PaillierEncryptedNumber


@pytest.fixture(scope="module")
def encrypters(inline_backend):
    """Two encrypters sharing one key: ``stock`` is used with the plugin uninstalled."""
    stock = PaillierEncrypt()
    stock.generate_key(1024)
    patched = PaillierEncrypt()
    patched.set_public_key(stock.public_key)
    patched.set_privacy_key(stock.privacy_key)
    return stock, patched


@pytest.fixture
def plugin(inline_backend):
    fate1.install(inline_backend)
    yield
    fate1.uninstall()


def _values(rng, n):
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-6, 7, n)
    return [0.0, 1, -1, 0.5, 2**40, -3] + x.tolist()[: max(0, n - 6)]


def _stock_decrypt(enc, xs):
    return [enc.privacy_key.decrypt(x) for x in xs]


def test_encrypt_list_returns_fates_objects_with_fates_encoding(encrypters, plugin):
    stock, patched = encrypters
    rng = np.random.default_rng()
    vals = _values(rng, 40)
    out = patched.encrypt_list(vals)
    assert all(type(x) is PEN and type(x.ciphertext(False)) is int for x in out)
    assert all(x._PaillierEncryptedNumber__is_obfuscator for x in out)
    n, max_int = stock.public_key.n, stock.public_key.max_int
    assert [x.exponent for x in out] == [FixedPointNumber.encode(v, n, max_int).exponent for v in vals]
    # FATE 1.x keeps floor((53 - e2) / 4) hex digits, so decoding is lossy for some floats:
    # the plugin must lose exactly what the stock path loses.
    assert _stock_decrypt(stock, out) == _stock_decrypt(stock, [stock.public_key.encrypt(v) for v in vals])
    # the pickled object is FATE's wire layout, nothing of ours inside
    blob = pickle.dumps(out[0])
    assert b"accel" not in blob
    assert set(pickle.loads(blob).__dict__) == set(stock.public_key.encrypt(1.0).__dict__)
    # fresh randomness per value
    assert len({x.ciphertext(False) for x in patched.encrypt_list([7] * 20)}) == 20


def test_decrypt_list_reads_stock_ciphertexts_with_fates_types(encrypters, plugin):
    stock, patched = encrypters
    vals = [3, -4, 2.5, -1e-9, 0, 1e15]
    theirs = [stock.public_key.encrypt(v) for v in vals]
    got = patched.decrypt_list(theirs)
    assert got == _stock_decrypt(stock, theirs)
    assert got[:3] + got[4:] == vals[:3] + vals[4:]  # -1e-9 is not exact in 32 hex digits
    assert [type(g) for g in got] == [type(stock.privacy_key.decrypt(t)) for t in theirs]


def test_arithmetic_on_plugin_values_is_stock_arithmetic(encrypters, plugin):
    stock, patched = encrypters
    a, b = patched.encrypt_list([1.5, -2])
    assert stock.privacy_key.decrypt(a + b) == -0.5
    assert stock.privacy_key.decrypt(a * -0.25 + 1) == pytest.approx(0.625, abs=0)


def test_recursive_structures_keep_their_shape(encrypters, plugin):
    stock, patched = encrypters
    X = np.array([[1.0, -2.0, 3.5], [0.25, 4.0, -8.0]])
    enc = patched.recursive_encrypt(X)
    assert isinstance(enc, np.ndarray) and enc.shape == (2, 3) and enc.dtype == object
    np.testing.assert_array_equal(patched.recursive_decrypt(enc), X)
    nested = [1, [2.5, (3, -4)], np.array([5.0, 6.0])]
    out = patched.recursive_decrypt(patched.recursive_encrypt(nested))
    assert out[0] == 1 and out[1][0] == 2.5 and out[1][1] == (3, -4)
    np.testing.assert_array_equal(out[2], [5.0, 6.0])


def test_distribute_batches_each_partition_and_matches_stock(encrypters, inline_backend):
    stock, patched = encrypters
    rng = np.random.default_rng()
    table = Table([(i, np.array(_values(rng, 3)[3:6])) for i in range(11)])
    theirs = stock.distribute_encrypt(table)  # stock, before install
    fate1.install(inline_backend)
    try:
        calls = []
        real = inline_backend.raw_encrypt

        def counting(*a, **k):
            calls.append(len(a[1]))
            return real(*a, **k)

        inline_backend.raw_encrypt = counting
        ours = patched.distribute_encrypt(table)
        del inline_backend.raw_encrypt
        assert len(calls) == len(table.partitions)  # one backend call per partition
        for (k1, v1), (k2, v2), (k3, v3) in zip(ours.collect(), theirs.collect(), table.collect()):
            assert k1 == k2 == k3
            np.testing.assert_array_equal(_stock_decrypt(stock, v1), v3)
        back = patched.distribute_decrypt(theirs).collect()
        for (_, got), (_, want) in zip(back, table.collect()):
            np.testing.assert_array_equal(got, want)
    finally:
        fate1.uninstall()


def test_raw_paths(encrypters, plugin):
    stock, patched = encrypters
    n = stock.public_key.n
    packed = [0, 1, 2**100 + 12345, n - 1]
    enc = patched.recursive_raw_encrypt(packed, exponent=0)
    assert [stock.privacy_key.raw_decrypt(x.ciphertext()) for x in enc] == packed
    assert [patched.raw_decrypt(x) for x in enc] == packed
    one = patched.raw_encrypt(42, 3)
    assert one.exponent == 3 and stock.privacy_key.raw_decrypt(one.ciphertext(False)) == 42
    t = Table([(i, v) for i, v in enumerate(packed)])
    assert [v for _, v in patched.distribute_raw_decrypt(patched.distribute_raw_encrypt(t)).collect()] == packed
    with pytest.raises(ValueError, match=r"\[0, n\)"):
        patched.recursive_raw_encrypt([n])
    with pytest.raises(TypeError):
        patched.raw_encrypt(1.5)


def test_bad_input_fails_clearly(encrypters, plugin):
    stock, patched = encrypters
    assert patched.encrypt_list([]) == [] and patched.decrypt_list([]) == []
    with pytest.raises(ValueError):
        patched.encrypt_list([stock.public_key.n])  # beyond max_int
    with pytest.raises(TypeError, match="PaillierEncryptedNumber"):
        patched.decrypt_list([123])
    other = PaillierEncrypt()
    other.generate_key(1024)
    with pytest.raises(ValueError, match="another key"):
        patched.decrypt_list(other.encrypt_list([1.0]))
    keyless = PaillierEncrypt()
    assert keyless.encrypt_list([1, 2]) == [None, None]


def test_batched_gradient_equals_the_per_row_loop(encrypters, inline_backend):
    stock, patched = encrypters
    rng = np.random.default_rng()
    n, d = 23, 4
    X = rng.standard_normal((n, d))
    fore = rng.standard_normal(n) * 0.1
    data = Table([(i, X[i]) for i in range(n)])
    enc_d = Table([(i, stock.public_key.encrypt(float(fore[i]))) for i in range(n)])
    grad = HeteroGradientBase()
    want = [stock.privacy_key.decrypt(g) for g in grad.compute_gradient(data, enc_d, True)]
    fate1.install(inline_backend)
    try:
        got_enc = grad.compute_gradient(data, enc_d, True)
    finally:
        fate1.uninstall()
    assert all(type(g) is PEN for g in got_enc)
    got = [stock.privacy_key.decrypt(g) for g in got_enc]
    assert got == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(got, np.append(X.T @ fore, fore.sum()) / n, rtol=1e-9)


def test_batch_histogram_equals_the_per_sample_loop(encrypters, inline_backend):
    stock, _ = encrypters
    fate1.configure(inline_backend)
    rng = np.random.default_rng()
    n, f, bins = 30, 3, 5
    gh = [int(v) for v in rng.integers(0, 2**40, n)]           # SecureBoost's packed (g, h)
    enc = [stock.public_key.encrypt(v) for v in gh]
    idx = rng.integers(0, bins, (n, f))
    idx[:, 2] = 0                                               # a feature with one full bin
    hist = fate1.batch_histogram(stock.public_key, enc, idx, bins)
    for j in range(f):
        for b in range(bins):
            want = sum(gh[i] for i in range(n) if idx[i, j] == b)
            assert stock.privacy_key.decrypt(hist[j][b]) == want
    with pytest.raises(ValueError, match="bin indices"):
        fate1.batch_histogram(stock.public_key, enc, idx + bins, bins)


def test_install_is_reversible(plugin):
    assert fate1.installed()
    fate1.uninstall()
    assert not fate1.installed()
    assert "encrypt_list" not in PaillierEncrypt.__dict__  # the inherited stock method again
