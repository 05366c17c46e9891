"""Paillier keys with g = n + 1, CRT precomputation, and explicit-only private-key export.

Conventions follow python-paillier and FATE: g = n + 1 so that g^m = 1 + m*n (mod n^2),
``max_int = n // 3 - 1`` on the public key (the encoding layer may choose another bound).
"""
from __future__ import annotations

import base64
import json
import secrets
from functools import cached_property
from typing import Any, Protocol

import gmpy2
from gmpy2 import mpz

#: Key sizes a production key may have; smaller ones need ``allow_insecure=True`` (tests only).
MIN_SECURE_BITS = 1024
MAX_KEY_BITS = 4096
_MIN_TEST_BITS = 16

_JSON_KTY = "DAJ"          # the JWK-like tags python-paillier's CLI uses for Paillier keys
_JSON_ALG = "PAI-GN1"
_BYTES_MAGIC = b"HEA1"


class RandomSource(Protocol):
    """What the library needs from a random generator: ``secrets.SystemRandom`` fits, and so
    does ``random.Random(seed)`` for deterministic tests (never in production)."""

    def randrange(self, start: int, stop: int) -> int: ...

    def getrandbits(self, k: int) -> int: ...


def default_rng() -> RandomSource:
    """The cryptographically secure default: the OS CSPRNG via ``secrets``."""
    return secrets.SystemRandom()


def _b64(x: int) -> str:
    raw = x.to_bytes(max(1, (x.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(s: str) -> int:
    if not isinstance(s, str):
        raise ValueError("expected a base64url string")
    pad = "=" * (-len(s) % 4)
    try:
        return int.from_bytes(base64.urlsafe_b64decode(s + pad), "big")
    except (ValueError, TypeError) as e:
        raise ValueError(f"malformed base64url number: {e}") from None


def _limb_bytes(bits: int) -> int:
    """Bytes of a fixed-width little-endian number of ``bits`` bits, rounded up to 32-bit limbs."""
    return 4 * ((bits + 31) // 32)


class PublicKey:
    """A Paillier public key (n, g = n + 1).

    Cached per-modulus constants: ``nsquare``, ``max_int`` and the fixed widths used when
    numbers travel packed (see :mod:`accel.packing`).
    """

    def __init__(self, n: int):
        if isinstance(n, bool) or not isinstance(n, (int, type(mpz(0)))):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        n = int(n)
        if n < 15 or n % 2 == 0:
            raise ValueError("n must be an odd composite >= 15")
        self.n = n
        self.nsquare = n * n
        self.g = n + 1
        self.max_int = n // 3 - 1

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    @cached_property
    def plaintext_width(self) -> int:
        """Bytes of one packed plaintext (a multiple of 4: whole uint32 limbs)."""
        return _limb_bytes(self.n.bit_length())

    @cached_property
    def ciphertext_width(self) -> int:
        """Bytes of one packed ciphertext (a multiple of 4: whole uint32 limbs)."""
        return _limb_bytes(self.nsquare.bit_length())

    @cached_property
    def fingerprint(self) -> str:
        """A short public identifier of the key (SHA-256 of n), safe to log."""
        import hashlib

        return hashlib.sha256(self.to_bytes()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and other.n == self.n

    def __hash__(self) -> int:
        return hash(("PublicKey", self.n))

    def __repr__(self) -> str:
        return f"<PublicKey {self.bits} bits {self.fingerprint}>"

    def __reduce__(self):
        return (PublicKey, (self.n,))

    # -- serialisation ---------------------------------------------------------------------
    def to_jwk(self) -> dict[str, Any]:
        """A JSON-ready dict in python-paillier's CLI layout (``kty``, ``alg``, ``n`` base64url)."""
        return {"kty": _JSON_KTY, "alg": _JSON_ALG, "key_ops": ["encrypt"], "n": _b64(self.n)}

    def to_json(self) -> str:
        return json.dumps(self.to_jwk(), sort_keys=True)

    @classmethod
    def from_jwk(cls, obj: dict[str, Any]) -> "PublicKey":
        if not isinstance(obj, dict) or obj.get("kty") != _JSON_KTY or "n" not in obj:
            raise ValueError("not a Paillier public key (expected kty 'DAJ' and n)")
        return cls(_unb64(obj["n"]))

    @classmethod
    def from_json(cls, text: str | bytes) -> "PublicKey":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"public key JSON is malformed: {e}") from None
        return cls.from_jwk(obj)

    def to_bytes(self) -> bytes:
        """Compact form: magic ``HEA1``, u16 big-endian byte length of n, n big-endian."""
        nb = (self.n.bit_length() + 7) // 8
        return _BYTES_MAGIC + nb.to_bytes(2, "big") + self.n.to_bytes(nb, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> "PublicKey":
        data = bytes(data)
        if len(data) < 7 or data[:4] != _BYTES_MAGIC:
            raise ValueError("not a packed he-accel public key (bad magic)")
        nb = int.from_bytes(data[4:6], "big")
        if len(data) != 6 + nb:
            raise ValueError(f"packed public key length {len(data)} does not match header ({6 + nb})")
        return cls(int.from_bytes(data[6:], "big"))


class PrivateKey:
    """A Paillier private key with CRT precomputation (phe's names: hp, hq, p_inverse).

    Decryption by CRT: m_p = L_p(c^(p-1) mod p^2) * hp mod p, likewise m_q, then Garner
    recombination with q^-1 mod p. The key refuses to be pickled or printed; use
    :meth:`export_secret` when the owner really means to move it.
    """

    def __init__(self, public_key: PublicKey, p: int, q: int):
        if not isinstance(public_key, PublicKey):
            raise TypeError("public_key must be a PublicKey")
        p, q = int(p), int(q)
        if p == q:
            raise ValueError("p and q must be distinct primes")
        if p * q != public_key.n:
            raise ValueError("p * q does not equal the public key's n")
        if p > q:  # FATE stores p < q; either order decrypts the same
            p, q = q, p
        n = public_key.n
        if gmpy2.gcd(n, (p - 1) * (q - 1)) != 1:
            raise ValueError("gcd(n, (p-1)(q-1)) != 1: p and q are not a valid Paillier pair")
        self.public_key = public_key
        self.p, self.q = p, q
        self.psquare, self.qsquare = p * p, q * q
        self.p_inverse = int(gmpy2.invert(p, q))           # phe's name, kept for interop
        self.q_inverse = int(gmpy2.invert(q, p))           # FATE's name: q^-1 mod p
        self.hp = self._h(p, self.psquare)
        self.hq = self._h(q, self.qsquare)
        self.lam = (p - 1) * (q - 1) // int(gmpy2.gcd(p - 1, q - 1))

    def _h(self, x: int, xsquare: int) -> int:
        # h_x = L_x(g^(x-1) mod x^2)^-1 mod x  with g = n + 1
        gx = int(gmpy2.powmod(self.public_key.g, x - 1, xsquare))
        return int(gmpy2.invert((gx - 1) // x, x))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrivateKey) and (self.p, self.q) == (other.p, other.q)

    def __hash__(self) -> int:
        return hash(("PrivateKey", self.public_key.n))

    def __repr__(self) -> str:  # never print the primes
        return f"<PrivateKey for {self.public_key!r}>"

    def __reduce__(self):
        raise TypeError(
            "PrivateKey refuses to be pickled: private keys stay with their owner. "
            "Call export_secret() if you really mean to move it."
        )

    # -- explicit export -------------------------------------------------------------------
    def export_secret(self) -> dict[str, Any]:
        """The private key as a JSON-ready dict (p, q base64url). Handle it as a secret."""
        return {
            "kty": _JSON_KTY,
            "alg": _JSON_ALG,
            "key_ops": ["decrypt"],
            "pub": self.public_key.to_jwk(),
            "p": _b64(self.p),
            "q": _b64(self.q),
        }

    @classmethod
    def import_secret(cls, obj: dict[str, Any] | str) -> "PrivateKey":
        if isinstance(obj, (str, bytes)):
            try:
                obj = json.loads(obj)
            except json.JSONDecodeError as e:
                raise ValueError(f"private key JSON is malformed: {e}") from None
        if not isinstance(obj, dict) or not {"pub", "p", "q"} <= obj.keys():
            raise ValueError("not an exported he-accel private key (need pub, p, q)")
        pk = PublicKey.from_jwk(obj["pub"])
        return cls(pk, _unb64(obj["p"]), _unb64(obj["q"]))


def _random_prime(bits: int, rng: RandomSource) -> int:
    """A random prime of exactly ``bits`` bits with the top two bits set (so p*q has 2*bits)."""
    while True:
        x = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        p = int(gmpy2.next_prime(x))
        if p.bit_length() == bits:
            return p


def generate_keypair(
    n_length: int = 2048, *, rng: RandomSource | None = None, allow_insecure: bool = False
) -> tuple[PublicKey, PrivateKey]:
    """Generate a Paillier key pair with |n| exactly ``n_length`` bits and p != q.

    Primes come from ``rng`` (default: the OS CSPRNG through ``secrets``) and
    ``gmpy2.next_prime``. Production sizes are 1024..4096 bits; smaller keys exist for
    tests and need ``allow_insecure=True``.
    """
    if isinstance(n_length, bool) or not isinstance(n_length, int):
        raise TypeError("n_length must be an int")
    if n_length > MAX_KEY_BITS:
        raise ValueError(f"n_length {n_length} exceeds the supported maximum {MAX_KEY_BITS}")
    if n_length < MIN_SECURE_BITS and not allow_insecure:
        raise ValueError(
            f"n_length {n_length} is below {MIN_SECURE_BITS} bits; pass allow_insecure=True for tests"
        )
    if n_length < _MIN_TEST_BITS:
        raise ValueError(f"n_length must be at least {_MIN_TEST_BITS}")
    rng = rng or default_rng()
    p_bits = n_length // 2
    q_bits = n_length - p_bits
    while True:
        p = _random_prime(p_bits, rng)
        q = _random_prime(q_bits, rng)
        n = p * q
        if p != q and n.bit_length() == n_length and gmpy2.gcd(n, (p - 1) * (q - 1)) == 1:
            break
    pk = PublicKey(n)
    return pk, PrivateKey(pk, p, q)
