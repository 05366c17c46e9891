"""What the client hands back about keys the service holds: :class:`KeyInfo` (a key's record)
and :class:`RemotePrivateKey` (a handle on a private key that stays on the service)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accel.keys import PrivateKey, PublicKey

from .proto.heaccel.v1 import heaccel_pb2 as pb


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    bits: int
    public_key: PublicKey
    has_private_key: bool
    private_key_owned_by_caller: bool
    djn_ready: bool

    @classmethod
    def from_pb(cls, m: pb.KeyInfo) -> "KeyInfo":
        return cls(m.key_id, m.bits, PublicKey.from_bytes(m.public_key), m.has_private_key,
                   m.private_key_owned_by_caller, m.djn_ready)


class RemotePrivateKey(PrivateKey):
    """A handle on a private key that the service generated and holds for this caller.

    It holds no secret: the remote backend decrypts with it (the service checks ownership);
    local backends refuse it. ``client.export_private_key`` fetches the real key (owner only).
    """

    _SECRET_FIELDS = frozenset({"p", "q", "psquare", "qsquare", "hp", "hq", "p_inverse", "q_inverse", "lam"})

    def __init__(self, public_key: PublicKey):  # noqa: super-init-not-called - no primes here
        self.public_key = public_key

    def __getattr__(self, name: str) -> Any:
        if name in RemotePrivateKey._SECRET_FIELDS:
            raise TypeError("this private key is held by the he-accel service: use the remote backend, "
                            "or export it with client.export_private_key()")
        raise AttributeError(name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePrivateKey) and other.public_key == self.public_key

    def __hash__(self) -> int:
        return hash(("RemotePrivateKey", self.public_key.n))

    def __repr__(self) -> str:
        return f"<RemotePrivateKey held by the service for {self.public_key!r}>"

    def __reduce__(self):
        return (RemotePrivateKey, (self.public_key,))
