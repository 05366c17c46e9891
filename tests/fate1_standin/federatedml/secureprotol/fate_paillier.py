"""FATE 1.x Paillier wire classes, as documented (g = n + 1, CRT decryption, lazy
obfuscation, exponents >= 0 aligned upwards, no re-randomisation of results)."""
import random

import gmpy2

from .fixedpoint import FixedPointNumber


def _powmod(a, b, c):
    return int(gmpy2.powmod(a, b, c))


def _invert(a, b):
    return int(gmpy2.invert(a, b))


class PaillierKeypair:
    @staticmethod
    def generate_keypair(n_length=2048):
        p = q = n = None
        n_len = 0
        while n_len != n_length:
            p = int(gmpy2.next_prime(random.SystemRandom().getrandbits(n_length // 2) | (1 << (n_length // 2 - 1))))
            q = p
            while q == p:
                q = int(gmpy2.next_prime(random.SystemRandom().getrandbits(n_length // 2) | (1 << (n_length // 2 - 1))))
            n = p * q
            n_len = n.bit_length()
        public_key = PaillierPublicKey(n)
        return public_key, PaillierPrivateKey(public_key, p, q)


class PaillierPublicKey:
    def __init__(self, n):
        self.g = n + 1
        self.n = n
        self.nsquare = n * n
        self.max_int = n // 3 - 1

    def __eq__(self, other):
        return self.n == other.n

    def __hash__(self):
        return hash(self.n)

    def apply_obfuscator(self, ciphertext, random_value=None):
        r = random_value or random.SystemRandom().randrange(1, self.n)
        return ciphertext * _powmod(r, self.n, self.nsquare) % self.nsquare

    def raw_encrypt(self, plaintext, random_value=None):
        if not isinstance(plaintext, int):
            raise TypeError("plaintext should be int, but got: %s" % type(plaintext))
        if plaintext >= (self.n - self.max_int) and plaintext < self.n:
            neg_plaintext = self.n - plaintext
            neg_ciphertext = (self.n * neg_plaintext + 1) % self.nsquare
            ciphertext = _invert(neg_ciphertext, self.nsquare)
        else:
            ciphertext = (self.n * plaintext + 1) % self.nsquare
        return self.apply_obfuscator(ciphertext, random_value)

    def encrypt(self, value, precision=None, random_value=None):
        encoding = FixedPointNumber.encode(value, self.n, self.max_int, precision)
        obfuscator = random_value or 1
        ciphertext = self.raw_encrypt(encoding.encoding, random_value=obfuscator)
        encryptednumber = PaillierEncryptedNumber(self, ciphertext, encoding.exponent)
        if random_value is None:
            encryptednumber.apply_obfuscator()
        return encryptednumber


class PaillierPrivateKey:
    def __init__(self, public_key, p, q):
        if not p * q == public_key.n:
            raise ValueError("given public key does not match the given p and q")
        if p == q:
            raise ValueError("p and q have to be different")
        self.public_key = public_key
        if q < p:
            p, q = q, p
        self.p, self.q = p, q
        self.psquare, self.qsquare = p * p, q * q
        self.q_inverse = _invert(q, p)
        self.hp = self.h_func(p, self.psquare)
        self.hq = self.h_func(q, self.qsquare)

    def __eq__(self, other):
        return self.p == other.p and self.q == other.q

    def __hash__(self):
        return hash((self.p, self.q))

    def h_func(self, x, xsquare):
        return _invert(self.l_func(_powmod(self.public_key.g, x - 1, xsquare), x), x)

    def l_func(self, x, p):
        return (x - 1) // p

    def crt(self, mp, mq):
        u = (mp - mq) * self.q_inverse % self.p
        return mq + (u * self.q)

    def raw_decrypt(self, ciphertext):
        if not isinstance(ciphertext, int):
            raise TypeError("ciphertext should be an int, not: %s" % type(ciphertext))
        mp = self.l_func(_powmod(ciphertext, self.p - 1, self.psquare), self.p) * self.hp % self.p
        mq = self.l_func(_powmod(ciphertext, self.q - 1, self.qsquare), self.q) * self.hq % self.q
        return self.crt(mp, mq)

    def decrypt(self, encrypted_number):
        if not isinstance(encrypted_number, PaillierEncryptedNumber):
            raise TypeError("encrypted_number should be an PaillierEncryptedNumber")
        if self.public_key != encrypted_number.public_key:
            raise ValueError("encrypted_number was encrypted against a different key!")
        encoded = self.raw_decrypt(encrypted_number.ciphertext(be_secure=False))
        encoded = FixedPointNumber(encoded, encrypted_number.exponent, self.public_key.n, self.public_key.max_int)
        return encoded.decode()


class PaillierEncryptedNumber:
    def __init__(self, public_key, ciphertext, exponent=0):
        self.public_key = public_key
        self.__ciphertext = ciphertext
        self.exponent = exponent
        self.__is_obfuscator = False
        if not isinstance(self.__ciphertext, int):
            raise TypeError("ciphertext should be an int, not: %s" % type(self.__ciphertext))
        if not isinstance(self.public_key, PaillierPublicKey):
            raise TypeError("public_key should be a PaillierPublicKey, not: %s" % type(self.public_key))

    def ciphertext(self, be_secure=True):
        if be_secure and not self.__is_obfuscator:
            self.apply_obfuscator()
        return self.__ciphertext

    def apply_obfuscator(self):
        self.__ciphertext = self.public_key.apply_obfuscator(self.__ciphertext)
        self.__is_obfuscator = True

    def __add__(self, other):
        if isinstance(other, PaillierEncryptedNumber):
            return self.__add_encryptednumber(other)
        return self.__add_scalar(other)

    def __radd__(self, other):
        return self.__add__(other)

    def __sub__(self, other):
        return self + (other * -1)

    def __rsub__(self, other):
        return other + (self * -1)

    def __rmul__(self, scalar):
        return self.__mul__(scalar)

    def __truediv__(self, scalar):
        return self.__mul__(1 / scalar)

    def __mul__(self, scalar):
        if isinstance(scalar, PaillierEncryptedNumber):
            raise NotImplementedError("Cannot multiply two encrypted numbers")
        encode = FixedPointNumber.encode(scalar, self.public_key.n, self.public_key.max_int)
        plaintext = encode.encoding
        if plaintext < 0 or plaintext >= self.public_key.n:
            raise ValueError("Scalar out of bounds: %i" % plaintext)
        if plaintext >= self.public_key.n - self.public_key.max_int:
            neg_c = _invert(self.ciphertext(False), self.public_key.nsquare)
            neg_scalar = self.public_key.n - plaintext
            ciphertext = _powmod(neg_c, neg_scalar, self.public_key.nsquare)
        else:
            ciphertext = _powmod(self.ciphertext(False), plaintext, self.public_key.nsquare)
        return PaillierEncryptedNumber(self.public_key, ciphertext, self.exponent + encode.exponent)

    def increase_exponent_to(self, new_exponent):
        if new_exponent < self.exponent:
            raise ValueError("New exponent %i should be greater than old exponent %i" % (new_exponent, self.exponent))
        factor = pow(FixedPointNumber.BASE, new_exponent - self.exponent)
        new_encryptednumber = self.__mul__(factor)
        new_encryptednumber.exponent = new_exponent
        return new_encryptednumber

    def __align_exponent(self, x, y):
        if x.exponent < y.exponent:
            x = x.increase_exponent_to(y.exponent)
        elif x.exponent > y.exponent:
            y = y.increase_exponent_to(x.exponent)
        return x, y

    def __add_scalar(self, scalar):
        encoded = FixedPointNumber.encode(scalar, self.public_key.n, self.public_key.max_int,
                                          max_exponent=self.exponent)
        return self.__add_fixpointnumber(encoded)

    def __add_fixpointnumber(self, encoded):
        if self.public_key.n != encoded.n:
            raise ValueError("Attempted to add numbers encoded against different public keys!")
        x, y = self.__align_exponent(self, encoded)
        encrypted_scalar = x.public_key.raw_encrypt(y.encoding, 1)
        return PaillierEncryptedNumber(self.public_key, self.__raw_add(x.ciphertext(False), encrypted_scalar), x.exponent)

    def __add_encryptednumber(self, other):
        if self.public_key != other.public_key:
            raise ValueError("add two numbers have different public key!")
        x, y = self.__align_exponent(self, other)
        return PaillierEncryptedNumber(self.public_key, self.__raw_add(x.ciphertext(False), y.ciphertext(False)), x.exponent)

    def __raw_add(self, e_x, e_y):
        return e_x * e_y % self.public_key.nsquare
