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

from federatedml.feature.instance import Instance  # noqa: E402
from federatedml.feature.sparse_vector import SparseVector  # noqa: E402
from federatedml.optim.gradient.hetero_linear_model_gradient import HeteroGradientBase, Host  # noqa: E402
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


def test_raw_paths_take_what_stock_takes_and_refuse_what_it_refuses(encrypters, inline_backend):
    stock, patched = encrypters
    n = stock.public_key.n
    ints = [-5, n, n + 7, -n - 3, 3 * n + 1, True, 2**2000]     # stock encrypts every int mod n
    bad = [[5.7], [1, 2.0], np.array([1, 2], dtype=np.int64), [np.int64(3)]]

    def outcomes():
        got = {"ints": [stock.privacy_key.raw_decrypt(x.ciphertext(False))
                        for x in patched.recursive_raw_encrypt(ints)],
               "one": [stock.privacy_key.raw_decrypt(patched.raw_encrypt(m).ciphertext(False)) for m in ints],
               "table": [stock.privacy_key.raw_decrypt(v.ciphertext(False)) for _, v in
                         patched.distribute_raw_encrypt(Table(enumerate(ints))).collect()]}
        for X in bad:
            with pytest.raises(TypeError, match="plaintext should be int"):
                patched.recursive_raw_encrypt(X)
            with pytest.raises(TypeError, match="plaintext should be int"):
                patched.distribute_raw_encrypt(Table([(0, X)]))
        with pytest.raises(TypeError, match="plaintext should be int"):
            patched.raw_encrypt(5.7)
        return got

    want = outcomes()                                            # stock, before install
    assert want["ints"] == [m % n for m in ints]
    fate1.install(inline_backend)
    try:
        assert outcomes() == want
    finally:
        fate1.uninstall()


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


def _rows(X, sparse=False):
    def features(x):
        if not sparse:
            return x
        nz = np.flatnonzero(x)
        return SparseVector(indices=nz.tolist(), data=x[nz].tolist(), shape=len(x))
    return Table([(i, Instance(inst_id=i, features=features(X[i]), label=i % 2)) for i in range(len(X))])


def _mixed_scales(rng, n):
    """Columns of very different scales, as real features are: 1e4, 1e-8, one mixing 1e6 and
    1e-9, one beyond 2^53 (negative exponents), one with exact zeros and negatives."""
    X = np.column_stack([rng.standard_normal(n) * 1e4, rng.standard_normal(n) * 1e-8,
                         np.where(rng.random(n) < 0.5, 1e6, 1e-9) * rng.standard_normal(n),
                         rng.standard_normal(n) * 2.0**60,
                         np.where(rng.random(n) < 0.4, 0.0, rng.integers(-3, 4, n).astype(float))])
    X[0, :] = 0.0
    return X


def _encrypted_fore_gradient(stock, rng, n):
    """What the guest sends the host: (E(half_d) + E(host forward)) re-randomised, / batch size,
    so the exponents differ from row to row."""
    half = rng.standard_normal(n) * 0.25
    fwd = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 3, n)
    return Table([(i, (stock.public_key.encrypt(float(half[i])) + stock.public_key.encrypt(float(fwd[i]))) / n)
                  for i in range(n)])


def _decrypted(stock, grad):
    return [stock.privacy_key.decrypt(g) for g in grad], [g.exponent for g in grad]


def _stock_and_plugin(run, inline_backend):
    want = run()
    fate1.install(inline_backend)
    try:
        got = run()
    finally:
        fate1.uninstall()
    return want, got


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept, need_average", [(True, True), (False, False), (True, False)])
def test_gradient_is_stocks_exactly_on_instance_tables(encrypters, inline_backend, sparse, fit_intercept, need_average):
    stock, _ = encrypters
    rng = np.random.default_rng()
    n = 17
    X = _mixed_scales(rng, n)
    data, fore = _rows(X, sparse), _encrypted_fore_gradient(stock, rng, n)
    grad = HeteroGradientBase()
    want, got = _stock_and_plugin(
        lambda: grad.compute_gradient(data, fore, fit_intercept, need_average=need_average), inline_backend)
    assert all(type(g) is PEN for g in got)
    # the same plaintexts at the same exponents: stock's precision, bit for bit
    assert _decrypted(stock, got) == _decrypted(stock, want)
    d = np.array([stock.privacy_key.decrypt(v) for _, v in fore.collect()])
    exact = np.append(X.T @ d, d.sum()) if fit_intercept else X.T @ d
    np.testing.assert_allclose(_decrypted(stock, got)[0], exact / (n if need_average else 1), rtol=1e-9, atol=0)


def test_gradient_with_fixed_point_encoder_and_int_features_is_stocks(encrypters, inline_backend):
    stock, _ = encrypters
    rng = np.random.default_rng()
    n = 11
    fore = _encrypted_fore_gradient(stock, rng, n)
    grad = HeteroGradientBase()
    grad.set_fixed_float_precision(23)
    data = _rows(_mixed_scales(rng, n)[:, [0, 4]])
    want, got = _stock_and_plugin(lambda: grad.compute_gradient(data, fore, True), inline_backend)
    assert _decrypted(stock, got) == _decrypted(stock, want)
    plain = HeteroGradientBase()
    ints = _rows(rng.integers(-5, 6, (n, 3)))                  # int features: exponent 0
    want, got = _stock_and_plugin(lambda: plain.compute_gradient(ints, fore, False, need_average=False),
                                  inline_backend)
    assert _decrypted(stock, got) == _decrypted(stock, want)


def test_asynchronous_path_plaintext_fore_gradient_goes_to_stock(encrypters, inline_backend):
    stock, _ = encrypters
    rng = np.random.default_rng()
    n = 9
    X = _mixed_scales(rng, n)
    data = _rows(X, sparse=True)
    forwards = Table([(i, float(v)) for i, v in enumerate(rng.standard_normal(n))])
    guest_half_d = Table([(i, stock.public_key.encrypt(float(v))) for i, v in enumerate(rng.standard_normal(n))])
    host = Host()
    host.set_use_async()
    want, got = _stock_and_plugin(lambda: host.unilateral_gradient(data, forwards, guest_half_d), inline_backend)
    assert _decrypted(stock, got) == _decrypted(stock, want)
    plain_want, plain_got = _stock_and_plugin(lambda: host.compute_gradient(data, forwards, True), inline_backend)
    np.testing.assert_array_equal(plain_got, plain_want)
    assert plain_got.dtype == np.float64


def test_gradient_on_an_empty_table_does_what_stock_does(encrypters, inline_backend):
    stock, _ = encrypters
    grad = HeteroGradientBase()
    empty = Table([])
    outcomes = []
    for install in (False, True):
        if install:
            fate1.install(inline_backend)
        try:
            with pytest.raises(TypeError) as err:
                grad.compute_gradient(empty, empty, True)
            outcomes.append(str(err.value))
        finally:
            fate1.uninstall()
    assert outcomes[0] == outcomes[1]


def test_batch_gradient_keeps_each_entrys_digits(encrypters, inline_backend):
    stock, _ = encrypters
    fate1.configure(inline_backend)
    pk, sk = stock.public_key, stock.privacy_key
    ed = [pk.encrypt(0.0), pk.encrypt(1.0)]
    (g,) = fate1.batch_gradient(pk, ed, [[1e6], [1e-9]], False)
    want = ed[0] * 1e6 + ed[1] * 1e-9                          # stock: per entry, aligned up
    assert sk.decrypt(g) == sk.decrypt(want) == 9.999999999999999e-10
    assert g.exponent == want.exponent
    rng = np.random.default_rng()
    X = _mixed_scales(rng, 8)
    d = [pk.encrypt(float(v)) for v in rng.standard_normal(8) * 10.0 ** rng.integers(-6, 6, 8)]
    got = fate1.batch_gradient(pk, d, X, True)
    for j in range(X.shape[1] + 1):
        terms = [d[i] * (float(X[i, j]) if j < X.shape[1] else 1) for i in range(8)]
        acc = terms[0]
        for t in terms[1:]:
            acc = acc + t
        assert (sk.decrypt(got[j]), got[j].exponent) == (sk.decrypt(acc), acc.exponent)
    with pytest.raises(ValueError, match="one row per ciphertext"):
        fate1.batch_gradient(pk, d, X[:3], False)
    with pytest.raises(TypeError, match="ints or floats"):
        fate1.batch_gradient(pk, d, X.astype(object), False)


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
