"""What both clients share: every method, written once as the plan of its call, the retry
policy (UNAVAILABLE retried with exponential backoff and jitter) and the ordering of a chunked
call (a reopened stream resumes at its first unanswered chunk). The clients in
:mod:`accel.service.client` run the plans, blocking or awaitable."""
from __future__ import annotations

import random
from typing import Any, Callable, Iterator, Sequence

import grpc

from accel.keys import PrivateKey, PublicKey

from . import codec
from .channel import channel_args
from .errors import ServiceError, from_status
from .plans import Plan, Planner, key_call, key_ref
from .proto.heaccel.v1 import heaccel_pb2 as pb
from .remote_keys import KeyInfo, RemotePrivateKey

ENCRYPT_MODES = {mode.value: wire for mode, wire in codec.WIRE_ENCRYPT_MODES.items()}  # "textbook": ...
DEFAULT_CHUNK_BYTES = 4 << 20


def _transported(spec: Callable[..., Plan]) -> Callable[..., Plan]:
    """Marks a client method written once in :class:`CallCore`: its body plans the call; each
    client class turns it into a method that runs the plan its own way (blocking or awaitable)."""
    spec._planned_call = True  # type: ignore[attr-defined]
    return spec


class CallCore:
    """What both clients share: the channel's settings, planning, the retry policy, the ordering
    of a chunked call, and every method (each written once below, as the plan of its call).
    A client class supplies ``_execute(plan)`` and ``_bind(spec)``, which makes a method of a spec."""

    def __init__(self, target: str | Sequence[str], *, token: str | None = None,
                 root_certificates: bytes | str | None = None, client_cert: bytes | str | None = None,
                 client_key: bytes | str | None = None, server_name: str | None = None,
                 tls: bool | None = None, timeout: float | None = 300.0, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 retries: int = 6, backoff: float = 0.1, max_backoff: float = 5.0,
                 max_message_bytes: int = 256 << 20):
        self._target, self._creds, self._opts = channel_args(
            target, root_certificates=root_certificates, client_cert=client_cert, client_key=client_key,
            server_name=server_name, max_message_bytes=max_message_bytes, tls=tls)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.planner = Planner(chunk_bytes)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "_bind" in vars(cls):  # a client class: each written-once method, run its way
            for name, spec in vars(CallCore).items():
                if getattr(spec, "_planned_call", False):
                    setattr(cls, name, cls._bind(spec))

    # -- the call core ---------------------------------------------------------------------
    def _stub(self, plan: Plan) -> Any:
        return self.compute if plan.service == "compute" else self.keys

    def _send(self, plan: Plan) -> Any:
        """A one-request plan's call (``_unary(stub, rpc, request)``: the client's own transport)."""
        return self._unary(self._stub(plan), plan.rpc, plan.requests[0])

    def _retry_or_raise(self, e: grpc.RpcError, attempt: int) -> float:
        """Seconds to back off before retrying ``e`` (only UNAVAILABLE, within ``retries``);
        raises the typed exception otherwise."""
        if e.code() != grpc.StatusCode.UNAVAILABLE or attempt >= self.retries:
            raise self._error(e) from None
        return self._delay(attempt)

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * (2 ** attempt)) * (0.5 + random.random() / 2)

    @staticmethod
    def _error(e: grpc.RpcError) -> ServiceError:
        return from_status(e.code(), e.details() or "")

    def _plan_encrypt(self, pk: PublicKey, ms: bytes, mode: str) -> Plan:
        if mode not in ENCRYPT_MODES:
            raise ValueError(f"mode must be one of {sorted(ENCRYPT_MODES)}")
        return self.planner.elementwise("encrypt", pk, {"plaintexts": (ms, pk.plaintext_width)},
                                        {"mode": ENCRYPT_MODES[mode]})

    @staticmethod
    def _stream_requests(plan: Plan, start: int) -> Iterator[pb.StreamRequest]:
        return plan.stream_requests(start)

    # -- every method, written once: each returns the plan of its call ---------------------
    @_transported
    def register_public_key(self, pk: PublicKey) -> KeyInfo:
        return key_call("RegisterPublicKey", pb.RegisterPublicKeyRequest(public_key=pk.to_bytes()), KeyInfo.from_pb)

    @_transported
    def generate_keypair(self, bits: int = 2048) -> tuple[PublicKey, RemotePrivateKey]:
        def pair(m: pb.KeyInfo) -> tuple[PublicKey, RemotePrivateKey]:
            pk = PublicKey.from_bytes(m.public_key)
            return pk, RemotePrivateKey(pk)
        return key_call("GenerateKeyPair", pb.GenerateKeyPairRequest(bits=bits), pair)

    @_transported
    def import_private_key(self, sk: PrivateKey) -> KeyInfo:
        """Hand a private key to the service (the owner's explicit choice); only this identity
        may then decrypt with it there."""
        req = pb.ImportPrivateKeyRequest(public_key=sk.public_key.to_bytes(), p=_be(sk.p), q=_be(sk.q))
        return key_call("ImportPrivateKey", req, KeyInfo.from_pb)

    @_transported
    def export_private_key(self, key: PublicKey | str) -> PrivateKey:
        """The private key the service holds for this identity (its owner only)."""
        def private(m: pb.PrivateKeyMaterial) -> PrivateKey:
            return PrivateKey(PublicKey.from_bytes(m.public_key), int.from_bytes(m.p, "big"),
                              int.from_bytes(m.q, "big"))
        return key_call("ExportPrivateKey", pb.ExportPrivateKeyRequest(key_id=_key_id(key)), private)

    @_transported
    def describe_key(self, key: PublicKey | str) -> KeyInfo:
        ref = key_ref(key) if isinstance(key, PublicKey) else pb.KeyRef(key_id=key)
        return key_call("DescribeKey", ref, KeyInfo.from_pb)

    @_transported
    def delete_key(self, key: PublicKey | str) -> bool:
        return key_call("DeleteKey", pb.DeleteKeyRequest(key_id=_key_id(key)), lambda m: m.deleted)

    @_transported
    def list_keys(self) -> list[KeyInfo]:
        return key_call("ListKeys", pb.ListKeysRequest(), lambda m: [KeyInfo.from_pb(k) for k in m.keys])

    @_transported
    def encrypt(self, pk: PublicKey, ms: bytes, mode: str = "textbook") -> bytes:
        return self._plan_encrypt(pk, ms, mode)

    @_transported
    def decrypt(self, pk: PublicKey, cs: bytes) -> bytes:
        return self.planner.elementwise("decrypt", pk, {"ciphertexts": (cs, pk.ciphertext_width)})

    @_transported
    def add(self, pk: PublicKey, a: bytes, b: bytes) -> bytes:
        cw = pk.ciphertext_width
        return self.planner.elementwise("add", pk, {"a": (a, cw), "b": (b, cw)})

    @_transported
    def add_plain(self, pk: PublicKey, cs: bytes, ms: bytes) -> bytes:
        return self.planner.elementwise("add_plain", pk, {"ciphertexts": (cs, pk.ciphertext_width),
                                                          "plaintexts": (ms, pk.plaintext_width)})

    @_transported
    def mul(self, pk: PublicKey, cs: bytes, scalars: Sequence[int]) -> bytes:
        return self.planner.elementwise("mul", pk, {"ciphertexts": (cs, pk.ciphertext_width)},
                                        scalars=("scalars", list(scalars)))

    @_transported
    def sum(self, pk: PublicKey, cs: bytes) -> bytes:
        return self.planner.sum(pk, cs)

    @_transported
    def sum_groups(self, pk: PublicKey, cs: bytes, counts: Sequence[int]) -> bytes:
        """One sum per group of ``counts[g]`` consecutive ciphertexts (E(0) = 1 for an empty group)."""
        return self.planner.sum_groups(pk, cs, counts)

    @_transported
    def matvec(self, pk: PublicKey, cs: bytes, rows: list[list[int]], columns: int) -> bytes:
        return self.planner.matvec(pk, cs, rows, columns)

    @_transported
    def rerandomize(self, pk: PublicKey, cs: bytes, *, use_private_key: bool = False) -> bytes:
        return self.planner.elementwise("rerandomize", pk, {"ciphertexts": (cs, pk.ciphertext_width)},
                                        {"use_private_key": bool(use_private_key)})

    @_transported
    def powmod(self, bases: Sequence[int], exps: Sequence[int], mod: int) -> list[int]:
        return self.planner.powmod(list(bases), list(exps), mod)


class Progress:
    """A chunked call's answers so far, in order; a reopened stream resumes at the first unanswered chunk."""

    def __init__(self, core: CallCore, plan: Plan):
        self.core = core
        self.plan = plan
        self.results: list[bytes] = []
        self.attempt = 0

    @property
    def done(self) -> bool:
        return len(self.results) >= len(self.plan.requests)

    def pending(self) -> Iterator[pb.StreamRequest]:
        return self.plan.stream_requests(len(self.results))

    def accept(self, resp: pb.StreamResponse) -> None:
        if resp.sequence != len(self.results):
            raise ServiceError(f"stream out of order: got {resp.sequence}, expected {len(self.results)}")
        self.results.append(resp.data)
        self.attempt = 0

    def retry_after(self, e: grpc.RpcError) -> float:
        delay = self.core._retry_or_raise(e, self.attempt)
        self.attempt += 1
        return delay


def _key_id(key: PublicKey | str) -> str:
    return key.fingerprint if isinstance(key, PublicKey) else key


def _be(x: int) -> bytes:
    return x.to_bytes((x.bit_length() + 7) // 8, "big")
