"""The gRPC offload server: key registry, batch compute, health, reflection, metrics.

Build one with :class:`HeAccelServer` (dependencies injected: backend, metrics registry,
key generator) or run ``he-accel serve``. Each RPC is validated in its handler thread, then
queued on the :class:`~accel.service.batcher.DynamicBatcher`, which coalesces concurrent requests
for the same key and op into one backend call. Every handler turns every failure into a
status code; the server never dies on a request.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

import accel
from accel.backends import Backend, get_backend
from accel.keys import PublicKey
from accel.packing import blob_to_ints, ints_to_blob

from . import codec
from .auth import Authenticator
from .batcher import DynamicBatcher, Job
from .errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
)
from .keys import KeyRecord, KeyRegistry
from .metrics import CallbackCollector, NvmlCollector, ServiceMetrics
from .proto.heaccel.v1 import heaccel_pb2 as pb
from .proto.heaccel.v1 import heaccel_pb2_grpc as pb_grpc

log = logging.getLogger("heaccel.server")

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["KeyService"].full_name,
    pb.DESCRIPTOR.services_by_name["ComputeService"].full_name,
)
MAX_POWMOD_BITS = 8192


@dataclass
class ServerConfig:
    address: str = "127.0.0.1:50051"
    metrics_port: int | None = None          # None: no HTTP endpoint (metrics still collected)
    metrics_address: str = "0.0.0.0"
    backend: str = "auto"
    devices: list[int] | None = None
    workers: int | None = None               # batch workers; default one per GPU, else 1
    max_batch: int = 65536                   # elements per coalesced backend call
    max_delay_ms: float = 2.0                # how long a batch waits for company
    preferred_batch: int = 512               # a batch this large runs without waiting
    max_queue_elements: int = 1 << 21        # back-pressure bound (RESOURCE_EXHAUSTED beyond)
    max_request_elements: int = 1 << 20      # larger requests must stream in chunks
    max_message_bytes: int = 256 << 20
    handler_threads: int = 256
    stream_window: int = 16                  # chunks of one stream in flight at once
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None             # mTLS: require client certificates signed by this CA
    tokens: dict[str, str] = field(default_factory=dict)  # token -> identity
    min_key_bits: int = 1024
    max_keys: int = 10_000
    grace_seconds: float = 30.0


def as_service_error(e: BaseException, op: str) -> ServiceError:
    """The status a failure maps to: typed errors keep theirs; the library's ValueError and
    TypeError are always the caller's input; anything else is a bug, logged, never fatal."""
    if isinstance(e, ServiceError):
        return e
    if isinstance(e, (ValueError, TypeError)):
        return InvalidArgument(str(e))
    log.error("internal error in %s", op, exc_info=e)
    return Internal(f"internal error in {op}; see the server log")


class _Guard:
    """Runs one RPC body: identity, metrics, status mapping. Never lets an exception escape
    except through ``context.abort``."""

    def __init__(self, server: "HeAccelServer"):
        self.server = server

    def __call__(self, op: str, context: grpc.ServicerContext, body: Callable[[str], tuple[Any, int | None, int]]):
        s = self.server
        start = time.perf_counter()
        s.metrics.inflight.inc()
        bits, elements, err = None, 0, None
        try:
            identity = s.auth.identify(context)
            response, bits, elements = body(identity)
        except Exception as e:  # noqa: BLE001 - every failure becomes a status
            err = as_service_error(e, op)
        finally:
            s.metrics.inflight.dec()
        code = "OK" if err is None else err.code.name
        s.metrics.observe_request(op, bits, code, time.perf_counter() - start, elements)
        if err is not None:
            context.abort(err.code, err.message)
        return response


def _key_info(rec: KeyRecord, identity: str) -> pb.KeyInfo:
    pk = rec.public_key
    return pb.KeyInfo(
        key_id=rec.key_id, bits=pk.bits, public_key=pk.to_bytes(),
        has_private_key=rec.private_key is not None,
        private_key_owned_by_caller=rec.private_key is not None and rec.owner == identity,
        plaintext_width=pk.plaintext_width, ciphertext_width=pk.ciphertext_width,
        djn_ready=rec._djn is not None,
    )


class KeyServicer(pb_grpc.KeyServiceServicer):
    def __init__(self, server: "HeAccelServer"):
        self.s = server
        self.guard = _Guard(server)

    def RegisterPublicKey(self, request, context):
        def body(ident):
            rec = self.s.keys.register_public(request.public_key, ident)
            return _key_info(rec, ident), rec.public_key.bits, 0
        return self.guard("register_public_key", context, body)

    def GenerateKeyPair(self, request, context):
        def body(ident):
            rec = self.s.keys.generate(request.bits, ident)
            return _key_info(rec, ident), rec.public_key.bits, 0
        return self.guard("generate_key_pair", context, body)

    def ImportPrivateKey(self, request, context):
        def body(ident):
            rec = self.s.keys.import_private(request.public_key, request.p, request.q, ident)
            return _key_info(rec, ident), rec.public_key.bits, 0
        return self.guard("import_private_key", context, body)

    def ExportPrivateKey(self, request, context):
        def body(ident):
            rec, sk = self.s.keys.private(request.key_id, ident)
            nb = (sk.p.bit_length() + 7) // 8
            qb = (sk.q.bit_length() + 7) // 8
            log.info("private key %s exported to its owner", rec.key_id)
            return (pb.PrivateKeyMaterial(public_key=rec.public_key.to_bytes(), p=sk.p.to_bytes(nb, "big"),
                                          q=sk.q.to_bytes(qb, "big")), rec.public_key.bits, 0)
        return self.guard("export_private_key", context, body)

    def DescribeKey(self, request, context):
        def body(ident):
            rec = self.s.keys.get(request.key_id, request.public_key, ident)
            return _key_info(rec, ident), rec.public_key.bits, 0
        return self.guard("describe_key", context, body)

    def DeleteKey(self, request, context):
        def body(ident):
            return pb.DeleteKeyResponse(deleted=self.s.keys.delete(request.key_id, ident)), None, 0
        return self.guard("delete_key", context, body)

    def ListKeys(self, request, context):
        def body(ident):
            return pb.ListKeysResponse(keys=[_key_info(r, ident) for r in self.s.keys.visible(ident)]), None, 0
        return self.guard("list_keys", context, body)


class ComputeServicer(pb_grpc.ComputeServiceServicer):
    """Unary ops and the ordered chunk stream. ``plan_*`` validate and build a batcher Job."""

    def __init__(self, server: "HeAccelServer"):
        self.s = server
        self.guard = _Guard(server)

    # -- planning (validation happens here, in the handler thread) --------------------------
    def _key(self, ref: pb.KeyRef, ident: str) -> KeyRecord:
        if not ref.key_id and not ref.public_key:
            raise InvalidArgument("the request names no key")
        return self.s.keys.get(ref.key_id, ref.public_key, ident)

    def _limit(self, count: int) -> None:
        if count > self.s.config.max_request_elements:
            raise ResourceExhausted(
                f"oversize request: {count} elements > {self.s.config.max_request_elements}; stream it in chunks")

    def _scalars(self, sn: pb.SignedNumbers, pk: PublicKey, what: str) -> list[int]:
        return codec.signed(sn.magnitudes, sn.width or pk.plaintext_width, sn.negative, pk.n, what)

    def plan(self, op: str, req: Any, ident: str) -> tuple[Job, int | None]:
        be = self.s.backend
        if op == "powmod":
            return self._plan_powmod(req), None
        rec = self._key(req.key, ident)
        pk = rec.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        kid = rec.key_id
        if op == "encrypt":
            count = codec.plaintexts(req.plaintexts, pk.n, pw)
            mode = req.mode
            if mode == pb.ENCRYPT_MODE_TEXTBOOK:
                run = lambda ms: be.raw_encrypt(pk, ms)  # noqa: E731
            elif mode == pb.ENCRYPT_MODE_CRT:
                _, sk = self.s.keys.private(kid, ident)
                run = lambda ms: be.raw_encrypt(pk, ms, private_key=sk)  # noqa: E731
            elif mode == pb.ENCRYPT_MODE_DJN:
                djn = self.s.keys.djn(rec)
                run = lambda ms: be.raw_encrypt(pk, ms, djn=djn)  # noqa: E731
            elif mode == pb.ENCRYPT_MODE_DETERMINISTIC:
                run = lambda ms: be.raw_encrypt(pk, ms, obfuscate=False)  # noqa: E731
            else:
                raise InvalidArgument(f"unknown encrypt mode {mode}")
            job = Job(("encrypt", kid, mode), count, (req.plaintexts,), run, cw, op)
        elif op == "decrypt":
            _, sk = self.s.keys.private(kid, ident)
            count = codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            job = Job(("decrypt", kid), count, (req.ciphertexts,), lambda cs: be.raw_decrypt(sk, cs), pw, op)
        elif op == "add":
            count = codec.ciphertexts(req.a, pk.nsquare, cw, "ciphertext a")
            if codec.ciphertexts(req.b, pk.nsquare, cw, "ciphertext b") != count:
                raise InvalidArgument(f"length mismatch: {count} vs {len(req.b) // cw} ciphertexts")
            job = Job(("add", kid), count, (req.a, req.b), lambda a, b: be.raw_add(pk, a, b), cw, op)
        elif op == "add_plain":
            count = codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            if codec.plaintexts(req.plaintexts, pk.n, pw) != count:
                raise InvalidArgument(f"length mismatch: {count} ciphertexts, {len(req.plaintexts) // pw} plaintexts")
            job = Job(("add_plain", kid), count, (req.ciphertexts, req.plaintexts),
                      lambda c, m: be.raw_add_plain(pk, c, m), cw, op)
        elif op == "mul":
            count = codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            self._limit(count)
            ks = self._scalars(req.scalars, pk, "scalar")
            if len(ks) != count:
                raise InvalidArgument(f"length mismatch: {count} ciphertexts, {len(ks)} scalars")
            job = Job(("mul", kid), count, (req.ciphertexts, ks), lambda c, k: be.raw_mul(pk, c, k), cw, op)
        elif op == "sum":
            count = codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            job = Job(("sum", kid), count, (req.ciphertexts,), lambda c: be.raw_sum(pk, c), 0, op)
        elif op == "matvec":
            rows = codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            cols = req.columns
            self._limit(max(rows * max(cols, 1), cols))
            entries = self._scalars(req.matrix, pk, "matrix")
            if len(entries) != rows * cols:
                raise InvalidArgument(f"matrix has {len(entries)} entries; {rows} rows x {cols} columns expected")
            if rows == 0:
                X: Any = np.empty((0, cols), dtype=object)
            else:
                X = [entries[i * cols:(i + 1) * cols] for i in range(rows)]
            job = Job(("matvec", kid), rows, (req.ciphertexts,), lambda c: be.raw_matvec(pk, c, X), 0, op)
            count = rows
        elif op == "rerandomize":
            count = codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            if req.use_private_key:
                _, sk = self.s.keys.private(kid, ident)
                job = Job(("rerandomize_crt", kid), count, (req.ciphertexts,),
                          lambda c: be.raw_rerandomize(pk, c, private_key=sk), cw, op)
            else:
                job = Job(("rerandomize", kid), count, (req.ciphertexts,),
                          lambda c: be.raw_rerandomize(pk, c), cw, op)
        else:
            raise InvalidArgument(f"unknown op {op!r}")
        self._limit(count)
        return job, pk.bits

    def _plan_powmod(self, req: pb.PowModRequest) -> Job:
        mod = int.from_bytes(req.modulus, "big")
        if mod < 2:
            raise InvalidArgument("modulus must be > 1")
        if mod.bit_length() > MAX_POWMOD_BITS:
            raise InvalidArgument(f"modulus has {mod.bit_length()} bits; at most {MAX_POWMOD_BITS}")
        width = -(-mod.bit_length() // 32) * 4
        count = codec.count_of(req.bases, width, "bases")
        self._limit(count)
        i = codec.first_not_below(req.bases, width, mod)
        if i >= 0:
            raise InvalidArgument(f"base[{i}] is out of range: must be < the modulus")
        e = req.exponents
        exps = codec.signed(e.magnitudes, e.width or width, e.negative, 1 << (8 * codec.MAX_SIGNED_WIDTH),
                            "exponent")
        if len(exps) != count:
            raise InvalidArgument(f"length mismatch: {count} bases, {len(exps)} exponents")
        be = self.s.backend

        def run(bases: bytes, es: list[int]) -> bytes:
            return ints_to_blob(be.powmod(blob_to_ints(bases, width), es, mod), width)

        return Job(("powmod", mod), count, (req.bases, exps), run, width, "powmod")

    # -- execution --------------------------------------------------------------------------
    def _wait(self, job: Job, fut: futures.Future, context: grpc.ServicerContext) -> Any:
        context.add_callback(job.cancel)
        remaining = context.time_remaining()
        try:
            return fut.result(timeout=remaining if remaining is not None and remaining < 1e8 else None)
        except futures.TimeoutError:
            job.cancel()
            raise DeadlineExceeded("the deadline passed before the batch ran") from None

    def _unary(self, op: str, request: Any, context: grpc.ServicerContext, wrap: Callable[[bytes], Any]):
        def body(ident):
            job, bits = self.plan(op, request, ident)
            out = self._wait(job, self.s.batcher.submit(job), context)
            return wrap(out), bits, job.count
        return self.guard(op, context, body)

    def Encrypt(self, request, context):
        return self._unary("encrypt", request, context, lambda b: pb.CiphertextBatch(ciphertexts=b))

    def Decrypt(self, request, context):
        return self._unary("decrypt", request, context, lambda b: pb.PlaintextBatch(plaintexts=b))

    def Add(self, request, context):
        return self._unary("add", request, context, lambda b: pb.CiphertextBatch(ciphertexts=b))

    def AddPlain(self, request, context):
        return self._unary("add_plain", request, context, lambda b: pb.CiphertextBatch(ciphertexts=b))

    def Mul(self, request, context):
        return self._unary("mul", request, context, lambda b: pb.CiphertextBatch(ciphertexts=b))

    def Sum(self, request, context):
        return self._unary("sum", request, context, lambda b: pb.CiphertextBatch(ciphertexts=b))

    def MatVec(self, request, context):
        return self._unary("matvec", request, context, lambda b: pb.CiphertextBatch(ciphertexts=b))

    def Rerandomize(self, request, context):
        return self._unary("rerandomize", request, context, lambda b: pb.CiphertextBatch(ciphertexts=b))

    def PowMod(self, request, context):
        return self._unary("powmod", request, context, lambda b: pb.NumberBatch(numbers=b))

    def Stream(self, request_iterator: Iterator[pb.StreamRequest], context) -> Iterator[pb.StreamResponse]:
        s = self.s
        start = time.perf_counter()
        try:
            ident = s.auth.identify(context)
        except ServiceError as e:
            s.metrics.observe_request("stream", None, e.code.name, 0.0, 0)
            context.abort(e.code, e.message)
        window: queue.Queue = queue.Queue(maxsize=max(1, s.config.stream_window))
        stop = threading.Event()

        def put(item: Any) -> bool:
            while not stop.is_set():
                try:
                    window.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def reader() -> None:
            try:
                for req in request_iterator:
                    op = req.WhichOneof("op")
                    try:
                        if op is None:
                            raise InvalidArgument("the chunk names no op")
                        job, bits = self.plan(op, getattr(req, op), ident)
                        fut = s.batcher.submit(job)
                        item = (req.sequence, op, bits, job, fut, None)
                    except Exception as e:  # noqa: BLE001 - answered in order with its status
                        item = (req.sequence, op, None, None, None, as_service_error(e, op or "stream"))
                    if not put(item):
                        return
            except Exception as e:  # noqa: BLE001 - the client went away mid-stream
                if not stop.is_set():
                    log.debug("stream reader ended: %s", type(e).__name__)
            finally:
                put(None)

        s.metrics.inflight.inc()
        threading.Thread(target=reader, name="heaccel-stream-reader", daemon=True).start()
        err: ServiceError | None = None
        chunks = elements = 0
        try:
            while True:
                item = window.get()
                if item is None:
                    break
                seq, op, bits, job, fut, e = item
                if e is None:
                    t0 = time.perf_counter()
                    try:
                        data = self._wait(job, fut, context)
                    except Exception as ex:  # noqa: BLE001
                        e = as_service_error(ex, op)
                if e is not None:
                    s.metrics.observe_request(op or "stream", None, e.code.name, 0.0, 0)
                    err = type(e)(f"stream chunk {seq} ({op}): {e.message}", e.code)
                    break
                s.metrics.observe_request(op, bits, "OK", time.perf_counter() - t0, job.count)
                chunks += 1
                elements += job.count
                yield pb.StreamResponse(sequence=seq, data=data)
        finally:
            stop.set()
            s.metrics.inflight.dec()
            if err is None:
                s.metrics.observe_request("stream", None, "OK", time.perf_counter() - start, elements)
        if err is not None:
            context.abort(err.code, err.message)


class HeAccelServer:
    """The service in one object. ``backend`` and ``registry`` are injectable; by default the
    backend comes from ``config.backend`` and metrics go to a fresh CollectorRegistry."""

    def __init__(self, config: ServerConfig | None = None, *, backend: Backend | None = None,
                 registry: CollectorRegistry | None = None, nvml: Any = None, keygen: Any = None):
        self.config = c = config or ServerConfig()
        self._own_backend = backend is None
        if backend is None:
            kw: dict[str, Any] = {}
            if c.devices is not None and c.backend in ("gpu", "auto"):
                kw["devices"] = c.devices
            backend = get_backend(c.backend, **kw)
        self.backend = backend
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = ServiceMetrics(self.registry, backend_name=backend.name)
        self.metrics.set_build_info(version=accel.__version__, grpc=grpc.__version__)
        kg = {"keygen": keygen} if keygen is not None else {}
        self.keys = KeyRegistry(max_keys=c.max_keys, min_bits=c.min_key_bits, **kg)
        self.registry.register(CallbackCollector(self._fallbacks, self.keys.counts))
        self.registry.register(NvmlCollector(nvml))
        self.auth = Authenticator(c.tokens, mtls=bool(c.client_ca))
        workers = c.workers or max(1, len(getattr(backend, "devices", []) or []))
        self.batcher = DynamicBatcher(workers=workers, max_batch=c.max_batch, max_delay=c.max_delay_ms / 1000,
                                      max_queue_elements=max(c.max_queue_elements, c.max_request_elements),
                                      preferred_batch=c.preferred_batch, observer=self.metrics)
        opts = [
            ("grpc.max_receive_message_length", c.max_message_bytes),
            ("grpc.max_send_message_length", c.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=c.handler_threads,
                                                                  thread_name_prefix="heaccel-rpc"),
                                       options=opts, maximum_concurrent_rpcs=c.handler_threads)
        pb_grpc.add_KeyServiceServicer_to_server(KeyServicer(self), self.grpc_server)
        pb_grpc.add_ComputeServiceServicer_to_server(ComputeServicer(self), self.grpc_server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        reflection.enable_server_reflection(SERVICE_NAMES + (health.SERVICE_NAME, reflection.SERVICE_NAME),
                                            self.grpc_server)
        self.port = self._bind()
        self._metrics_http: Any = None
        self.metrics_port: int | None = None
        self._stopped = threading.Event()

    def _fallbacks(self) -> int:
        return int(getattr(self.backend, "stats", {}).get("cpu_fallbacks", 0))

    def _bind(self) -> int:
        c = self.config
        if c.tls_cert or c.tls_key:
            if not (c.tls_cert and c.tls_key):
                raise ValueError("TLS needs both a certificate and a key")
            with open(c.tls_key, "rb") as f:
                key = f.read()
            with open(c.tls_cert, "rb") as f:
                cert = f.read()
            ca = None
            if c.client_ca:
                with open(c.client_ca, "rb") as f:
                    ca = f.read()
            creds = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)
            port = self.grpc_server.add_secure_port(c.address, creds)
        else:
            if c.client_ca:
                raise ValueError("mTLS (a client CA) needs a TLS certificate and key")
            port = self.grpc_server.add_insecure_port(c.address)
        if not port:
            raise OSError(f"could not bind {c.address}")
        return port

    def start(self) -> "HeAccelServer":
        c = self.config
        if c.metrics_port is not None:
            from .metrics import serve_metrics  # noqa: PLC0415

            self._metrics_http, _ = serve_metrics(self.registry, c.metrics_port, c.metrics_address)
            self.metrics_port = self._metrics_http.server_port
        self.grpc_server.start()
        for name in ("",) + SERVICE_NAMES:
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.auth.open:
            log.warning("no tokens and no client CA configured: every caller is 'anonymous' and shares keys")
        if not (c.tls_cert and c.tls_key):
            log.warning("serving without TLS: ciphertexts and tokens cross the network in clear")
        log.info("he-accel %s serving on port %d (backend %s%s)", accel.__version__, self.port, self.backend.name,
                 f", metrics on :{self.metrics_port}" if self.metrics_port else "")
        return self

    def stop(self, grace: float | None = None) -> None:
        """Graceful: refuse new RPCs, let in-flight ones finish (up to ``grace`` s), drain the batcher."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.grace_seconds if grace is None else grace
        self.health.enter_graceful_shutdown()
        self.grpc_server.stop(grace).wait()
        self.batcher.close(timeout=grace)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        if self._own_backend and self.config.backend not in ("cpu", "gpu", "auto"):
            self.backend.close()
        log.info("he-accel server stopped")

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def config_from_args(args: Any, env: dict[str, str] | None = None) -> ServerConfig:
    """Merge ``he-accel serve`` flags over ``HEA_*`` environment variables."""
    from .auth import load_tokens  # noqa: PLC0415

    env = dict(os.environ if env is None else env)

    def pick(name: str, var: str, default: Any, conv: Callable[[str], Any] = str) -> Any:
        v = getattr(args, name, None)
        if v is not None:
            return v
        return conv(env[var]) if env.get(var) else default

    devices = pick("devices", "HEA_DEVICES", None)
    if isinstance(devices, str):
        devices = [int(d) for d in devices.split(",") if d.strip()]
    metrics_port = pick("metrics_port", "HEA_METRICS_PORT", None, int)
    if metrics_port is not None and metrics_port < 0:
        metrics_port = None
    return ServerConfig(
        address=pick("address", "HEA_ADDRESS", "127.0.0.1:50051"),
        metrics_port=metrics_port,
        backend=pick("backend", "HEA_BACKEND", "auto"),
        devices=devices,
        workers=pick("workers", "HEA_WORKERS", None, int),
        max_batch=pick("max_batch", "HEA_MAX_BATCH", 65536, int),
        max_delay_ms=pick("max_delay_ms", "HEA_MAX_DELAY_MS", 2.0, float),
        preferred_batch=pick("preferred_batch", "HEA_PREFERRED_BATCH", 512, int),
        max_queue_elements=pick("max_queue", "HEA_MAX_QUEUE", 1 << 21, int),
        max_request_elements=pick("max_request", "HEA_MAX_REQUEST", 1 << 20, int),
        max_message_bytes=pick("max_message_bytes", "HEA_MAX_MESSAGE_BYTES", 256 << 20, int),
        tls_cert=pick("tls_cert", "HEA_TLS_CERT", None),
        tls_key=pick("tls_key", "HEA_TLS_KEY", None),
        client_ca=pick("client_ca", "HEA_CLIENT_CA", None),
        tokens=load_tokens(pick("tokens_file", "HEA_TOKENS_FILE", None), env),
        min_key_bits=pick("min_key_bits", "HEA_MIN_KEY_BITS", 1024, int),
    )
