"""The remote backend: the raw batch API served by an he-accel appliance over gRPC.

``get_backend("remote", target="host:port")`` (or several targets, round-robin) returns a
:class:`RemoteBackend`, interchangeable with the local ones: same validation, same packing,
same results (and :class:`accel.EncryptedVector` works on it unchanged).

It lives with the client, on top of the library: the core never imports the service. It joins
the backend registry through the ``he_accel.backends`` entry point ``remote`` (pyproject; a
plain checkout has the same entry in :mod:`accel._checkout`), which names :func:`make_backend`.

Randomness: by default the service draws it (textbook, CRT and DJN encryption, re-randomising).
With an explicit ``rng=`` the backend draws r here and has the service compute r^n, so runs are
reproducible; ``djn=`` then uses the given DJN parameters the same way.

Private keys stay with their owner. A :class:`~accel.service.client.RemotePrivateKey` (from
``client.generate_keypair``) decrypts on the service. A local :class:`PrivateKey` decrypts on
the service only if the service already holds it for this caller, or if the backend was made
with ``upload_private_keys=True`` (then it is imported once); otherwise it decrypts here, on
the local CPU backend, and the key never leaves the process. When a service that held an
uploaded key answers that it no longer does (a restart with an in-memory key store, another
replica), the key is uploaded again and the call retried once.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any

from accel.backends import BackendUnavailableError, get_backend
from accel.backends.base import Backend, EncryptMode, encrypt_mode, group_counts, need_djn, need_public
from accel.djn import DjnKey
from accel.keys import PrivateKey, PublicKey, RandomSource
from accel.packing import blob_to_ints, from_blob, ints_to_blob, to_blob

from . import codec
from .client import HeAccelClient, RemotePrivateKey
from .errors import FailedPrecondition, KeyNotFound, PermissionDenied

log = logging.getLogger(__name__)

# the service's answers to "describe this key" that mean it does not hold it for us
_NOT_HELD = (KeyNotFound, PermissionDenied, FailedPrecondition)


def make_backend(**kwargs: Any) -> RemoteBackend:
    """The registry's factory for ``get_backend("remote", ...)``: ``target=`` or ``client=``,
    else the shared service named by ``HEA_TARGET``."""
    if "target" not in kwargs and "client" not in kwargs:
        if not os.environ.get("HEA_TARGET"):
            raise BackendUnavailableError("the remote backend needs target='host:port' (or HEA_TARGET)")
        kwargs["target"] = os.environ["HEA_TARGET"]
    return RemoteBackend(**kwargs)


def _first_out_of_range(blob: bytes, pk: PublicKey) -> int:
    """Index of the first ciphertext not in [1, n^2), or -1 (vectorised, as the service checks)."""
    w = pk.ciphertext_width
    bad = [i for i in (codec.first_zero(blob, w), codec.first_not_below(blob, w, pk.nsquare)) if i >= 0]
    return min(bad, default=-1)


class RemoteBackend(Backend):
    name = "remote"

    def __init__(self, target: Any = None, *, client: Any = None, upload_private_keys: bool = False,
                 rng: RandomSource | None = None, **client_kwargs: Any):
        super().__init__(rng=rng)
        if client is None:
            if target is None:
                raise ValueError("the remote backend needs target='host:port' (or a list of them)")
            client = HeAccelClient(target, **client_kwargs)
            self._own_client = True
        else:
            self._own_client = False
        self.client = client
        self.target = target
        self.upload_private_keys = upload_private_keys
        self._held: dict[str, bool] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "target": str(self.target)}

    # -- private keys --------------------------------------------------------------------------
    def _is_remote_key(self, sk: Any) -> bool:
        return isinstance(sk, RemotePrivateKey)

    def _service_holds(self, sk: PrivateKey) -> bool:
        """Does the service hold this private key for us (importing it when allowed)?"""
        if self._is_remote_key(sk):
            return True
        kid = sk.public_key.fingerprint
        with self._lock:
            known = self._held.get(kid)
        if known is not None:
            return known
        try:
            info = self.client.describe_key(sk.public_key)
            held = info.private_key_owned_by_caller
        except _NOT_HELD:
            held = False
        if not held and self.upload_private_keys:
            self.client.import_private_key(sk)
            held = True
        with self._lock:
            self._held[kid] = held
        return held

    def _with_private(self, sk: PrivateKey, call: Any) -> Any:
        """``call()`` on the service with ``sk`` held there; re-uploads ``sk`` once if the service
        lost it (only a key this process owns and was allowed to upload)."""
        try:
            return call()
        except KeyNotFound:
            if self._is_remote_key(sk) or not self.upload_private_keys:
                raise
        kid = sk.public_key.fingerprint
        log.info("the service no longer holds the private key of %s: uploading it again", kid)
        self.client.import_private_key(sk)
        with self._lock:
            self._held[kid] = True
        return call()

    def _local(self) -> Backend:
        return get_backend("cpu")

    # -- overrides where the service draws the randomness ---------------------------------------
    def raw_encrypt(self, pk: PublicKey, ms: Any, *, obfuscate: bool = True, rng: RandomSource | None = None,
                    obfuscators: Any = None, private_key: PrivateKey | None = None,
                    djn: DjnKey | None = None) -> Any:
        pk = need_public(pk)
        mode = encrypt_mode(obfuscate=obfuscate, obfuscators=obfuscators, djn=djn, private_key=private_key)
        if mode in (EncryptMode.DETERMINISTIC, EncryptMode.POOLED) or rng is not None:
            # randomness drawn here (or none): the base class, through the hooks below
            if private_key is not None and self._is_remote_key(private_key) and rng is not None:
                raise ValueError("explicit rng with a service-held private key: the service draws CRT randomness")
            return super().raw_encrypt(pk, ms, obfuscate=obfuscate, rng=rng, obfuscators=obfuscators,
                                       private_key=private_key, djn=djn)
        blob, packing = to_blob(ms, pk.plaintext_width, "plaintext")
        if mode is EncryptMode.DJN:
            need_djn(pk, djn)  # the service's own DJN parameters for this key (same assumption)
        elif mode is EncryptMode.CRT:
            sk = self._check_private_matches(pk, private_key)
            if self._service_holds(sk):
                return from_blob(self._with_private(sk, lambda: self.client.encrypt(pk, blob, mode.value)),
                                 pk.ciphertext_width, packing)
            mode = EncryptMode.TEXTBOOK  # the key stays here: the service draws textbook randomness
        return from_blob(self.client.encrypt(pk, blob, mode.value), pk.ciphertext_width, packing)

    def raw_rerandomize(self, pk: PublicKey, cs: Any, *, rng: RandomSource | None = None,
                        obfuscators: Any = None, private_key: PrivateKey | None = None) -> Any:
        pk = need_public(pk)
        if rng is not None or obfuscators is not None:
            return super().raw_rerandomize(pk, cs, rng=rng, obfuscators=obfuscators, private_key=private_key)
        blob, packing = to_blob(cs, pk.ciphertext_width, "ciphertext")
        sk = self._check_private_matches(pk, private_key) if private_key is not None else None
        if sk is not None and self._service_holds(sk):
            out = self._with_private(sk, lambda: self.client.rerandomize(pk, blob, use_private_key=True))
        else:
            out = self.client.rerandomize(pk, blob, use_private_key=False)
        return from_blob(out, pk.ciphertext_width, packing)

    def raw_sum_groups(self, pk: PublicKey, cs: Any, counts: Any) -> Any:
        # one SumGroups call instead of the base's tree of Add calls (a round trip per level);
        # bad input fails here with the local backends' ValueError, before anything is sent
        pk = need_public(pk)
        blob, packing = to_blob(cs, pk.ciphertext_width, "ciphertext")
        sizes = group_counts(counts, len(blob) // pk.ciphertext_width)
        i = _first_out_of_range(blob, pk)
        if i >= 0:
            raise ValueError(f"ciphertext[{i}] is out of range: must be in [1, n^2)")
        return from_blob(self.client.sum_groups(pk, blob, sizes), pk.ciphertext_width, packing)

    def obfuscators(self, pk: PublicKey, count: int, *, rng: RandomSource | None = None,
                    private_key: PrivateKey | None = None, djn: DjnKey | None = None) -> bytes:
        pk = need_public(pk)
        if rng is not None or djn is not None or count <= 0:
            return super().obfuscators(pk, count, rng=rng, private_key=private_key, djn=djn)
        zeros = bytes(pk.plaintext_width * count)  # E(0) = r^n: an obfuscator
        sk = self._check_private_matches(pk, private_key) if private_key is not None else None
        if sk is not None and self._service_holds(sk):
            return self._with_private(sk, lambda: self.client.encrypt(pk, zeros, "crt"))
        return self.client.encrypt(pk, zeros, "textbook")

    # -- hooks ---------------------------------------------------------------------------------
    def _obfuscators(self, pk: PublicKey, rs: bytes) -> bytes:
        w, cw = pk.plaintext_width, pk.ciphertext_width
        rs_i = blob_to_ints(rs, w)
        return ints_to_blob(self.client.powmod(rs_i, [pk.n] * len(rs_i), pk.nsquare), cw)

    def _obfuscators_crt(self, sk: PrivateKey, zp: bytes, zq: bytes) -> bytes:
        # explicit-rng CRT obfuscators need p and q: computed here, the key stays local
        return self._local()._obfuscators_crt(sk, zp, zq)

    def _encrypt_with(self, pk: PublicKey, ms: bytes, obf: bytes | None) -> bytes:
        det = self.client.encrypt(pk, ms, "deterministic")
        return det if obf is None else self.client.add(pk, det, obf)

    def _encrypt(self, pk: PublicKey, ms: bytes, rs: bytes) -> bytes:
        return self._encrypt_with(pk, ms, self._obfuscators(pk, rs))

    def _encrypt_crt(self, sk: PrivateKey, ms: bytes, zp: bytes, zq: bytes) -> bytes:
        return self._encrypt_with(sk.public_key, ms, self._obfuscators_crt(sk, zp, zq))

    def _encrypt_djn(self, pk: PublicKey, djn: DjnKey, ms: bytes | None, rs: bytes) -> bytes:
        rs_i = blob_to_ints(rs, pk.plaintext_width)
        obf = ints_to_blob(self.client.powmod([djn.hs] * len(rs_i), rs_i, pk.nsquare), pk.ciphertext_width)
        return obf if ms is None else self._encrypt_with(pk, ms, obf)

    def _decrypt(self, sk: PrivateKey, cs: bytes) -> bytes:
        if self._service_holds(sk):
            return self._with_private(sk, lambda: self.client.decrypt(sk.public_key, cs))
        return self._local()._decrypt(sk, cs)

    def _add(self, pk: PublicKey, a: bytes, b: bytes) -> bytes:
        return self.client.add(pk, a, b)

    def _add_plain(self, pk: PublicKey, cs: bytes, ms: bytes) -> bytes:
        return self.client.add_plain(pk, cs, ms)

    def _mul(self, pk: PublicKey, cs: bytes, ks: list[int]) -> bytes:
        return self.client.mul(pk, cs, ks)

    def _sum(self, pk: PublicKey, cs: bytes) -> bytes:
        return self.client.sum(pk, cs)

    def _matvec(self, pk: PublicKey, cs: bytes, rows_x: list[list[int]]) -> bytes:
        return self.client.matvec(pk, cs, rows_x, len(rows_x[0]) if rows_x else 0)

    def _rerandomize(self, pk: PublicKey, cs: bytes, rs: bytes) -> bytes:
        return self.client.add(pk, cs, self._obfuscators(pk, rs))

    def _rerandomize_with(self, pk: PublicKey, cs: bytes, obf: bytes) -> bytes:
        return self.client.add(pk, cs, obf)

    def _powmod(self, bases: list[int], exps: list[int], mod: int) -> list[int]:
        return self.client.powmod(bases, exps, mod)
