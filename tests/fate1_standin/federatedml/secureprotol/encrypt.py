"""FATE 1.x's Encrypt / PaillierEncrypt surface, as documented: every entry point works one
value at a time (list comprehensions, mapValues, recursion into arrays)."""
from collections.abc import Iterable

import numpy as np

from .fate_paillier import PaillierEncryptedNumber, PaillierKeypair


class Encrypt:
    def __init__(self):
        self.public_key = None
        self.privacy_key = None

    def generate_key(self, n_length=0):
        pass

    def set_public_key(self, public_key):
        self.public_key = public_key

    def get_public_key(self):
        return self.public_key

    def set_privacy_key(self, privacy_key):
        self.privacy_key = privacy_key

    def get_privacy_key(self):
        return self.privacy_key

    def encrypt(self, value):
        pass

    def decrypt(self, value):
        pass

    def raw_encrypt(self, value):
        pass

    def raw_decrypt(self, value):
        pass

    def encrypt_list(self, values):
        return [self.encrypt(msg) for msg in values]

    def decrypt_list(self, values):
        return [self.decrypt(msg) for msg in values]

    def distribute_decrypt(self, X):
        return X.mapValues(lambda x: self.recursive_decrypt(x))

    def distribute_encrypt(self, X):
        return X.mapValues(lambda x: self.recursive_encrypt(x))

    def distribute_raw_decrypt(self, X):
        return X.mapValues(lambda x: self.recursive_raw_decrypt(x))

    def distribute_raw_encrypt(self, X):
        return X.mapValues(lambda x: self.recursive_raw_encrypt(x))

    def _recursive_func(self, obj, func):
        if isinstance(obj, np.ndarray):
            if len(obj.shape) == 1:
                return np.reshape([func(val) for val in obj], obj.shape)
            return np.reshape([self._recursive_func(o, func) for o in obj], obj.shape)
        elif isinstance(obj, Iterable):
            return type(obj)(self._recursive_func(o, func) if isinstance(o, Iterable) else func(o) for o in obj)
        return func(obj)

    def recursive_encrypt(self, X):
        return self._recursive_func(X, self.encrypt)

    def recursive_decrypt(self, X):
        return self._recursive_func(X, self.decrypt)

    def recursive_raw_encrypt(self, X, exponent=0):
        return self._recursive_func(X, lambda x: self.raw_encrypt(x, exponent))

    def recursive_raw_decrypt(self, X):
        return self._recursive_func(X, self.raw_decrypt)


class PaillierEncrypt(Encrypt):
    def generate_key(self, n_length=2048):
        self.public_key, self.privacy_key = PaillierKeypair.generate_keypair(n_length=n_length)

    def get_key_pair(self):
        return self.public_key, self.privacy_key

    def set_public_key(self, public_key):
        self.public_key = public_key

    def set_privacy_key(self, privacy_key):
        self.privacy_key = privacy_key

    def encrypt(self, value):
        if self.public_key is not None:
            return self.public_key.encrypt(value)
        return None

    def decrypt(self, value):
        if self.privacy_key is not None:
            return self.privacy_key.decrypt(value)
        return None

    def raw_encrypt(self, plaintext, exponent=0):
        cipher_int = self.public_key.raw_encrypt(plaintext)
        return PaillierEncryptedNumber(self.public_key, cipher_int, exponent)

    def raw_decrypt(self, ciphertext):
        return self.privacy_key.raw_decrypt(ciphertext.ciphertext())
