"""he-accel: batch Paillier homomorphic encryption for federated learning.

The raw batch API (ints in, ints out) lives on backends::

    from accel import generate_keypair, get_backend
    pk, sk = generate_keypair(2048)
    be = get_backend("cpu")
    c = be.raw_encrypt(pk, [1, 2, 3])
    assert be.raw_decrypt(sk, be.raw_add(pk, c, c)) == [2, 4, 6]

and the encoded layer (floats, exponents) on :class:`EncryptedVector`.
"""
from . import _checkout

_checkout.install()  # a plain checkout's service/ and bench/ are accel.service and accel.bench

from .backends import Backend, BackendUnavailableError, CpuBackend, KeyMismatchError, get_backend
from .ciphertext import EncryptedVector
from .encoding import (
    Convention,
    DecodeOverflowError,
    EncodedBatch,
    FixedPointCodec,
    PlaintextOverflowError,
)
from .keys import PrivateKey, PublicKey, generate_keypair
from .obfuscators import ObfuscatorPool
from .packed import PackedCodec, PackedOverflowError, PackedVector
from .packing import Packing

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "Convention",
    "CpuBackend",
    "DecodeOverflowError",
    "EncodedBatch",
    "EncryptedVector",
    "FixedPointCodec",
    "KeyMismatchError",
    "ObfuscatorPool",
    "PackedCodec",
    "PackedOverflowError",
    "PackedVector",
    "Packing",
    "PlaintextOverflowError",
    "PrivateKey",
    "PublicKey",
    "generate_keypair",
    "get_backend",
]
