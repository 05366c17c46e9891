"""DJN fast encryption parameters (Damgard, Jurik, Nielsen 2010): opt-in, public.

Encryption becomes c = (1 + m n) * hs^r mod n^2 with hs = h^n mod n^2 for h = -x^2 mod n
(x random), and r a short random exponent (|n|/2 bits by default) instead of r^n with a full
r < n. hs^r is an n-th residue, so the ciphertexts are standard Paillier ciphertexts that any
holder of the private key decrypts, with any library. Because hs is fixed, both backends
precompute fixed-base (comb) tables once per key (the GPU per device; the CPU once per machine,
memory-mapped by its workers), and encryption needs no squarings at all.

Extra assumption: besides Paillier's DCRA, semantic security relies on hs^r for a short r being
indistinguishable from a uniform n-th residue (the DJN short-exponent assumption, also used by
HEU's ZPaillier, IPCL and pypaillier). Keep ``exponent_bits >= |n|/2``; use textbook or CRT
encryption where that assumption is not acceptable.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from math import gcd

from .keys import PublicKey, RandomSource, default_rng

WINDOW = 4  # table window of the GPU kernels; exponent lengths are rounded up to it


@dataclass(frozen=True)
class DjnKey:
    """hs and the exponent length for one public key. Public: safe to share with peers."""

    public_key: PublicKey
    hs: int
    exponent_bits: int

    def __post_init__(self):
        n, n2 = self.public_key.n, self.public_key.nsquare
        if not 1 < self.hs < n2 or gcd(self.hs, n) != 1:
            raise ValueError("hs must be a unit modulo n^2")
        top = 32 * -(-n.bit_length() // 32)
        if self.exponent_bits % WINDOW or not WINDOW <= self.exponent_bits <= top:
            raise ValueError(f"exponent_bits must be a multiple of {WINDOW} in [{WINDOW}, {top}]")

    @classmethod
    def generate(cls, public_key: PublicKey, *, exponent_bits: int | None = None,
                 rng: RandomSource | None = None) -> "DjnKey":
        rng = rng or default_rng()
        n = public_key.n
        while True:
            x = rng.randrange(2, n)
            if gcd(x, n) == 1:
                break
        hs = pow(-x * x % n, n, public_key.nsquare)
        bits = exponent_bits or -(-n.bit_length() // 2)
        return cls(public_key, hs, -(-bits // WINDOW) * WINDOW)

    def draw_exponents(self, count: int, rng: RandomSource | None = None) -> list[int]:
        """Fresh secret exponents r in [1, 2^exponent_bits), one per encryption."""
        rng = rng or default_rng()
        out = []
        for _ in range(count):
            r = 0
            while r == 0:
                r = rng.getrandbits(self.exponent_bits)
            out.append(r)
        return out

    def to_json(self) -> str:
        return json.dumps({"n_fingerprint": self.public_key.fingerprint, "hs": hex(self.hs),
                           "exponent_bits": self.exponent_bits})

    @classmethod
    def from_json(cls, public_key: PublicKey, text: str) -> "DjnKey":
        d = json.loads(text)
        if d.get("n_fingerprint") != public_key.fingerprint:
            raise ValueError("these DJN parameters belong to another public key")
        return cls(public_key, int(d["hs"], 16), int(d["exponent_bits"]))
