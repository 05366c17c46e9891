import json
import pickle
import random
import secrets

import gmpy2
import pytest

from accel import PrivateKey, PublicKey, generate_keypair
from accel.keys import default_rng

from .conftest import keypair


@pytest.mark.parametrize("bits", [1024, 2048, 3072, 4096])
def test_generated_modulus_has_exact_length_and_distinct_primes(bits):
    pk, sk = keypair(bits)
    assert pk.n.bit_length() == bits
    assert sk.p != sk.q and sk.p * sk.q == pk.n
    assert gmpy2.is_prime(sk.p) and gmpy2.is_prime(sk.q)
    assert pk.g == pk.n + 1 and pk.nsquare == pk.n**2 and pk.max_int == pk.n // 3 - 1


@pytest.mark.parametrize("bits", [16, 33, 64, 255, 1025])
def test_odd_and_tiny_sizes_are_exact(bits):
    pk, _ = generate_keypair(bits, allow_insecure=True)
    assert pk.n.bit_length() == bits


def test_small_keys_need_explicit_opt_in():
    with pytest.raises(ValueError, match="allow_insecure"):
        generate_keypair(512)


@pytest.mark.parametrize("bad", [8, 4097, 8192])
def test_unsupported_sizes_are_refused(bad):
    with pytest.raises(ValueError):
        generate_keypair(bad, allow_insecure=True)


@pytest.mark.parametrize("bad", ["2048", 2048.0, True])
def test_key_size_must_be_int(bad):
    with pytest.raises(TypeError):
        generate_keypair(bad)


def test_default_randomness_is_the_os_csprng():
    assert isinstance(default_rng(), secrets.SystemRandom)


def test_injected_rng_makes_keygen_deterministic():
    a = generate_keypair(256, rng=random.Random(7), allow_insecure=True)
    b = generate_keypair(256, rng=random.Random(7), allow_insecure=True)
    c = generate_keypair(256, rng=random.Random(8), allow_insecure=True)
    assert a[0] == b[0] and a[1] == b[1]
    assert a[0] != c[0]


def test_crt_precomputation_matches_definitions(key1024):
    pk, sk = key1024
    p, q = sk.p, sk.q
    assert sk.p < sk.q
    assert sk.psquare == p * p and sk.qsquare == q * q
    assert sk.q_inverse * q % p == 1 and sk.p_inverse * p % q == 1
    lp = (pow(pk.g, p - 1, p * p) - 1) // p
    assert sk.hp * lp % p == 1
    lq = (pow(pk.g, q - 1, q * q) - 1) // q
    assert sk.hq * lq % q == 1


def test_private_key_validation(key1024):
    pk, sk = key1024
    with pytest.raises(ValueError, match="does not equal"):
        PrivateKey(pk, sk.p, sk.q + 2)
    with pytest.raises(ValueError, match="distinct"):
        PrivateKey(PublicKey(sk.p * sk.p), sk.p, sk.p)
    with pytest.raises(TypeError):
        PrivateKey(pk.n, sk.p, sk.q)
    assert PrivateKey(pk, sk.q, sk.p) == sk  # order does not matter


def test_public_key_rejects_bad_moduli():
    with pytest.raises(ValueError):
        PublicKey(10)
    with pytest.raises(TypeError):
        PublicKey("12345")


def test_public_key_json_and_bytes_round_trip(key2048):
    pk, _ = key2048
    assert PublicKey.from_json(pk.to_json()) == pk
    assert PublicKey.from_bytes(pk.to_bytes()) == pk
    assert len(pk.to_bytes()) == 6 + 256
    assert json.loads(pk.to_json())["kty"] == "DAJ"
    assert pickle.loads(pickle.dumps(pk)) == pk
    assert hash(PublicKey(pk.n)) == hash(pk)


@pytest.mark.parametrize("blob", [b"", b"HEA1", b"XXXX\x00\x01\x07", b"HEA1\x00\x05\x01\x02"])
def test_malformed_packed_public_keys_are_refused(blob):
    with pytest.raises(ValueError):
        PublicKey.from_bytes(blob)


@pytest.mark.parametrize("text", ["{", "[]", '{"kty": "RSA", "n": "AQAB"}', '{"kty": "DAJ", "n": 5}'])
def test_malformed_json_public_keys_are_refused(text):
    with pytest.raises(ValueError):
        PublicKey.from_json(text)


def test_private_key_never_leaks_by_accident(key1024):
    pk, sk = key1024
    text = repr(sk) + str(sk)
    assert str(sk.p) not in text and str(sk.q) not in text
    with pytest.raises(TypeError, match="export_secret"):
        pickle.dumps(sk)


def test_private_key_exports_only_when_asked(key1024):
    _, sk = key1024
    exported = sk.export_secret()
    assert PrivateKey.import_secret(exported) == sk
    assert PrivateKey.import_secret(json.dumps(exported)) == sk
    with pytest.raises(ValueError):
        PrivateKey.import_secret({"p": "AQ"})
