"""The service's key registry: public keys registered per identity, private keys bound to an owner.

Each key (by fingerprint) records which identities registered it; an identity sees, lists and
counts against its quota only the keys it registered (or whose private key it owns). A private
key generated or imported by one identity decrypts (and powers the CRT paths) for that identity
only. A request resolves its key first and registers it only once the whole request is valid
(:meth:`KeyRegistry.resolve` then :meth:`KeyRegistry.commit`), so a rejected request leaves
nothing behind. Records live in memory and, through a :class:`~service.keystore.KeyStore`, on
disk (private keys encrypted). Nothing here logs key material (only fingerprints).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable

from accel.djn import DjnKey
from accel.keys import PrivateKey, PublicKey, generate_keypair

from .errors import InvalidArgument, KeyNotFound, PermissionDenied, ResourceExhausted
from .keystore import KeyStore, MemoryKeyStore, StoredKey

log = logging.getLogger(__name__)

MAX_ECHOED_KEY_ID = 64  # a key_id longer than a fingerprint is never echoed whole into a status


def shown(key_id: str) -> str:
    """``key_id`` as it may appear in an error message (bounded, repr-quoted)."""
    if len(key_id) > MAX_ECHOED_KEY_ID:
        return f"{key_id[:16]!r}... ({len(key_id)} characters)"
    return repr(key_id)


@dataclass
class KeyRecord:
    public_key: PublicKey
    registered_by: str                      # the first registrant (kept for logs and compatibility)
    private_key: PrivateKey | None = None
    owner: str | None = None
    registrants: set[str] = field(default_factory=set)
    _djn: DjnKey | None = field(default=None, repr=False)

    @property
    def key_id(self) -> str:
        return self.public_key.fingerprint

    @cached_property
    def packed(self) -> bytes:
        """The public key's packed form, computed once (requests carry it: compared, not parsed)."""
        return self.public_key.to_bytes()

    def visible_to(self, identity: str) -> bool:
        return identity in self.registrants or (self.private_key is not None and self.owner == identity)


class KeyRegistry:
    """Thread-safe registry keyed by the public key's fingerprint, written through to ``store``."""

    def __init__(self, *, max_keys: int = 10_000, max_keys_per_identity: int = 1_000, min_bits: int = 1024,
                 max_bits: int = 4096, keygen: Callable[..., tuple[PublicKey, PrivateKey]] = generate_keypair,
                 store: KeyStore | None = None, on_change: Callable[[], None] | None = None):
        self._keys: dict[str, KeyRecord] = {}
        self._per_identity: dict[str, int] = {}
        self._lock = threading.Lock()
        self.max_keys = max_keys
        self.max_keys_per_identity = max_keys_per_identity
        self.min_bits = min_bits
        self.max_bits = max_bits
        self._keygen = keygen
        self.store = store if store is not None else MemoryKeyStore()
        self._on_change = on_change or (lambda: None)
        for s in self.store.load():
            rec = KeyRecord(s.public_key, s.owner or next(iter(sorted(s.registrants)), ""), s.private_key,
                            s.owner, set(s.registrants))
            self._keys[rec.key_id] = rec
            for ident in self._holders(rec):
                self._per_identity[ident] = self._per_identity.get(ident, 0) + 1
        if self._keys:
            log.info("loaded %d keys (%d private) from the key store", *self.counts())

    # -- bookkeeping (caller holds the lock) -------------------------------------------------
    @staticmethod
    def _holders(rec: KeyRecord) -> set[str]:
        return rec.registrants | ({rec.owner} if rec.private_key is not None and rec.owner else set())

    def _admit(self, rec: KeyRecord | None, identity: str) -> None:
        """Room for ``identity`` to hold one more key (``rec`` None: a new record)."""
        if rec is None and len(self._keys) >= self.max_keys:
            raise ResourceExhausted(f"the key registry is full ({self.max_keys} keys)")
        if (rec is None or identity not in self._holders(rec)) and \
                self._per_identity.get(identity, 0) >= self.max_keys_per_identity:
            raise ResourceExhausted(
                f"this identity holds {self.max_keys_per_identity} keys, its quota; delete some first")

    def _hold(self, rec: KeyRecord, identity: str, before: set[str]) -> None:
        for ident in self._holders(rec) - before:
            self._per_identity[ident] = self._per_identity.get(ident, 0) + 1
        for ident in before - self._holders(rec):
            self._per_identity[ident] -= 1
            if not self._per_identity[ident]:
                del self._per_identity[ident]

    def _save(self, rec: KeyRecord) -> None:
        self.store.save(StoredKey(rec.public_key, rec.private_key, rec.owner, frozenset(rec.registrants)))

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

    # -- registration ----------------------------------------------------------------------
    def register_public(self, data: bytes, identity: str) -> KeyRecord:
        return self.commit(self._transient(self._parse_public(data)), identity)

    def _transient(self, pk: PublicKey) -> KeyRecord:
        with self._lock:
            rec = self._keys.get(pk.fingerprint)
        return rec if rec is not None else KeyRecord(pk, "")

    def commit(self, rec: KeyRecord, identity: str) -> KeyRecord:
        """Register ``rec`` (from :meth:`resolve`) for ``identity``, once its request proved valid."""
        with self._lock:
            live = self._keys.get(rec.key_id)
            if live is not None and identity in live.registrants:
                return live
            self._admit(live, identity)
            if live is None:
                live = self._keys[rec.key_id] = KeyRecord(rec.public_key, identity, _djn=rec._djn)
                log.info("registered public key %s (%d bits)", rec.key_id, rec.public_key.bits)
            before = self._holders(live)
            live.registrants.add(identity)
            self._hold(live, identity, before)
            self._save(live)
        self._on_change()
        return live

    def generate(self, bits: int, identity: str) -> KeyRecord:
        if not self.min_bits <= bits <= self.max_bits:
            raise InvalidArgument(f"bits must be in {self.min_bits}..{self.max_bits}, got {bits}")
        with self._lock:
            self._admit(None, identity)  # checked before the costly keygen, and again after it
        pk, sk = self._keygen(bits, allow_insecure=bits < 1024)
        with self._lock:
            self._admit(self._keys.get(pk.fingerprint), identity)
            rec = self._keys[pk.fingerprint] = KeyRecord(pk, identity, sk, identity, {identity})
            self._hold(rec, identity, set())
            self._save(rec)
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
            self._admit(rec, identity)
            if rec is None:
                rec = self._keys[pk.fingerprint] = KeyRecord(pk, identity)
            before = self._holders(rec)
            rec.private_key, rec.owner = sk, identity
            rec.registrants.add(identity)
            self._hold(rec, identity, before)
            self._save(rec)
        log.info("imported the private key of %s for its owner", pk.fingerprint)
        self._on_change()
        return rec

    # -- lookup ----------------------------------------------------------------------------
    def resolve(self, key_id: str, public: bytes, identity: str) -> KeyRecord:
        """The key a request names, checked but not registered (see :meth:`commit`).

        With both ``key_id`` and ``public``, they must name the same key, known or not; a
        ``key_id`` alone must be one this identity registered.
        """
        if public:
            if key_id:
                with self._lock:
                    rec = self._keys.get(key_id)
                if rec is not None and rec.packed == public:
                    return rec  # the usual case: a known key, sent as it was registered
            pk = self._parse_public(public)
            if key_id and pk.fingerprint != key_id:
                raise InvalidArgument(f"key_id {shown(key_id)} does not match the public key given ({pk.fingerprint})")
            return self._transient(pk)
        with self._lock:
            rec = self._keys.get(key_id)
            if rec is not None and rec.visible_to(identity):
                return rec
        raise KeyNotFound(f"unknown key {shown(key_id)}: register its public key first")

    def get(self, key_id: str, public: bytes = b"", identity: str = "") -> KeyRecord:
        """The record for a key reference, registered for ``identity`` when ``public`` is given."""
        rec = self.resolve(key_id, public, identity)
        return self.commit(rec, identity) if public else rec

    def private(self, key_id: str, identity: str, public: bytes = b"") -> tuple[KeyRecord, PrivateKey]:
        rec = self.resolve(key_id, public, identity)
        return rec, self.private_of(rec, identity)

    @staticmethod
    def private_of(rec: KeyRecord, identity: str) -> PrivateKey:
        """The private key of a resolved record, for its owner only."""
        sk = rec.private_key
        if sk is None:
            raise KeyNotFound(f"the service holds no private key for {rec.key_id}")
        if rec.owner != identity:
            raise PermissionDenied(f"the private key of {rec.key_id} belongs to another identity")
        return sk

    def djn(self, rec: KeyRecord) -> DjnKey:
        with self._lock:
            if rec._djn is None:
                rec._djn = DjnKey.generate(rec.public_key)
            return rec._djn

    def delete(self, key_id: str, identity: str) -> bool:
        """Drop ``identity``'s hold on a key: the whole record when it owns the private key or is
        the last registrant."""
        with self._lock:
            rec = self._keys.get(key_id)
            if rec is None:
                return False
            if rec.private_key is not None and rec.owner != identity:
                raise PermissionDenied(f"key {key_id}: another identity holds its private key")
            if rec.private_key is None and identity not in rec.registrants:
                raise PermissionDenied(f"key {key_id} was not registered by this identity")
            before = self._holders(rec)
            rec.registrants.discard(identity)
            if rec.private_key is not None or not rec.registrants:
                rec.registrants.clear()
                rec.private_key = rec.owner = None
                del self._keys[key_id]
                self.store.delete(key_id)
            else:
                self._save(rec)
            self._hold(rec, identity, before)
        log.info("deleted key %s for one identity", key_id)
        self._on_change()
        return True

    def visible(self, identity: str) -> list[KeyRecord]:
        """The keys ``identity`` registered or owns (never another identity's)."""
        with self._lock:
            return [r for r in self._keys.values() if r.visible_to(identity)]

    def counts(self) -> tuple[int, int]:
        """(keys held, private keys held)."""
        with self._lock:
            recs = list(self._keys.values())
        return len(recs), sum(r.private_key is not None for r in recs)
