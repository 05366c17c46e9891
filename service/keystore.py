"""Where the key registry's records live across restarts.

:class:`SqliteKeyStore` (the default) keeps every record in an embedded SQLite file; private
keys are sealed with AES-256-GCM (``cryptography``) under a 32-byte key-encryption key (KEK)
that never touches the database: it comes from a file (``--kek-file``) or the environment
(``HEA_KEK``, hex or base64). Each sealed key has a fresh 96-bit nonce from ``secrets`` and is
bound to its key id and owner as associated data, so a row copied onto another key or owner
fails to open. :class:`MemoryKeyStore` keeps nothing (``--key-store memory``).
"""
from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import sqlite3
import stat
import threading
from dataclasses import dataclass
from typing import Iterable, Mapping, Protocol

from accel.keys import PrivateKey, PublicKey

log = logging.getLogger(__name__)

KEK_BYTES = 32
NONCE_BYTES = 12


@dataclass(frozen=True)
class StoredKey:
    public_key: PublicKey
    private_key: PrivateKey | None
    owner: str | None
    registrants: frozenset[str]


class KeyStore(Protocol):
    def load(self) -> Iterable[StoredKey]: ...

    def save(self, key: StoredKey) -> None: ...

    def delete(self, key_id: str) -> None: ...

    def close(self) -> None: ...


class MemoryKeyStore:
    """Keeps nothing: a restart forgets every key."""

    persistent = False

    def load(self) -> Iterable[StoredKey]:
        return ()

    def save(self, key: StoredKey) -> None:
        pass

    def delete(self, key_id: str) -> None:
        pass

    def close(self) -> None:
        pass


def parse_kek(text: str | bytes) -> bytes:
    """A 32-byte KEK from hex (64 digits) or base64 text, or 32 raw bytes."""
    if isinstance(text, bytes) and len(text) == KEK_BYTES:
        return text
    s = text.decode("ascii", "replace") if isinstance(text, bytes) else text
    s = s.strip()
    for decode in (bytes.fromhex, lambda v: base64.b64decode(v, validate=True)):
        try:
            key = decode(s)
        except (ValueError, binascii.Error):
            continue
        if len(key) == KEK_BYTES:
            return key
    raise ValueError(f"the key-encryption key must be {KEK_BYTES} bytes, as 64 hex digits or base64")


def load_kek(path: str | None = None, env: Mapping[str, str] | None = None, *, create: bool = False) -> bytes:
    """The KEK from ``HEA_KEK``, else from the file at ``path`` (created, mode 0600, when
    ``create`` and missing)."""
    env = os.environ if env is None else env
    if env.get("HEA_KEK"):
        return parse_kek(env["HEA_KEK"])
    if not path:
        raise ValueError("a persistent key store needs a key-encryption key: --kek-file or HEA_KEK")
    if create and not os.path.exists(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(KEK_BYTES) + "\n")
        log.warning("created a new key-encryption key at %s: keep it apart from the key store's disk "
                    "(a secret mount) and back it up; without it the stored private keys are lost", path)
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the key-encryption key file %s is readable by other users: chmod 600 it", path)
    with open(path, "rb") as f:
        return parse_kek(f.read())


def _ints_to_bytes(*xs: int) -> bytes:
    out = bytearray()
    for x in xs:
        b = x.to_bytes((x.bit_length() + 7) // 8 or 1, "big")
        out += len(b).to_bytes(4, "big") + b
    return bytes(out)


def _bytes_to_ints(data: bytes) -> list[int]:
    out, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i:i + 4], "big")
        out.append(int.from_bytes(data[i + 4:i + 4 + n], "big"))
        i += 4 + n
    return out


class SqliteKeyStore:
    """Records in one SQLite file (WAL, synchronous=FULL: a record is on disk before the RPC
    that made it answers). ``kek``: 32 bytes; private keys never reach the file in clear."""

    persistent = True

    def __init__(self, path: str, kek: bytes):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 - service extra

        if len(kek) != KEK_BYTES:
            raise ValueError(f"the key-encryption key must be {KEK_BYTES} bytes")
        self.path = path
        self._aead = AESGCM(kek)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, public_key BLOB NOT NULL, "
                             "owner TEXT, nonce BLOB, sealed_private BLOB)")
            self._db.execute("CREATE TABLE IF NOT EXISTS registrations (key_id TEXT NOT NULL, identity TEXT NOT NULL, "
                             "PRIMARY KEY (key_id, identity))")
        try:
            os.chmod(path, 0o600)
        except OSError:
            pass

    @staticmethod
    def _aad(key_id: str, owner: str) -> bytes:
        return b"he-accel key store v1\0" + key_id.encode() + b"\0" + owner.encode()

    def _seal(self, key_id: str, owner: str, sk: PrivateKey) -> tuple[bytes, bytes]:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, _ints_to_bytes(sk.p, sk.q), self._aad(key_id, owner))

    def _open(self, pk: PublicKey, owner: str, nonce: bytes, sealed: bytes) -> PrivateKey:
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415

        try:
            p, q = _bytes_to_ints(self._aead.decrypt(nonce, sealed, self._aad(pk.fingerprint, owner)))
        except InvalidTag:
            raise ValueError(f"key store: the private key of {pk.fingerprint} does not open under this "
                             "key-encryption key (wrong KEK, or the row was altered)") from None
        return PrivateKey(pk, p, q)

    def load(self) -> list[StoredKey]:
        with self._lock:
            rows = self._db.execute("SELECT key_id, public_key, owner, nonce, sealed_private FROM keys").fetchall()
            regs = self._db.execute("SELECT key_id, identity FROM registrations").fetchall()
        by_key: dict[str, set[str]] = {}
        for kid, ident in regs:
            by_key.setdefault(kid, set()).add(ident)
        out = []
        for kid, pub, owner, nonce, sealed in rows:
            pk = PublicKey.from_bytes(pub)
            if pk.fingerprint != kid:
                raise ValueError(f"key store: row {kid!r} holds another key ({pk.fingerprint})")
            sk = self._open(pk, owner, nonce, sealed) if sealed is not None else None
            out.append(StoredKey(pk, sk, owner if sk is not None else None, frozenset(by_key.get(kid, ()))))
        return out

    def save(self, key: StoredKey) -> None:
        kid = key.public_key.fingerprint
        nonce = sealed = None
        if key.private_key is not None:
            nonce, sealed = self._seal(kid, key.owner or "", key.private_key)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?)",
                                 (kid, key.public_key.to_bytes(), key.owner if sealed else None, nonce, sealed))
                self._db.execute("DELETE FROM registrations WHERE key_id = ?", (kid,))
                self._db.executemany("INSERT INTO registrations VALUES (?, ?)", [(kid, i) for i in key.registrants])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def delete(self, key_id: str) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM keys WHERE key_id = ?", (key_id,))
            self._db.execute("DELETE FROM registrations WHERE key_id = ?", (key_id,))
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_key_store(spec: str, kek_file: str | None = None, env: Mapping[str, str] | None = None) -> KeyStore:
    """``memory``, or ``sqlite:PATH`` / a bare PATH. The KEK file defaults to PATH + '.kek'
    (created on first use when no KEK is given at all)."""
    if spec == "memory":
        return MemoryKeyStore()
    path = spec[len("sqlite:"):] if spec.startswith("sqlite:") else spec
    if not path:
        raise ValueError("--key-store: give 'memory' or sqlite:PATH")
    env = os.environ if env is None else env
    explicit = bool(kek_file or env.get("HEA_KEK"))
    kek = load_kek(kek_file or path + ".kek", env, create=not explicit)
    return SqliteKeyStore(path, kek)
