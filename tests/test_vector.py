"""The encoded layer: EncryptedVector arithmetic against numpy on the decoded values."""
import pickle

import numpy as np
import pytest

from accel import (
    DecodeOverflowError,
    EncryptedVector,
    FixedPointCodec,
    KeyMismatchError,
    PlaintextOverflowError,
)

from .conftest import keypair
from .oracle import Oracle

rng = np.random.default_rng(2024)


def enc(pk, values, backend, **kw):
    return EncryptedVector.encrypt(pk, values, backend=backend, **kw)


@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096])
def test_round_trip_ints_and_floats_at_every_key_size(inline_backend, bits):
    pk, sk = keypair(bits)
    floats = np.array([0.0, 1.5, -2.25, 1e-12, -3.3e10, np.pi, 1e300, -5e-300])
    ints = np.array([0, 1, -1, 2**62, -(2**62), 123456789], dtype=np.int64)
    assert np.array_equal(enc(pk, floats, inline_backend).decrypt(sk), floats)
    v = enc(pk, ints, inline_backend)
    assert v.decrypt_exact(sk) == ints.tolist()
    huge = [pk.max_int, -pk.max_int]
    assert enc(pk, np.array(huge, dtype=object), inline_backend).decrypt_exact(sk) == huge


def test_arithmetic_with_misaligned_exponents(backend, key1024):
    pk, sk = key1024
    x = np.array([1.5, -1e-9, 3e7, 0.0, 12.0, -0.125, 7])
    y = np.array([1e-15, 2.0, -4.5, 1e9, 0.0, 3.0, -1.0])
    ex, ey = enc(pk, x, backend), enc(pk, y, backend)
    assert len(set(ex.exponents.tolist())) > 1, "the test needs differing exponents"
    np.testing.assert_allclose((ex + ey).decrypt(sk), x + y, rtol=1e-15, atol=1e-24)
    np.testing.assert_allclose((ex - ey).decrypt(sk), x - y, rtol=1e-15, atol=1e-24)
    np.testing.assert_allclose((ex + y).decrypt(sk), x + y, rtol=1e-15, atol=1e-24)
    np.testing.assert_allclose((y + ex).decrypt(sk), x + y, rtol=1e-15, atol=1e-24)
    np.testing.assert_allclose((y - ex).decrypt(sk), y - x, rtol=1e-15, atol=1e-24)
    np.testing.assert_allclose((ex + 2.5).decrypt(sk), x + 2.5, rtol=1e-15)
    np.testing.assert_allclose((ex * y).decrypt(sk), x * y, rtol=1e-15)
    np.testing.assert_allclose((ex * -3).decrypt(sk), x * -3, rtol=1e-15)
    np.testing.assert_allclose((0.5 * ex).decrypt(sk), x * 0.5, rtol=1e-15)
    np.testing.assert_allclose((ex / 4).decrypt(sk), x / 4, rtol=1e-15)
    np.testing.assert_allclose((-ex).decrypt(sk), -x, rtol=1e-15)
    np.testing.assert_allclose(ex.sum().decrypt(sk), [x.sum()], rtol=1e-15)


def test_dot_and_matmul_with_float_and_int_matrices(backend, key1024):
    pk, sk = key1024
    x = rng.normal(size=12)
    X = rng.normal(size=(12, 4))
    ex = enc(pk, x, backend)
    np.testing.assert_allclose(ex.dot(X).decrypt(sk), x @ X, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((ex @ X).decrypt(sk), x @ X, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose((X.T @ ex).decrypt(sk), X.T @ x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ex.dot(X[:, 0]).decrypt(sk), [x @ X[:, 0]], rtol=1e-12)
    Xi = rng.integers(-1000, 1000, size=(12, 3))
    np.testing.assert_allclose(ex.dot(Xi).decrypt(sk), x @ Xi, rtol=1e-12)
    coarse = ex.dot(X, precision=1e-3)
    np.testing.assert_allclose(coarse.decrypt(sk), x @ X, atol=1e-2)


def test_matvec_feeds_fate_style_gradient(inline_backend, key1024):
    # Hetero-LR host step: encrypted residuals d (guest) times local features X -> X^T [d].
    pk, sk = key1024
    d = rng.normal(size=50) * 0.25
    X = rng.normal(size=(50, 6))
    g = enc(pk, d, inline_backend).dot(X) / 50
    np.testing.assert_allclose(g.decrypt(sk), X.T @ d / 50, rtol=1e-10, atol=1e-12)


def test_empty_vectors(inline_backend, key1024):
    pk, sk = key1024
    e = enc(pk, [], inline_backend)
    assert len(e) == 0 and e.decrypt(sk).shape == (0,)
    assert e.sum().decrypt(sk) == 0.0 and e.sum().shape == ()
    assert e.dot(np.zeros((0, 2))).decrypt(sk).tolist() == [0.0, 0.0]


def test_sum_and_1d_dot_are_scalars_as_in_numpy(inline_backend, key1024):
    pk, sk = key1024
    x = np.array([0.5, -1.25, 3.0, 0.0, -7.5])
    w = np.array([2.0, 0.5, -1.0, 4.0, 0.25])
    ex = enc(pk, x, inline_backend)
    s = ex.sum()
    got = s.decrypt(sk)
    assert isinstance(got, np.float64) and np.ndim(got) == 0 and got == x.sum()
    assert s.shape == () and ex.shape == (5,) and "scalar" in repr(s)
    assert s.decrypt_exact(sk) == sum(float(v) for v in x)  # one exact value, not a list
    d = ex.dot(w)
    assert d.shape == () and np.ndim(d.decrypt(sk)) == 0
    np.testing.assert_allclose(d.decrypt(sk), x @ w, rtol=1e-12)
    assert (w @ ex).shape == () and ex.dot(w[:, None]).shape == (1,)
    # arithmetic stays scalar while every operand is one, as in numpy
    assert (s * 2.5 + 1 - s / 4).shape == () and (s + s).shape == () and (-s).rerandomize().shape == ()
    assert (s * 2.5 + 1).decrypt(sk) == x.sum() * 2.5 + 1
    assert (s * np.array([2.0])).shape == (1,) and (s + [1.0]).decrypt(sk).tolist() == [x.sum() + 1]
    # stored as one ciphertext: length, indexing and concat treat it as one element, as before
    assert len(s) == 1 and len(s.ciphertexts) == 1 and s[0].shape == (1,)
    both = EncryptedVector.concat([ex, s])
    assert both.shape == (6,) and both.decrypt(sk).tolist() == [*x.tolist(), x.sum()]
    back = pickle.loads(pickle.dumps(s))
    assert back.shape == () and back.decrypt(sk) == x.sum()
    with pytest.raises(ValueError, match="exactly one"):
        EncryptedVector(pk, ex.blob, ex.exponents, backend=inline_backend, scalar=True)


def test_fate1_convention_has_positive_exponents(inline_backend, key1024):
    pk, sk = key1024
    x = np.array([1.5, -0.25, 3.0])
    v = enc(pk, x, inline_backend, convention="fate1")
    assert v.exponents.tolist() == [13, 13, 12]
    w = v + v * -0.25
    assert (w.exponents >= 13).all()
    np.testing.assert_allclose(w.decrypt(sk), x * 0.75, rtol=1e-15)


def test_indexing_concat_and_pickle(inline_backend, key1024):
    pk, sk = key1024
    x = np.arange(6) * 1.5
    v = enc(pk, x, inline_backend)
    assert v[2:4].decrypt(sk).tolist() == [3.0, 4.5]
    assert v[[0, 5]].decrypt(sk).tolist() == [0.0, 7.5]
    assert EncryptedVector.concat([v[:2], v[4:]]).decrypt(sk).tolist() == [0.0, 1.5, 6.0, 7.5]
    w = pickle.loads(pickle.dumps(v))
    assert w.ciphertexts == v.ciphertexts and w.decrypt(sk).tolist() == x.tolist()
    assert v.limbs().shape == (6, pk.ciphertext_width // 4)
    o = Oracle.for_key(sk)
    assert [o.dec(c) for c in v.ciphertexts] == v.codec.encode(x).encodings


def test_rerandomize_changes_ciphertexts_not_values(backend, key1024):
    pk, sk = key1024
    v = enc(pk, [1.0, 2.0], backend)
    r = v.rerandomize()
    assert r.decrypt(sk).tolist() == [1.0, 2.0]
    assert all(a != b for a, b in zip(r.ciphertexts, v.ciphertexts))


def test_injected_randomness_and_crt_encrypt(inline_backend, key1024):
    import random

    pk, sk = key1024
    a = enc(pk, [1.0, 2.0], inline_backend, rng=random.Random(3))
    b = enc(pk, [1.0, 2.0], inline_backend, rng=random.Random(3))
    assert a.ciphertexts == b.ciphertexts
    c = enc(pk, [1.0, 2.0], inline_backend, private_key=sk)
    assert c.decrypt(sk).tolist() == [1.0, 2.0]


def test_mismatched_keys_and_shapes_are_refused(inline_backend, key1024, key2048):
    pk, sk = key1024
    pk2, sk2 = key2048
    v = enc(pk, [1.0, 2.0], inline_backend)
    w = enc(pk2, [1.0, 2.0], inline_backend)
    with pytest.raises(KeyMismatchError):
        v + w
    with pytest.raises(KeyMismatchError):
        v.decrypt(sk2)
    with pytest.raises(ValueError, match="length"):
        v + enc(pk, [1.0], inline_backend)
    with pytest.raises(ValueError, match="shape"):
        v * np.ones(3)
    with pytest.raises(ValueError, match="shape"):
        v.dot(np.ones((3, 2)))
    with pytest.raises(TypeError):
        v * v
    with pytest.raises(ValueError, match="exponents for 2 ciphertexts"):
        EncryptedVector(pk, v.ciphertexts, [0, 0, 0], backend=inline_backend)
    with pytest.raises(ValueError, match="encodings"):
        v + EncryptedVector.encrypt(pk, [1.0, 2.0], backend=inline_backend, convention="fate2")


def test_overflow_is_detected_never_wrapped(inline_backend, key1024):
    pk, sk = key1024
    codec = FixedPointCodec(pk)
    with pytest.raises(PlaintextOverflowError):
        enc(pk, np.array([pk.max_int + 1], dtype=object), inline_backend)
    v = enc(pk, np.array([pk.max_int // 2 + 1], dtype=object), inline_backend, codec=codec)
    with pytest.raises(PlaintextOverflowError):
        v * 2  # the tracked bound refuses it before computing
    # Ciphertexts from elsewhere carry no bound: the overflow is caught at decryption.
    ext = EncryptedVector(pk, v.ciphertexts, 0, codec=codec, backend=inline_backend)
    with pytest.raises(DecodeOverflowError):
        (ext * 2).decrypt(sk)  # lands in the band between max_int and n - max_int


def test_alignment_that_would_wrap_is_refused(inline_backend, key1024, key2048):
    pk, sk = key1024
    a, b = enc(pk, [1.0], inline_backend), enc(pk, [3.5e-300], inline_backend)
    with pytest.raises(PlaintextOverflowError, match="too far apart"):
        a + b
    with pytest.raises(PlaintextOverflowError):
        a + 3.5e-300
    pk2, sk2 = key2048  # a larger key has room for it
    s = enc(pk2, [1.0], inline_backend) + enc(pk2, [3.5e-300], inline_backend)
    assert s.decrypt(sk2).tolist() == [1.0]


def test_repeated_products_are_refused_before_they_wrap(inline_backend, key1024):
    pk, sk = key1024
    v = enc(pk, [np.pi], inline_backend)
    with pytest.raises(PlaintextOverflowError, match="max_int"):
        for _ in range(40):
            v = v * np.e
    assert np.isfinite(v.decrypt(sk)).all()  # everything computed before the refusal is sound


def test_external_ciphertexts_have_no_bound(inline_backend, key1024):
    pk, sk = key1024
    c = inline_backend.raw_encrypt(pk, [5])
    v = EncryptedVector(pk, c, 0, backend=inline_backend)
    assert v._bits is None and (v * 3).decrypt(sk).tolist() == [15.0]
    w = EncryptedVector(pk, c, 0, backend=inline_backend, mantissa_bits=3)
    assert (w + w).decrypt(sk).tolist() == [10.0]


def test_alignment_exponentiates_only_the_elements_that_move(inline_backend, key1024):
    """Mixed exponents: only the elements above the target exponent are raised to 16^d; the
    others keep their ciphertexts byte for byte, and every value stays exact."""
    pk, sk = key1024
    calls = []

    class Counting(type(inline_backend)):
        def raw_mul(self, pk_, cs, ks):
            calls.append(len(ks))
            return super().raw_mul(pk_, cs, ks)

    be = Counting(workers=1)
    a = EncryptedVector.encrypt(pk, [1.0, 0.5, 3.0, 0.001, 7.0], backend=be)
    b = EncryptedVector.encrypt(pk, [0.25, 2.0, 1.0, 4.0, 0.0625], backend=be)
    moved = int((a._exp > np.minimum(a._exp, b._exp)).sum())
    assert 0 < moved < len(a)
    calls.clear()
    total = a + b
    assert sorted(calls) == sorted(c for c in (moved, int((b._exp > np.minimum(a._exp, b._exp)).sum())) if c)
    assert np.allclose(total.decrypt(sk), [1.25, 2.5, 4.0, 4.001, 7.0625], rtol=0, atol=1e-12)
    keep = np.flatnonzero(a._exp == total._exp)
    w = pk.ciphertext_width
    lowered = a._lowered_to(total._exp)
    for i in keep.tolist():
        assert lowered[i * w:(i + 1) * w] == a.blob[i * w:(i + 1) * w]
    assert np.allclose((a.sum()).decrypt(sk), [11.501], rtol=0, atol=1e-12)
    be.close()


def test_one_alignment_rule_for_blobs_lists_and_the_integrations(inline_backend, key1024):
    """accel.ciphertext.lower_exponents, which EncryptedVector and the integrations' _batch.lower
    share: c^(16^d) for the elements that move, the others untouched, in the caller's form."""
    import secrets

    from accel.ciphertext import lower_exponents
    from accel.encoding import AlignmentOverflowError
    from accel.integrations import _batch
    from accel.packing import blob_to_ints, ints_to_blob

    pk, sk = key1024
    n = pk.n
    ms = [0, 1, n - 1, secrets.randbelow(n), secrets.randbelow(n)]
    cs = inline_backend.raw_encrypt(pk, ms)
    steps = [0, 1, 3, 0, 7]
    want = [m * 16**d % n for m, d in zip(ms, steps)]
    out = lower_exponents(inline_backend, pk, cs, steps)
    assert inline_backend.raw_decrypt(sk, out) == want
    assert out is not cs and [out[0], out[3]] == [cs[0], cs[3]]  # untouched, not re-encrypted
    blob = ints_to_blob(cs, pk.ciphertext_width)
    out_blob = lower_exponents(inline_backend, pk, blob, steps)
    assert isinstance(out_blob, bytes)
    assert inline_backend.raw_decrypt(sk, blob_to_ints(out_blob, pk.ciphertext_width)) == want
    assert lower_exponents(inline_backend, pk, blob, [0] * len(ms)) == blob
    same = lower_exponents(inline_backend, pk, cs, [0] * len(ms))
    assert same == cs and same is not cs
    assert lower_exponents(inline_backend, pk, [], []) == []
    with pytest.raises(ValueError, match="finer"):
        lower_exponents(inline_backend, pk, cs, [0, 0, -1, 0, 0])
    too_far = n.bit_length() // 4 + 1  # 16^d >= n
    with pytest.raises(AlignmentOverflowError) as e:
        lower_exponents(inline_backend, pk, cs, [0, 0, too_far, 0, 0])
    # what EncryptedVector raised before, and what the integrations raised
    assert isinstance(e.value, PlaintextOverflowError) and isinstance(e.value, OverflowError)
    # the integrations' form: exponents and targets, and ciphertext 1 (an unobfuscated zero) stays 1
    low = _batch.lower(inline_backend, pk, [1, *cs], np.array([5, 5, 6, 8, 5, 12]), np.array([0, 5, 5, 5, 5, 5]))
    assert low[0] == 1 and inline_backend.raw_decrypt(sk, low[1:]) == want
    with pytest.raises(OverflowError):
        _batch.lower(inline_backend, pk, cs[:1], np.array([too_far]), np.array([0]))
