"""An independent textbook Paillier on gmpy2 (g = n + 1, lambda/mu decryption, no CRT).

It shares no code with accel's backends: every backend result is checked against it.
"""
from __future__ import annotations

import secrets

import gmpy2


class Oracle:
    def __init__(self, n: int, p: int, q: int):
        self.n = gmpy2.mpz(n)
        self.n2 = self.n * self.n
        self.lam = gmpy2.lcm(p - 1, q - 1)
        self.mu = gmpy2.invert((gmpy2.powmod(self.n + 1, self.lam, self.n2) - 1) // self.n, self.n)

    @classmethod
    def for_key(cls, sk) -> "Oracle":
        return cls(sk.public_key.n, sk.p, sk.q)

    def enc(self, m: int, r: int | None = None) -> int:
        if r is None:
            r = secrets.randbelow(int(self.n) - 1) + 1
        return int((1 + gmpy2.mpz(m) * self.n) * gmpy2.powmod(r, self.n, self.n2) % self.n2)

    def dec(self, c: int) -> int:
        c = gmpy2.mpz(c)
        assert 0 < c < self.n2, "ciphertext out of range"
        return int((gmpy2.powmod(c, self.lam, self.n2) - 1) // self.n * self.mu % self.n)

    def dec_all(self, cs) -> list[int]:
        return [self.dec(c) for c in cs]


class ScriptedRng:
    """A RandomSource that returns preset values (known-answer tests), then fails loudly."""

    def __init__(self, values):
        self.values = list(values)

    def randrange(self, start: int, stop: int) -> int:
        v = self.values.pop(0)
        assert start <= v < stop
        return v

    def getrandbits(self, k: int) -> int:
        raise AssertionError("not expected")


def group_products(cs, counts, n2) -> list[int]:
    """The oracle of raw_sum_groups: the product of each consecutive group of ``counts[g]`` mod n2."""
    out, at = [], 0
    for k in counts:
        acc = gmpy2.mpz(1)
        for c in cs[at:at + k]:
            acc = acc * c % n2
        out.append(int(acc))
        at += k
    return out
