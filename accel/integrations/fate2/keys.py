"""FATE's key objects (``PK``, ``SK``) and ``keygen`` on he-accel keys.

Both pickle as stock FATE's wrappers around fate_utils keys, so a peer without the plugin reads
them with stock code. Like stock FATE, the private key pickles when FATE itself pickles it
(into its own computing workers); this module never sends it anywhere.
"""
from __future__ import annotations

import os
import threading
from typing import Any

from ...djn import DjnKey
from ...keys import PrivateKey, PublicKey, generate_keypair
from . import fate_module, interop
from .coder import Coder
from .runtime import current_backend
from .vectors import EV, FV

ALLOW_UNOBFUSCATED_ENV = "HEA_FATE_ALLOW_UNOBFUSCATED"
DJN_ENV = "HEA_FATE_DJN"
"""``HEA_FATE_DJN=1``: obfuscate fresh encryptions with DJN's hs^r, r of |n|/2 bits (opt-in).

The ciphertexts are standard Paillier ciphertexts (any peer decrypts and adds them with stock
code), at a fraction of the cost of r^n. Extra assumption beyond Paillier's DCRA: hs^r with a short
r is indistinguishable from a uniform n-th residue (the DJN short-exponent assumption, see
:mod:`accel.djn`). An environment variable, so that FATE's computing workers inherit it; each
process draws its own hs for a key (public, never sent) and keeps it for that key."""

_djn_keys: dict[PublicKey, DjnKey] = {}
_djn_lock = threading.Lock()


def djn_wanted() -> bool:
    return os.environ.get(DJN_ENV, "0").strip().lower() in ("1", "true", "yes", "on")


def djn_key_for(pk: PublicKey) -> DjnKey:
    """This process's DJN parameters for ``pk`` (drawn once, from the OS CSPRNG)."""
    with _djn_lock:
        key = _djn_keys.get(pk)
        if key is None:
            key = _djn_keys[pk] = DjnKey.generate(pk)
        return key


class PK:
    """Public key: ``encrypt_encoded(fv, obfuscate)`` and ``encrypt_encoded_scalar``."""

    def __init__(self, pk: Any):
        self.public_key = interop.public_key_of(pk)
        self.max_int = self.public_key.n // 2

    @property
    def pk(self) -> Any:
        """The equivalent fate_utils ``PK`` (what FATE's stock evaluator reads)."""
        return interop.fate_utils_public_key(self.public_key.n, self.max_int)

    def __reduce__(self):
        return (fate_module.current("PK", PK), (self.pk,))

    def __setstate__(self, state: dict) -> None:
        # a stock FATE PK pickled by a process without the plugin ({"pk": fate_utils PK})
        self.__init__(state["pk"] if "pk" in state else state["public_key"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PK) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(self.public_key)

    def __repr__(self) -> str:
        return f"<he-accel fate2 PK {self.public_key.bits} bits {self.public_key.fingerprint}>"

    def encrypt_encoded(self, vec: FV, obfuscate: bool) -> EV:
        """Fresh ciphertexts, always obfuscated unless ``HEA_FATE_ALLOW_UNOBFUSCATED=1``; with
        DJN's short exponent under ``HEA_FATE_DJN=1`` (opt-in, see :data:`DJN_ENV`).

        FATE 2.2.0 drops ``obfuscate=True`` for distributed tensors (CoordinatedLR's
        ``encrypt_tensor``), and an unobfuscated ``1 + m n`` reveals m to anyone; so a ciphertext
        that leaves this method is safe whatever the caller passed (safe by default). The
        evaluator's own deterministic encodings of plaintext operands do not come through here.
        """
        vec = FV.of(vec)
        pk = self.public_key
        if not len(vec):
            return EV([], [])
        honour_false = os.environ.get(ALLOW_UNOBFUSCATED_ENV) == "1"
        obfuscate = bool(obfuscate) or not honour_false
        djn = djn_key_for(pk) if obfuscate and djn_wanted() else None
        cts = current_backend().raw_encrypt(pk, [v % pk.n for v in vec.values], obfuscate=obfuscate, djn=djn)
        return EV(cts, vec.exps)

    def encrypt_encoded_scalar(self, val: Any, obfuscate: bool) -> EV:
        """One ciphertext, as a length-1 vector (the evaluator broadcasts it)."""
        return self.encrypt_encoded(FV.of(val), obfuscate)


class SK:
    """Private key: ``decrypt_to_encoded(ev)`` by CRT on the backend."""

    def __init__(self, sk: Any):
        if isinstance(sk, SK):
            sk = sk.private_key
        if isinstance(sk, PrivateKey):
            self.private_key = sk
        elif interop.is_fate_utils_private_key(sk):
            self.private_key = interop.private_key_of(sk)
        else:
            raise TypeError(f"expected a Paillier private key, got {type(sk).__name__}")

    @property
    def sk(self) -> Any:
        """The equivalent fate_utils ``SK`` (for stock code paths)."""
        return interop.fate_utils_private_key(self.private_key)

    def __reduce__(self):
        return (fate_module.current("SK", SK), (self.sk,))

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["sk"] if "sk" in state else state["private_key"])

    def __repr__(self) -> str:  # never the primes
        return f"<he-accel fate2 SK for {self.private_key.public_key!r}>"

    def decrypt_to_encoded(self, vec: Any) -> FV:
        sk = self.private_key
        v = EV.of(vec, sk.public_key)
        if not len(v):
            return FV([], [])
        return FV(current_backend().raw_decrypt(sk, v.cts), v.exps)


def keygen(key_size: int) -> tuple[SK, PK, Coder]:
    """``(SK, PK, Coder)`` for a fresh key with |n| = key_size bits (primes from the OS CSPRNG)."""
    pk, sk = generate_keypair(int(key_size), allow_insecure=os.environ.get("HEA_ALLOW_INSECURE_KEYS") == "1")
    return SK(sk), PK(pk), Coder(pk)

