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
from typing import Any, Callable, Iterator

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

import accel
from accel.backends import Backend, get_backend
from accel.keys import PublicKey
from accel.packing import blob_to_ints, ints_to_blob

from . import codec
from .admission import Admission, AdmissionInterceptor
from .auth import Authenticator
from .config import ServerConfig, config_from_args, default_key_store  # noqa: F401 - also importable from here, as before
from .batcher import DynamicBatcher, Job
from .errors import (
    DeadlineExceeded,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    ServiceError,
)
from .keys import KeyRecord, KeyRegistry
from .keystore import KeyStore, MemoryKeyStore, open_key_store
from .metrics import CallbackCollector, NvmlCollector, ServiceMetrics
from .proto.heaccel.v1 import heaccel_pb2 as pb
from .proto.heaccel.v1 import heaccel_pb2_grpc as pb_grpc

log = logging.getLogger("heaccel.server")

SERVICE_NAMES = (
    pb.DESCRIPTOR.services_by_name["KeyService"].full_name,
    pb.DESCRIPTOR.services_by_name["ComputeService"].full_name,
)
MAX_POWMOD_BITS = 8192
REPLY_FLOOR = 1 << 20  # a reply may always be this large, whatever the request's size
# grpc.reflection.v1 is v1alpha under its final name (same messages, field for field);
# grpcio-reflection ships only v1alpha, so v1 is served by the same servicer under its name.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


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
    # Sizes are checked from the message's lengths before anything is decoded, and the key a
    # request names is registered for the caller only once the whole request proved valid.
    def _key(self, ref: pb.KeyRef, ident: str) -> KeyRecord:
        if not ref.key_id and not ref.public_key:
            raise InvalidArgument("the request names no key")
        return self.s.keys.resolve(ref.key_id, ref.public_key, ident)

    def _limit(self, count: int, what: str = "elements") -> None:
        if count > self.s.config.max_request_elements:
            raise ResourceExhausted(
                f"oversize request: {count} {what} > {self.s.config.max_request_elements}; stream it in chunks")

    def _reply_limit(self, nbytes: int, request_bytes: int | None = None, per_byte: int = 1) -> None:
        """A reply fits the message limit; with ``request_bytes``, it is also at most
        ``per_byte`` x the request (or REPLY_FLOOR), so a tiny request cannot ask for a huge reply."""
        limit = self.s.config.max_message_bytes
        if request_bytes is not None:
            limit = min(limit, max(REPLY_FLOOR, per_byte * request_bytes))
        if nbytes > limit:
            raise ResourceExhausted(f"the reply would be {nbytes} bytes, over the {limit}-byte limit for this request")

    def _scalars(self, sn: pb.SignedNumbers, pk: PublicKey, what: str, expected: int) -> list[int]:
        return codec.signed(sn.magnitudes, sn.width or pk.plaintext_width, sn.negative, pk.n, what, expected)

    def plan(self, op: str, req: Any, ident: str) -> tuple[Job, int | None]:
        if op == "powmod":
            job = self._plan_powmod(req)
        else:
            rec = self._key(req.key, ident)
            job = self._plan_keyed(op, req, rec, ident)
            if req.key.public_key:
                self.s.keys.commit(rec, ident)
        job.owner = ident
        return job, (None if op == "powmod" else rec.public_key.bits)

    def _plan_keyed(self, op: str, req: Any, rec: KeyRecord, ident: str) -> Job:
        be, keys = self.s.backend, self.s.keys
        pk = rec.public_key
        pw, cw = pk.plaintext_width, pk.ciphertext_width
        kid = rec.key_id
        count_of = codec.count_of
        if op == "encrypt":
            self._limit(count_of(req.plaintexts, pw, "plaintext"))
            count = codec.plaintexts(req.plaintexts, pk.n, pw)
            mode = req.mode
            if mode == pb.ENCRYPT_MODE_TEXTBOOK:
                run = lambda ms: be.raw_encrypt(pk, ms)  # noqa: E731
            elif mode == pb.ENCRYPT_MODE_CRT:
                sk = keys.private_of(rec, ident)
                run = lambda ms: be.raw_encrypt(pk, ms, private_key=sk)  # noqa: E731
            elif mode == pb.ENCRYPT_MODE_DJN:
                djn = keys.djn(rec)
                run = lambda ms: be.raw_encrypt(pk, ms, djn=djn)  # noqa: E731
            elif mode == pb.ENCRYPT_MODE_DETERMINISTIC:
                run = lambda ms: be.raw_encrypt(pk, ms, obfuscate=False)  # noqa: E731
            else:
                raise InvalidArgument(f"unknown encrypt mode {mode}")
            self._reply_limit(count * cw)
            return Job(("encrypt", kid, mode), count, (req.plaintexts,), run, cw, op)
        if op == "decrypt":
            sk = keys.private_of(rec, ident)
            self._limit(count_of(req.ciphertexts, cw, "ciphertext"))
            count = codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            return Job(("decrypt", kid), count, (req.ciphertexts,), lambda cs: be.raw_decrypt(sk, cs), pw, op)
        if op == "add":
            count = count_of(req.a, cw, "ciphertext a")
            if count_of(req.b, cw, "ciphertext b") != count:
                raise InvalidArgument(f"length mismatch: {count} vs {len(req.b) // cw} ciphertexts")
            self._limit(count)
            codec.ciphertexts(req.a, pk.nsquare, cw, "ciphertext a")
            codec.ciphertexts(req.b, pk.nsquare, cw, "ciphertext b")
            return Job(("add", kid), count, (req.a, req.b), lambda a, b: be.raw_add(pk, a, b), cw, op)
        if op == "add_plain":
            count = count_of(req.ciphertexts, cw, "ciphertext")
            if count_of(req.plaintexts, pw, "plaintext") != count:
                raise InvalidArgument(f"length mismatch: {count} ciphertexts, {len(req.plaintexts) // pw} plaintexts")
            self._limit(count)
            codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            codec.plaintexts(req.plaintexts, pk.n, pw)
            return Job(("add_plain", kid), count, (req.ciphertexts, req.plaintexts),
                       lambda c, m: be.raw_add_plain(pk, c, m), cw, op)
        if op == "mul":
            count = count_of(req.ciphertexts, cw, "ciphertext")
            self._limit(count)
            n_scalars = codec.signed_count(req.scalars.magnitudes, req.scalars.width or pw, req.scalars.negative,
                                           "scalar")
            if n_scalars != count:
                raise InvalidArgument(f"length mismatch: {count} ciphertexts, {n_scalars} scalars")
            codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            ks = self._scalars(req.scalars, pk, "scalar", count)
            return Job(("mul", kid), count, (req.ciphertexts, ks), lambda c, k: be.raw_mul(pk, c, k), cw, op)
        if op == "sum":
            count = count_of(req.ciphertexts, cw, "ciphertext")
            self._limit(count)
            codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            return Job(("sum", kid), count, (req.ciphertexts,), lambda c: be.raw_sum(pk, c), 0, op)
        if op == "matvec":
            rows, cols = count_of(req.ciphertexts, cw, "ciphertext"), req.columns
            self._limit(rows, "rows")
            self._limit(cols, "columns")
            self._limit(rows * cols, "matrix entries")
            # each column's reply (cw bytes) costs the request a matrix entry in every row; with
            # no rows the reply is E(0)s for free, so it gets the small floor only
            self._reply_limit(cols * cw, len(req.ciphertexts) + len(req.matrix.magnitudes), cw)
            n_entries = codec.signed_count(req.matrix.magnitudes, req.matrix.width or pw, req.matrix.negative,
                                           "matrix entry")
            if n_entries != rows * cols:
                raise InvalidArgument(f"matrix has {n_entries} entries; {rows} rows x {cols} columns expected")
            codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            entries = self._scalars(req.matrix, pk, "matrix", rows * cols)
            if rows == 0:
                X: Any = np.empty((0, cols), dtype=object)
            else:
                X = [entries[i * cols:(i + 1) * cols] for i in range(rows)]
            # the work is rows x columns exponentiations: that is what the queue counts
            return Job(("matvec", kid), max(rows * cols, cols, 1), (req.ciphertexts,),
                       lambda c: be.raw_matvec(pk, c, X), 0, op)
        if op == "rerandomize":
            self._limit(count_of(req.ciphertexts, cw, "ciphertext"))
            count = codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
            if req.use_private_key:
                sk = keys.private_of(rec, ident)
                return Job(("rerandomize_crt", kid), count, (req.ciphertexts,),
                           lambda c: be.raw_rerandomize(pk, c, private_key=sk), cw, op)
            return Job(("rerandomize", kid), count, (req.ciphertexts,), lambda c: be.raw_rerandomize(pk, c), cw, op)
        raise InvalidArgument(f"unknown op {op!r}")

    def _plan_powmod(self, req: pb.PowModRequest) -> Job:
        if len(req.modulus) > MAX_POWMOD_BITS // 8 + 1:
            raise InvalidArgument(f"modulus has {len(req.modulus)} bytes; at most {MAX_POWMOD_BITS} bits")
        mod = int.from_bytes(req.modulus, "big")
        if mod < 2:
            raise InvalidArgument("modulus must be > 1")
        if mod.bit_length() > MAX_POWMOD_BITS:
            raise InvalidArgument(f"modulus has {mod.bit_length()} bits; at most {MAX_POWMOD_BITS}")
        width = -(-mod.bit_length() // 32) * 4
        count = codec.count_of(req.bases, width, "bases")
        self._limit(count)
        e = req.exponents
        n_exps = codec.signed_count(e.magnitudes, e.width or width, e.negative, "exponent")
        if n_exps != count:
            raise InvalidArgument(f"length mismatch: {count} bases, {n_exps} exponents")
        i = codec.first_not_below(req.bases, width, mod)
        if i >= 0:
            raise InvalidArgument(f"base[{i}] is out of range: must be < the modulus")
        exps = codec.signed(e.magnitudes, e.width or width, e.negative, 1 << (8 * codec.MAX_SIGNED_WIDTH),
                            "exponent", count)
        be = self.s.backend

        def run(bases: bytes, es: list[int]) -> bytes:
            return ints_to_blob(be.powmod(blob_to_ints(bases, width), es, mod), width)

        return Job(("powmod", mod), count, (req.bases, exps), run, width, "powmod")

    # -- execution --------------------------------------------------------------------------
    @staticmethod
    def _deadline(context: grpc.ServicerContext) -> float | None:
        remaining = context.time_remaining()
        return time.monotonic() + remaining if remaining is not None and remaining < 1e8 else None

    def _submit(self, job: Job, context: grpc.ServicerContext) -> futures.Future:
        job.deadline = self._deadline(context)  # an expired job is dropped before it runs
        return self.s.batcher.submit(job)

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
            out = self._wait(job, self._submit(job, context), context)
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
            s.admission.acquire(ident)
        except ServiceError as e:
            s.metrics.observe_request("stream", None, e.code.name, 0.0, 0)
            context.abort(e.code, e.message)
        try:
            yield from self._stream(request_iterator, context, ident, start)
        finally:
            s.admission.release(ident)

    def _stream(self, request_iterator: Iterator[pb.StreamRequest], context, ident: str,
                start: float) -> Iterator[pb.StreamResponse]:
        s = self.s
        window: queue.Queue = queue.Queue(maxsize=max(1, s.config.stream_window))
        stop = threading.Event()
        lock = threading.Lock()
        queued: set[Job] = set()            # submitted, not yet answered: cancelled with the call
        last_message = [time.monotonic()]

        def abandon() -> None:
            stop.set()
            with lock:
                for j in queued:
                    j.cancel()

        context.add_callback(abandon)       # cancelled, past its deadline, or ended by an error

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
                    last_message[0] = time.monotonic()
                    if stop.is_set():
                        return
                    op = req.WhichOneof("op")
                    try:
                        if op is None:
                            raise InvalidArgument("the chunk names no op")
                        job, bits = self.plan(op, getattr(req, op), ident)
                        with lock:
                            fut = self._submit(job, context)
                            queued.add(job)
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
        idle = s.config.idle_timeout_s
        try:
            while True:
                try:
                    item = window.get(timeout=min(1.0, idle))
                except queue.Empty:
                    with lock:
                        busy = bool(queued)
                    if not busy and time.monotonic() - last_message[0] > idle:
                        err = DeadlineExceeded(f"no stream message within {idle:g} s (idle timeout)")
                        break
                    continue
                if item is None:
                    break
                seq, op, bits, job, fut, e = item
                if e is None:
                    t0 = time.perf_counter()
                    try:
                        data = self._wait(job, fut, context)
                    except Exception as ex:  # noqa: BLE001
                        e = as_service_error(ex, op)
                    finally:
                        with lock:
                            queued.discard(job)
                if e is not None:
                    s.metrics.observe_request(op or "stream", None, e.code.name, 0.0, 0)
                    err = type(e)(f"stream chunk {seq} ({op}): {e.message}", e.code)
                    break
                s.metrics.observe_request(op, bits, "OK", time.perf_counter() - t0, job.count)
                chunks += 1
                elements += job.count
                yield pb.StreamResponse(sequence=seq, data=data)
        finally:
            abandon()
            s.metrics.inflight.dec()
            if err is None:
                s.metrics.observe_request("stream", None, "OK", time.perf_counter() - start, elements)
        if err is not None:
            context.abort(err.code, err.message)


def device_count(backend: Backend) -> int:
    """How many devices ``backend`` drives: the GPU backend's kernel runtimes (one per GPU), 1 otherwise."""
    for attr in ("runtimes", "devices"):
        found = getattr(backend, attr, None)
        if found:
            return len(found)
    return 1


def _host_of(address: str) -> str:
    host = address.rsplit(":", 1)[0] if ":" in address else address
    return host.strip("[]") or "0.0.0.0"


class HeAccelServer:
    """The service in one object. ``backend`` and ``registry`` are injectable; by default the
    backend comes from ``config.backend`` and metrics go to a fresh CollectorRegistry."""

    def __init__(self, config: ServerConfig | None = None, *, backend: Backend | None = None,
                 registry: CollectorRegistry | None = None, nvml: Any = None, keygen: Any = None,
                 key_store: KeyStore | None = None):
        self.config = c = config or ServerConfig()
        if c.max_calls >= c.handler_threads:
            raise ValueError(f"max_calls ({c.max_calls}) must be below handler_threads ({c.handler_threads}): "
                             "the spare threads answer refusals while every admitted call is busy")
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
        if key_store is None:
            key_store = open_key_store(c.key_store, c.kek_file) if c.key_store != "memory" else MemoryKeyStore()
        self.keys = KeyRegistry(max_keys=c.max_keys, max_keys_per_identity=c.max_keys_per_identity,
                                min_bits=c.min_key_bits, store=key_store, **kg)
        self.registry.register(CallbackCollector(self._fallbacks, self.keys.counts))
        self.registry.register(NvmlCollector(nvml))
        self.auth = Authenticator(c.tokens, mtls=bool(c.client_ca))
        workers = c.workers or device_count(backend)
        queue_cap = max(c.max_queue_elements, c.max_request_elements)
        self.batcher = DynamicBatcher(workers=workers, max_batch=c.max_batch, max_delay=c.max_delay_ms / 1000,
                                      max_queue_elements=queue_cap, preferred_batch=c.preferred_batch,
                                      max_identity_queue_elements=max(c.max_identity_queue_elements or queue_cap // 4,
                                                                      c.max_request_elements),
                                      observer=self.metrics)
        self.admission = Admission(c.max_calls, c.max_calls_per_identity)
        self._receivers = futures.ThreadPoolExecutor(max_workers=c.max_calls, thread_name_prefix="heaccel-recv")
        self._reserve = futures.ThreadPoolExecutor(max_workers=max(1, c.health_threads),
                                                   thread_name_prefix="heaccel-health")
        ms = lambda seconds: int(seconds * 1000)  # noqa: E731
        opts = [
            ("grpc.max_receive_message_length", c.max_message_bytes),
            ("grpc.max_send_message_length", c.max_message_bytes),
            ("grpc.so_reuseport", 0),
            ("grpc.max_concurrent_streams", c.max_streams_per_connection),
            ("grpc.keepalive_time_ms", ms(c.keepalive_time_s)),
            ("grpc.keepalive_timeout_ms", ms(c.keepalive_timeout_s)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", ms(c.min_client_ping_interval_s)),
            ("grpc.http2.min_ping_interval_without_data_ms", ms(c.min_client_ping_interval_s)),
            ("grpc.http2.max_ping_strikes", 2),
            ("grpc.max_connection_idle_ms", ms(c.max_connection_idle_s)),
        ]
        self._interceptor = interceptor = AdmissionInterceptor(
            self.admission, set(SERVICE_NAMES), self.auth.identify, idle_timeout=c.idle_timeout_s,
            receivers=self._receivers, reserve=self._reserve, health_receivers=4 * max(1, c.health_threads),
            reject=lambda method, e: self.metrics.observe_request(method.rsplit("/", 1)[-1].lower(), None,
                                                                  e.code.name, 0.0, 0))
        # no gRPC-wide call limit: it would count health checks too; Admission bounds the calls
        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=c.handler_threads,
                                                                  thread_name_prefix="heaccel-rpc"),
                                       options=opts, interceptors=[interceptor])
        pb_grpc.add_KeyServiceServicer_to_server(KeyServicer(self), self.grpc_server)
        pb_grpc.add_ComputeServiceServicer_to_server(ComputeServicer(self), self.grpc_server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc_server)
        reflection_names = SERVICE_NAMES + (health.SERVICE_NAME, reflection.SERVICE_NAME, REFLECTION_V1)
        reflector = reflection.ReflectionServicer(reflection_names)
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflector, self.grpc_server)
        self.grpc_server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {
            "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                reflector.ServerReflectionInfo,
                request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)}),))
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

            addr = c.metrics_address if c.metrics_address is not None else _host_of(c.address)
            self._metrics_http, _ = serve_metrics(self.registry, c.metrics_port, addr)
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
        """Drain: health turns NOT_SERVING at once (and keeps answering), new calls get UNAVAILABLE,
        calls in progress finish for up to ``grace`` s; then the server stops."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.config.grace_seconds if grace is None else grace
        t0 = time.monotonic()
        self.health.enter_graceful_shutdown()   # every service NOT_SERVING, and it stays so
        drained = self.admission.drain(grace)
        if not drained:
            log.warning("%d calls still in progress after the %g s grace: they are cut off",
                        self.admission.working, grace)
        # what is left now is refusals on their way out and endless public calls (health Watch)
        self.grpc_server.stop(1.0 if drained else 0).wait()
        self.batcher.close(timeout=max(0.5, grace - (time.monotonic() - t0)))
        for pool in (self._receivers, self._reserve):
            pool.shutdown(wait=False, cancel_futures=True)
        self._interceptor.close()
        self.keys.store.close()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()
        if self._own_backend and self.config.backend not in ("cpu", "gpu", "auto"):
            self.backend.close()
        log.info("he-accel server stopped")

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()
