"""Clients of the he-accel service: :class:`HeAccelClient` (blocking) and
:class:`AsyncHeAccelClient` (asyncio), with the same methods: each is written once, in their
shared call core, as the plan of its call; each client runs plans its own way.

* One target (``"host:port"``) or several (a list): several appliances are used with gRPC's
  ``round_robin`` load balancing, and every request carries its public key so that any box
  can serve it without a registration step.
* Batches larger than ``chunk_bytes`` go over the ordered ``Stream`` RPC in chunks; sums and
  matrix products over chunks are combined here (a product mod n^2 of the partial results).
* UNAVAILABLE is retried with exponential backoff and jitter (a stream resumes at its first
  unanswered chunk); every other failure raises the typed :mod:`accel.service.errors` exception.

Numbers go in and come out packed (bytes, little-endian at the key's widths). For ints and
:class:`accel.EncryptedVector`, use the remote backend: ``accel.get_backend("remote", target=...)``.
This module needs only ``grpcio`` and ``protobuf`` (it runs under FATE 2.x's pins).
"""
from __future__ import annotations

import asyncio
import functools
import ipaddress
import itertools
import random
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import grpc

from accel.keys import PrivateKey, PublicKey
from accel.packing import blob_to_ints, ints_to_blob

from . import codec
from .errors import InvalidArgument, ServiceError, from_status
from .ops import BY_RPC, COMPUTE_OPS
from .proto.heaccel.v1 import heaccel_pb2 as pb
from .proto.heaccel.v1 import heaccel_pb2_grpc as pb_grpc

ENCRYPT_MODES = {mode.value: wire for mode, wire in codec.WIRE_ENCRYPT_MODES.items()}  # "textbook": ...
DEFAULT_CHUNK_BYTES = 4 << 20


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


# -- request planning (shared by both clients) -------------------------------------------------

@dataclass
class _Plan:
    rpc: str                                  # the KeyService or ComputeService method
    requests: list[Any]                       # one per chunk; one element means a unary call
    finish: Callable[[list[Any]], Any]        # the replies' payloads -> the method's result

    @property
    def service(self) -> str:
        return "compute" if self.rpc in BY_RPC else "keys"

    def payload(self, reply: Any) -> Any:
        """What ``finish`` reads of a unary reply: a compute op's packed numbers, a key call's message."""
        op = BY_RPC.get(self.rpc)
        return reply if op is None else getattr(reply, op.result)

    def stream_requests(self, start: int) -> Iterator[pb.StreamRequest]:
        """The chunks from ``start`` on, as ``Stream`` messages (``start`` is read now, not when iterated)."""
        field = BY_RPC[self.rpc].name
        return (pb.StreamRequest(sequence=seq, **{field: self.requests[seq]})
                for seq in range(start, len(self.requests)))


def _key_call(rpc: str, request: Any, finish: Callable[[Any], Any]) -> _Plan:
    """A plan of one KeyService call: ``finish`` reads its reply."""
    return _Plan(rpc, [request], lambda replies: finish(replies[0]))


def _key_ref(pk: PublicKey) -> pb.KeyRef:
    return pb.KeyRef(key_id=pk.fingerprint, public_key=pk.to_bytes())


def _signed(values: Sequence[int], at_most: int) -> pb.SignedNumbers:
    width = codec.signed_width(list(values), at_most)
    mags, neg = codec.pack_signed(list(values), width)
    return pb.SignedNumbers(magnitudes=mags, width=width, negative=neg)


def _join(parts: list[bytes]) -> bytes:
    return b"".join(parts)


def _chunks(count: int, per: int) -> list[tuple[int, int]]:
    if count == 0:
        return [(0, 0)]
    return [(i, min(count, i + per)) for i in range(0, count, per)]


def _product_mod(nsquare: int, width: int, columns: int) -> Callable[[list[bytes]], bytes]:
    """Combine partial results (each ``columns`` ciphertexts) by a product mod n^2."""
    def finish(parts: list[bytes]) -> bytes:
        if len(parts) == 1:
            return parts[0]
        acc = blob_to_ints(parts[0], width)
        for p in parts[1:]:
            acc = [a * b % nsquare for a, b in zip(acc, blob_to_ints(p, width))]
        return ints_to_blob(acc, width)
    return finish


class _Planner:
    def __init__(self, chunk_bytes: int):
        self.chunk_bytes = max(1, chunk_bytes)

    def _per_chunk(self, bytes_per_element: int) -> int:
        return max(1, self.chunk_bytes // max(1, bytes_per_element))

    def elementwise(self, op: str, pk: PublicKey, fields: dict[str, tuple[bytes, int]],
                    extra: dict[str, Any] | None = None, scalars: tuple[str, list[int]] | None = None) -> _Plan:
        """Requests for an elementwise op: ``fields`` name -> (blob, width); optional signed
        ``scalars`` (field name, values) split along with them."""
        count = None
        for name, (blob, width) in fields.items():
            c = codec.count_of(blob, width, name)
            if count is not None and c != count:
                raise InvalidArgument(f"length mismatch: {count} vs {c} elements")
            count = c
        count = count or 0
        if scalars is not None and len(scalars[1]) != count:
            raise InvalidArgument(f"length mismatch: {count} elements, {len(scalars[1])} scalars")
        per_el = sum(w for _, w in fields.values()) + (pk.plaintext_width if scalars else 0)
        reqs = []
        msg = COMPUTE_OPS[op].request
        for lo, hi in _chunks(count, self._per_chunk(per_el)):
            kw = {name: blob[lo * w:hi * w] for name, (blob, w) in fields.items()}
            if scalars is not None:
                kw[scalars[0]] = _signed(scalars[1][lo:hi], pk.plaintext_width)
            reqs.append(msg(key=_key_ref(pk), **kw, **(extra or {})))
        return _Plan(COMPUTE_OPS[op].rpc, reqs, _join)

    def sum(self, pk: PublicKey, cs: bytes) -> _Plan:
        cw = pk.ciphertext_width
        count = codec.count_of(cs, cw, "ciphertexts")
        reqs = [pb.SumRequest(key=_key_ref(pk), ciphertexts=cs[lo * cw:hi * cw])
                for lo, hi in _chunks(count, self._per_chunk(cw))]
        return _Plan("Sum", reqs, _product_mod(pk.nsquare, cw, 1))

    def matvec(self, pk: PublicKey, cs: bytes, rows: list[list[int]], columns: int) -> _Plan:
        cw = pk.ciphertext_width
        count = codec.count_of(cs, cw, "ciphertexts")
        if len(rows) != count:
            raise InvalidArgument(f"X has {len(rows)} rows but there are {count} ciphertexts")
        reqs = []
        for lo, hi in _chunks(count, self._per_chunk(cw + columns * 8)):
            flat = [v for r in rows[lo:hi] for v in r]
            reqs.append(pb.MatVecRequest(key=_key_ref(pk), ciphertexts=cs[lo * cw:hi * cw],
                                         matrix=_signed(flat, pk.plaintext_width), columns=columns))
        return _Plan("MatVec", reqs, _product_mod(pk.nsquare, cw, columns))

    def powmod(self, bases: list[int], exps: list[int], mod: int) -> _Plan:
        width = -(-mod.bit_length() // 32) * 4
        mbytes = mod.to_bytes((mod.bit_length() + 7) // 8, "big")
        blob = ints_to_blob([b % mod for b in bases], width, "base")
        reqs = []
        for lo, hi in _chunks(len(bases), self._per_chunk(2 * width)):
            e = exps[lo:hi]
            reqs.append(pb.PowModRequest(modulus=mbytes, bases=blob[lo * width:hi * width],
                                         exponents=_signed(e, codec.MAX_SIGNED_WIDTH)))
        return _Plan("PowMod", reqs, lambda parts: blob_to_ints(_join(parts), width))


def _resolve_targets(targets: str | Sequence[str]) -> tuple[str, str | None]:
    """A gRPC target for one address or a round-robin list; also the first host name (for TLS)."""
    if isinstance(targets, str):  # "a:1,b:2" is a list; a gRPC URI ("ipv4:...", "dns:...") stays whole
        uri = targets.startswith(("ipv4:", "ipv6:", "dns:", "unix:")) or "://" in targets
        targets = [targets] if uri else [t.strip() for t in targets.split(",") if t.strip()]
    targets = list(targets)
    if not targets:
        raise ValueError("no target given")
    if len(targets) == 1:
        host = targets[0].rsplit(":", 1)[0].strip("[]")
        return targets[0], host
    v4, v6, first_host = [], [], None
    for t in targets:
        host, _, port = t.rpartition(":")
        host = host.strip("[]")
        first_host = first_host or host
        if not port.isdigit():
            raise ValueError(f"target {t!r} must be host:port")
        try:
            addrs = [str(ipaddress.ip_address(host))]
        except ValueError:
            addrs = sorted({ai[4][0] for ai in socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)})
        for a in addrs:
            (v6 if ":" in a else v4).append(f"[{a}]:{port}" if ":" in a else f"{a}:{port}")
    if v4 and v6:
        raise ValueError("mixing IPv4 and IPv6 appliances in one client is not supported")
    return ("ipv4:" + ",".join(v4)) if v4 else ("ipv6:" + ",".join(v6)), first_host


def _channel_args(targets: str | Sequence[str], *, root_certificates: bytes | str | None,
                  client_cert: bytes | str | None, client_key: bytes | str | None,
                  server_name: str | None, max_message_bytes: int, tls: bool | None):
    target, host = _resolve_targets(targets)
    opts = [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.service_config", '{"loadBalancingConfig": [{"round_robin": {}}]}'),
            ("grpc.enable_retries", 0)]

    def read(x: bytes | str | None) -> bytes | None:
        if x is None or isinstance(x, bytes):
            return x
        with open(x, "rb") as f:
            return f.read()

    creds = None
    if tls or root_certificates is not None or client_cert is not None:
        creds = grpc.ssl_channel_credentials(read(root_certificates), read(client_key), read(client_cert))
        if server_name or (target.startswith(("ipv4:", "ipv6:")) and host):
            opts.append(("grpc.ssl_target_name_override", server_name or host))
    return target, creds, opts


def _transported(spec: Callable[..., _Plan]) -> Callable[..., _Plan]:
    """Marks a client method written once in :class:`_CallCore`: its body plans the call; each
    client class turns it into a method that runs the plan its own way (blocking or awaitable)."""
    spec._planned_call = True  # type: ignore[attr-defined]
    return spec


class _CallCore:
    """What both clients share: the channel's settings, planning, the retry policy, the ordering
    of a chunked call, and every method (each written once below, as the plan of its call).
    A client class supplies ``_execute(plan)`` and ``_bind(spec)``, which makes a method of a spec."""

    def __init__(self, target: str | Sequence[str], *, token: str | None = None,
                 root_certificates: bytes | str | None = None, client_cert: bytes | str | None = None,
                 client_key: bytes | str | None = None, server_name: str | None = None,
                 tls: bool | None = None, timeout: float | None = 300.0, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 retries: int = 6, backoff: float = 0.1, max_backoff: float = 5.0,
                 max_message_bytes: int = 256 << 20):
        self._target, self._creds, self._opts = _channel_args(
            target, root_certificates=root_certificates, client_cert=client_cert, client_key=client_key,
            server_name=server_name, max_message_bytes=max_message_bytes, tls=tls)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.planner = _Planner(chunk_bytes)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "_bind" in vars(cls):  # a client class: each written-once method, run its way
            for name, spec in vars(_CallCore).items():
                if getattr(spec, "_planned_call", False):
                    setattr(cls, name, cls._bind(spec))

    # -- the call core ---------------------------------------------------------------------
    def _stub(self, plan: _Plan) -> Any:
        return self.compute if plan.service == "compute" else self.keys

    def _send(self, plan: _Plan) -> Any:
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

    def _plan_encrypt(self, pk: PublicKey, ms: bytes, mode: str) -> _Plan:
        if mode not in ENCRYPT_MODES:
            raise ValueError(f"mode must be one of {sorted(ENCRYPT_MODES)}")
        return self.planner.elementwise("encrypt", pk, {"plaintexts": (ms, pk.plaintext_width)},
                                        {"mode": ENCRYPT_MODES[mode]})

    @staticmethod
    def _stream_requests(plan: _Plan, start: int) -> Iterator[pb.StreamRequest]:
        return plan.stream_requests(start)

    # -- every method, written once: each returns the plan of its call ---------------------
    @_transported
    def register_public_key(self, pk: PublicKey) -> KeyInfo:
        return _key_call("RegisterPublicKey", pb.RegisterPublicKeyRequest(public_key=pk.to_bytes()), KeyInfo.from_pb)

    @_transported
    def generate_keypair(self, bits: int = 2048) -> tuple[PublicKey, RemotePrivateKey]:
        def pair(m: pb.KeyInfo) -> tuple[PublicKey, RemotePrivateKey]:
            pk = PublicKey.from_bytes(m.public_key)
            return pk, RemotePrivateKey(pk)
        return _key_call("GenerateKeyPair", pb.GenerateKeyPairRequest(bits=bits), pair)

    @_transported
    def import_private_key(self, sk: PrivateKey) -> KeyInfo:
        """Hand a private key to the service (the owner's explicit choice); only this identity
        may then decrypt with it there."""
        req = pb.ImportPrivateKeyRequest(public_key=sk.public_key.to_bytes(), p=_be(sk.p), q=_be(sk.q))
        return _key_call("ImportPrivateKey", req, KeyInfo.from_pb)

    @_transported
    def export_private_key(self, key: PublicKey | str) -> PrivateKey:
        """The private key the service holds for this identity (its owner only)."""
        def private(m: pb.PrivateKeyMaterial) -> PrivateKey:
            return PrivateKey(PublicKey.from_bytes(m.public_key), int.from_bytes(m.p, "big"),
                              int.from_bytes(m.q, "big"))
        return _key_call("ExportPrivateKey", pb.ExportPrivateKeyRequest(key_id=_key_id(key)), private)

    @_transported
    def describe_key(self, key: PublicKey | str) -> KeyInfo:
        ref = _key_ref(key) if isinstance(key, PublicKey) else pb.KeyRef(key_id=key)
        return _key_call("DescribeKey", ref, KeyInfo.from_pb)

    @_transported
    def delete_key(self, key: PublicKey | str) -> bool:
        return _key_call("DeleteKey", pb.DeleteKeyRequest(key_id=_key_id(key)), lambda m: m.deleted)

    @_transported
    def list_keys(self) -> list[KeyInfo]:
        return _key_call("ListKeys", pb.ListKeysRequest(), lambda m: [KeyInfo.from_pb(k) for k in m.keys])

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
    def matvec(self, pk: PublicKey, cs: bytes, rows: list[list[int]], columns: int) -> bytes:
        return self.planner.matvec(pk, cs, rows, columns)

    @_transported
    def rerandomize(self, pk: PublicKey, cs: bytes, *, use_private_key: bool = False) -> bytes:
        return self.planner.elementwise("rerandomize", pk, {"ciphertexts": (cs, pk.ciphertext_width)},
                                        {"use_private_key": bool(use_private_key)})

    @_transported
    def powmod(self, bases: Sequence[int], exps: Sequence[int], mod: int) -> list[int]:
        return self.planner.powmod(list(bases), list(exps), mod)


class _Progress:
    """A chunked call's answers so far, in order; a reopened stream resumes at the first unanswered chunk."""

    def __init__(self, core: _CallCore, plan: _Plan):
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


class HeAccelClient(_CallCore):
    """Blocking client. Methods take and return packed blobs (see the module docstring)."""

    def __init__(self, target: str | Sequence[str], **kw: Any):
        super().__init__(target, **kw)
        if self._creds is not None:
            self.channel = grpc.secure_channel(self._target, self._creds, options=self._opts)
        else:
            self.channel = grpc.insecure_channel(self._target, options=self._opts)
        self.keys = pb_grpc.KeyServiceStub(self.channel)
        self.compute = pb_grpc.ComputeServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _bind(spec: Callable[..., _Plan]) -> Callable[..., Any]:
        @functools.wraps(spec)
        def method(self: "HeAccelClient", *args: Any, **kw: Any) -> Any:
            return self._execute(spec(self, *args, **kw))
        return method

    def _execute(self, plan: _Plan) -> Any:
        if len(plan.requests) == 1:
            return plan.finish([plan.payload(self._send(plan))])
        progress = _Progress(self, plan)
        while not progress.done:
            try:
                for resp in self.compute.Stream(progress.pending(), timeout=self.timeout, metadata=self._metadata):
                    progress.accept(resp)
            except grpc.RpcError as e:
                time.sleep(progress.retry_after(e))
        return plan.finish(progress.results)

    def _unary(self, stub: Any, rpc: str, request: Any) -> Any:
        method = getattr(stub, rpc)
        for attempt in itertools.count():
            try:
                return method(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                time.sleep(self._retry_or_raise(e, attempt))


class AsyncHeAccelClient(_CallCore):
    """asyncio client (``grpc.aio``): the same methods as :class:`HeAccelClient`, awaitable."""

    def __init__(self, target: str | Sequence[str], **kw: Any):
        super().__init__(target, **kw)
        if self._creds is not None:
            self.channel = grpc.aio.secure_channel(self._target, self._creds, options=self._opts)
        else:
            self.channel = grpc.aio.insecure_channel(self._target, options=self._opts)
        self.keys = pb_grpc.KeyServiceStub(self.channel)
        self.compute = pb_grpc.ComputeServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()

    @staticmethod
    def _bind(spec: Callable[..., _Plan]) -> Callable[..., Any]:
        @functools.wraps(spec)
        async def method(self: "AsyncHeAccelClient", *args: Any, **kw: Any) -> Any:
            return await self._execute(spec(self, *args, **kw))
        return method

    async def _execute(self, plan: _Plan) -> Any:
        if len(plan.requests) == 1:
            return plan.finish([plan.payload(await self._send(plan))])
        progress = _Progress(self, plan)
        while not progress.done:
            try:
                async for resp in self.compute.Stream(progress.pending(), timeout=self.timeout,
                                                      metadata=self._metadata):
                    progress.accept(resp)
            except grpc.RpcError as e:
                await asyncio.sleep(progress.retry_after(e))
        return plan.finish(progress.results)

    async def _unary(self, stub: Any, rpc: str, request: Any) -> Any:
        method = getattr(stub, rpc)
        for attempt in itertools.count():
            try:
                return await method(request, timeout=self.timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                await asyncio.sleep(self._retry_or_raise(e, attempt))


def _key_id(key: PublicKey | str) -> str:
    return key.fingerprint if isinstance(key, PublicKey) else key


def _be(x: int) -> bytes:
    return x.to_bytes((x.bit_length() + 7) // 8, "big")
