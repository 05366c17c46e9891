"""The service's key registry: public keys anyone may use, private keys bound to an owner.

A private key generated or imported by one identity decrypts (and powers the CRT paths) for
that identity only. Keys live in memory; nothing here logs key material (only fingerprints).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from accel.djn import DjnKey
from accel.keys import PrivateKey, PublicKey, generate_keypair

from .errors import InvalidArgument, KeyNotFound, PermissionDenied, ResourceExhausted

log = logging.getLogger(__name__)


@dataclass
class KeyRecord:
    public_key: PublicKey
    registered_by: str
    private_key: PrivateKey | None = None
    owner: str | None = None
    _djn: DjnKey | None = field(default=None, repr=False)

    @property
    def key_id(self) -> str:
        return self.public_key.fingerprint


class KeyRegistry:
    """Thread-safe in-memory registry keyed by the public key's fingerprint."""

    def __init__(self, *, max_keys: int = 10_000, min_bits: int = 1024, max_bits: int = 4096,
                 keygen: Callable[..., tuple[PublicKey, PrivateKey]] = generate_keypair,
                 on_change: Callable[[], None] | None = None):
        self._keys: dict[str, KeyRecord] = {}
        self._lock = threading.Lock()
        self.max_keys = max_keys
        self.min_bits = min_bits
        self.max_bits = max_bits
        self._keygen = keygen
        self._on_change = on_change or (lambda: None)

    # -- parsing ---------------------------------------------------------------------------
    def _parse_public(self, data: bytes) -> PublicKey:
        try:
            pk = PublicKey.from_bytes(data)
        except (ValueError, TypeError) as e:
            raise InvalidArgument(f"public key: {e}") from None
        if not self.min_bits <= pk.bits <= self.max_bits:
            raise InvalidArgument(
                f"public key: {pk.bits}-bit modulus outside the allowed {self.min_bits}..{self.max_bits} bits")
        if pk.n % 2 == 0:
            raise InvalidArgument("public key: the modulus must be odd")
        return pk

    def _insert(self, rec: KeyRecord) -> KeyRecord:
        # caller holds the lock
        if rec.key_id not in self._keys and len(self._keys) >= self.max_keys:
            raise ResourceExhausted(f"the key registry is full ({self.max_keys} keys)")
        self._keys[rec.key_id] = rec
        return rec

    # -- registration ----------------------------------------------------------------------
    def register_public(self, data: bytes, identity: str) -> KeyRecord:
        pk = self._parse_public(data)
        with self._lock:
            rec = self._keys.get(pk.fingerprint)
            if rec is None:
                rec = self._insert(KeyRecord(pk, identity))
                log.info("registered public key %s (%d bits)", pk.fingerprint, pk.bits)
        self._on_change()
        return rec

    def generate(self, bits: int, identity: str) -> KeyRecord:
        if not self.min_bits <= bits <= self.max_bits:
            raise InvalidArgument(f"bits must be in {self.min_bits}..{self.max_bits}, got {bits}")
        pk, sk = self._keygen(bits, allow_insecure=bits < 1024)
        with self._lock:
            rec = self._insert(KeyRecord(pk, identity, sk, identity))
        log.info("generated a %d-bit key pair %s for its owner", bits, pk.fingerprint)
        self._on_change()
        return rec

    def import_private(self, public: bytes, p: bytes, q: bytes, identity: str) -> KeyRecord:
        pk = self._parse_public(public)
        try:
            sk = PrivateKey(pk, int.from_bytes(p, "big"), int.from_bytes(q, "big"))
        except (ValueError, TypeError) as e:
            raise InvalidArgument(f"private key: {e}") from None
        with self._lock:
            rec = self._keys.get(pk.fingerprint)
            if rec is not None and rec.private_key is not None and rec.owner != identity:
                raise PermissionDenied(f"key {pk.fingerprint}: another identity holds its private key")
            if rec is None:
                rec = self._insert(KeyRecord(pk, identity))
            rec.private_key, rec.owner = sk, identity
        log.info("imported the private key of %s for its owner", pk.fingerprint)
        self._on_change()
        return rec

    # -- lookup ----------------------------------------------------------------------------
    def get(self, key_id: str, public: bytes = b"", identity: str = "") -> KeyRecord:
        """The record for ``key_id``; registers ``public`` on the fly when it is unknown."""
        with self._lock:
            rec = self._keys.get(key_id)
        if rec is not None:
            return rec
        if public:
            rec = self.register_public(public, identity)
            if key_id and rec.key_id != key_id:
                raise InvalidArgument(f"key_id {key_id!r} does not match the public key given ({rec.key_id})")
            return rec
        raise KeyNotFound(f"unknown key {key_id!r}: register its public key first")

    def private(self, key_id: str, identity: str, public: bytes = b"") -> tuple[KeyRecord, PrivateKey]:
        rec = self.get(key_id, public, identity)
        sk = rec.private_key
        if sk is None:
            raise KeyNotFound(f"the service holds no private key for {rec.key_id}")
        if rec.owner != identity:
            raise PermissionDenied(f"the private key of {rec.key_id} belongs to another identity")
        return rec, sk

    def djn(self, rec: KeyRecord) -> DjnKey:
        with self._lock:
            if rec._djn is None:
                rec._djn = DjnKey.generate(rec.public_key)
            return rec._djn

    def delete(self, key_id: str, identity: str) -> bool:
        with self._lock:
            rec = self._keys.get(key_id)
            if rec is None:
                return False
            allowed = rec.owner == identity if rec.private_key is not None else rec.registered_by == identity
            if not allowed:
                raise PermissionDenied(f"key {key_id} was not registered by this identity")
            del self._keys[key_id]
        log.info("deleted key %s", key_id)
        self._on_change()
        return True

    def visible(self, identity: str) -> list[KeyRecord]:
        with self._lock:
            return list(self._keys.values())

    def counts(self) -> tuple[int, int]:
        """(keys held, private keys held)."""
        with self._lock:
            recs = list(self._keys.values())
        return len(recs), sum(r.private_key is not None for r in recs)
