"""python-paillier decrypts our ciphertexts and we decrypt its, under the same key."""
import numpy as np
import pytest

from accel import EncryptedVector, PrivateKey, PublicKey

paillier = pytest.importorskip("phe.paillier")


@pytest.fixture(scope="module")
def phe_keys(key2048):
    pk, sk = key2048
    pub = paillier.PaillierPublicKey(pk.n)
    return pub, paillier.PaillierPrivateKey(pub, sk.p, sk.q)


def test_phe_decrypts_our_raw_ciphertexts(backend, key2048, phe_keys):
    pk, _ = key2048
    pub, priv = phe_keys
    ms = [0, 1, 42, pk.max_int, pk.n - 1]
    for c, m in zip(backend.raw_encrypt(pk, ms), ms):
        assert priv.raw_decrypt(c) == m


def test_we_decrypt_phe_raw_ciphertexts(backend, key2048, phe_keys):
    _, sk = key2048
    pub, _ = phe_keys
    ms = [0, 1, 42, pub.max_int, pub.n - 1]
    assert backend.raw_decrypt(sk, [pub.raw_encrypt(m) for m in ms]) == ms


def test_encoded_values_cross_both_ways(inline_backend, key2048, phe_keys):
    pk, sk = key2048
    pub, priv = phe_keys
    x = [1.5, -2.25, 3e-7, -4e12, 0.0, 17]
    ours = EncryptedVector.encrypt(pk, x, backend=inline_backend)
    for c, e, v in zip(ours.ciphertexts, ours.exponents.tolist(), x):
        assert priv.decrypt(paillier.EncryptedNumber(pub, c, e)) == v
    theirs = [pub.encrypt(v) for v in x]
    vec = EncryptedVector(pk, [t.ciphertext() for t in theirs], [t.exponent for t in theirs],
                          backend=inline_backend)
    assert vec.decrypt(sk).tolist() == [float(v) for v in x]
    # arithmetic mixing both libraries' ciphertexts
    both = (ours + vec) * 2
    np.testing.assert_allclose(both.decrypt(sk), np.array(x) * 4, rtol=1e-15)
    s = sum(theirs[1:], theirs[0])
    assert vec.sum().decrypt(sk) == pytest.approx(priv.decrypt(s), rel=1e-15)


def test_key_objects_convert(phe_keys):
    pub, priv = phe_keys
    pk = PublicKey(pub.n)
    sk = PrivateKey(pk, priv.p, priv.q)
    assert sk.public_key.n == pub.n and sk.hp == priv.hp and sk.hq == priv.hq
