"""The ComputeService: each op planned from one table, run on the batcher, unary or streamed.

A request is validated and turned into a batcher :class:`~accel.service.batcher.Job` by its op's
planner (:attr:`ComputeServicer.PLANNERS`), in the handler thread: sizes are checked from the
message's lengths before anything is decoded, and the key a request names is registered for
the caller only once the whole request proved valid. Authentication, admission, metrics and
status codes are the interceptors' (:mod:`accel.service.interceptors`); handlers only raise.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent import futures
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple

import grpc
import numpy as np

from accel.backends.base import EncryptMode, encrypt_options
from accel.keys import PublicKey
from accel.packing import blob_to_ints, ints_to_blob

from . import codec
from .batcher import Job
from .errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, ServiceError
from .interceptors import as_service_error
from .keys import KeyRecord, KeyRegistry
from .ops import COMPUTE_OPS, ComputeOp
from .proto.heaccel.v1 import heaccel_pb2 as pb
from .proto.heaccel.v1 import heaccel_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from .server import HeAccelServer

log = logging.getLogger("heaccel.server")

MAX_POWMOD_BITS = 8192
REPLY_FLOOR = 1 << 20  # a reply may always be this large, whatever the request's size


def _mode_args(mode: EncryptMode) -> Callable[[KeyRegistry, KeyRecord, str], dict[str, Any]]:
    """raw_encrypt's arguments for ``mode`` (the core's :func:`encrypt_options`), taking from the
    registry only what the mode needs: the caller's private key (CRT), the key's DJN parameters."""
    def args(keys: KeyRegistry, rec: KeyRecord, ident: str) -> dict[str, Any]:
        return encrypt_options(mode, private_key=keys.private_of(rec, ident) if mode is EncryptMode.CRT else None,
                               djn=keys.djn(rec) if mode is EncryptMode.DJN else None)
    return args


# encrypt mode on the wire -> the backend's keyword arguments for it, from the key record and the caller
ENCRYPT_MODE_ARGS: dict[int, Callable[[KeyRegistry, KeyRecord, str], dict[str, Any]]] = {
    wire: _mode_args(mode) for mode, wire in codec.WIRE_ENCRYPT_MODES.items()}


class ComputeServicer(pb_grpc.ComputeServiceServicer):
    """Unary ops (one method per :data:`~accel.service.ops.COMPUTE_OPS` entry, made below the
    class) and the ordered chunk stream. :meth:`plan` validates a request into a batcher Job."""

    def __init__(self, server: "HeAccelServer"):
        self.s = server

    # -- planning: one planner per op, (request, key record or None, identity) -> Job ---------
    def plan(self, op: str, req: Any, ident: str) -> tuple[Job, int | None]:
        """The Job for one request of ``op`` and the bits of its key (None: keyless)."""
        planner = self.PLANNERS.get(op)
        if planner is None:
            raise InvalidArgument(f"unknown op {op!r}")
        rec = None if op in self.KEYLESS else self._key(req.key, ident)
        job = planner(self, req, rec, ident)
        if rec is not None and req.key.public_key:
            self.s.keys.commit(rec, ident)
        job.owner = ident
        return job, (None if rec is None else rec.public_key.bits)

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

    def _ciphertexts(self, blob: bytes, pk: PublicKey, what: str = "ciphertext") -> int:
        """How many ciphertexts ``blob`` holds, within the request limit; each checked < n^2."""
        self._limit(codec.count_of(blob, pk.ciphertext_width, what))
        return codec.ciphertexts(blob, pk.nsquare, pk.ciphertext_width, what)

    def _scalars(self, sn: pb.SignedNumbers, pk: PublicKey, what: str, expected: int) -> list[int]:
        return codec.signed(sn.magnitudes, sn.width or pk.plaintext_width, sn.negative, pk.n, what, expected)

    def _plan_encrypt(self, req: pb.EncryptRequest, rec: KeyRecord, ident: str) -> Job:
        pk, be = rec.public_key, self.s.backend
        self._limit(codec.count_of(req.plaintexts, pk.plaintext_width, "plaintext"))
        count = codec.plaintexts(req.plaintexts, pk.n, pk.plaintext_width)
        mode_args = ENCRYPT_MODE_ARGS.get(req.mode)
        if mode_args is None:
            raise InvalidArgument(f"unknown encrypt mode {req.mode}")
        kw = mode_args(self.s.keys, rec, ident)
        self._reply_limit(count * pk.ciphertext_width)
        return Job(("encrypt", rec.key_id, req.mode), count, (req.plaintexts,),
                   lambda ms: be.raw_encrypt(pk, ms, **kw), pk.ciphertext_width, "encrypt")

    def _plan_decrypt(self, req: pb.DecryptRequest, rec: KeyRecord, ident: str) -> Job:
        pk, be = rec.public_key, self.s.backend
        sk = self.s.keys.private_of(rec, ident)
        count = self._ciphertexts(req.ciphertexts, pk)
        return Job(("decrypt", rec.key_id), count, (req.ciphertexts,), lambda cs: be.raw_decrypt(sk, cs),
                   pk.plaintext_width, "decrypt")

    def _plan_add(self, req: pb.AddRequest, rec: KeyRecord, ident: str) -> Job:
        pk, be, cw = rec.public_key, self.s.backend, rec.public_key.ciphertext_width
        count = codec.count_of(req.a, cw, "ciphertext a")
        if codec.count_of(req.b, cw, "ciphertext b") != count:
            raise InvalidArgument(f"length mismatch: {count} vs {len(req.b) // cw} ciphertexts")
        self._ciphertexts(req.a, pk, "ciphertext a")
        self._ciphertexts(req.b, pk, "ciphertext b")
        return Job(("add", rec.key_id), count, (req.a, req.b), lambda a, b: be.raw_add(pk, a, b), cw, "add")

    def _plan_add_plain(self, req: pb.AddPlainRequest, rec: KeyRecord, ident: str) -> Job:
        pk, be = rec.public_key, self.s.backend
        count = codec.count_of(req.ciphertexts, pk.ciphertext_width, "ciphertext")
        if codec.count_of(req.plaintexts, pk.plaintext_width, "plaintext") != count:
            raise InvalidArgument(f"length mismatch: {count} ciphertexts, "
                                  f"{len(req.plaintexts) // pk.plaintext_width} plaintexts")
        self._ciphertexts(req.ciphertexts, pk)
        codec.plaintexts(req.plaintexts, pk.n, pk.plaintext_width)
        return Job(("add_plain", rec.key_id), count, (req.ciphertexts, req.plaintexts),
                   lambda c, m: be.raw_add_plain(pk, c, m), pk.ciphertext_width, "add_plain")

    def _plan_mul(self, req: pb.MulRequest, rec: KeyRecord, ident: str) -> Job:
        pk, be = rec.public_key, self.s.backend
        count = codec.count_of(req.ciphertexts, pk.ciphertext_width, "ciphertext")
        self._limit(count)
        sc = req.scalars
        n_scalars = codec.signed_count(sc.magnitudes, sc.width or pk.plaintext_width, sc.negative, "scalar")
        if n_scalars != count:
            raise InvalidArgument(f"length mismatch: {count} ciphertexts, {n_scalars} scalars")
        self._ciphertexts(req.ciphertexts, pk)
        ks = self._scalars(sc, pk, "scalar", count)
        return Job(("mul", rec.key_id), count, (req.ciphertexts, ks), lambda c, k: be.raw_mul(pk, c, k),
                   pk.ciphertext_width, "mul")

    def _plan_sum(self, req: pb.SumRequest, rec: KeyRecord, ident: str) -> Job:
        pk, be = rec.public_key, self.s.backend
        count = self._ciphertexts(req.ciphertexts, pk)
        return Job(("sum", rec.key_id), count, (req.ciphertexts,), lambda c: be.raw_sum(pk, c), 0, "sum")

    def _plan_sum_groups(self, req: pb.SumGroupsRequest, rec: KeyRecord, ident: str) -> Job:
        pk, be, cw = rec.public_key, self.s.backend, rec.public_key.ciphertext_width
        count = codec.count_of(req.ciphertexts, cw, "ciphertext")
        groups = len(req.counts)
        self._limit(count)
        self._limit(groups, "groups")   # an empty group: a byte of the request, a ciphertext of the reply
        self._reply_limit(groups * cw)
        # uint64 on the wire, so never negative; added up as Python ints, so that huge counts
        # cannot wrap around to the right total
        total = sum(req.counts)
        if total != count:
            raise InvalidArgument(f"length mismatch: the counts add up to {total}, "
                                  f"the request holds {count} ciphertexts")
        codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
        counts = list(req.counts)
        # not elementwise (a reply per group, not per element): it runs alone, as sum does, so
        # concurrent callers' groups never mix
        return Job(("sum_groups", rec.key_id), count, (req.ciphertexts,),
                   lambda c: be.raw_sum_groups(pk, c, counts), 0, "sum_groups")

    def _plan_matvec(self, req: pb.MatVecRequest, rec: KeyRecord, ident: str) -> Job:
        pk, be, cw = rec.public_key, self.s.backend, rec.public_key.ciphertext_width
        rows, cols = codec.count_of(req.ciphertexts, cw, "ciphertext"), req.columns
        self._limit(rows, "rows")
        self._limit(cols, "columns")
        self._limit(rows * cols, "matrix entries")
        # each column's reply (cw bytes) costs the request a matrix entry in every row; with
        # no rows the reply is E(0)s for free, so it gets the small floor only
        self._reply_limit(cols * cw, len(req.ciphertexts) + len(req.matrix.magnitudes), cw)
        m = req.matrix
        n_entries = codec.signed_count(m.magnitudes, m.width or pk.plaintext_width, m.negative, "matrix entry")
        if n_entries != rows * cols:
            raise InvalidArgument(f"matrix has {n_entries} entries; {rows} rows x {cols} columns expected")
        codec.ciphertexts(req.ciphertexts, pk.nsquare, cw)
        entries = self._scalars(m, pk, "matrix", rows * cols)
        X: Any = np.empty((0, cols), dtype=object) if rows == 0 else \
            [entries[i * cols:(i + 1) * cols] for i in range(rows)]
        # the work is rows x columns exponentiations: that is what the queue counts
        return Job(("matvec", rec.key_id), max(rows * cols, cols, 1), (req.ciphertexts,),
                   lambda c: be.raw_matvec(pk, c, X), 0, "matvec")

    def _plan_rerandomize(self, req: pb.RerandomizeRequest, rec: KeyRecord, ident: str) -> Job:
        pk, be = rec.public_key, self.s.backend
        count = self._ciphertexts(req.ciphertexts, pk)
        if req.use_private_key:
            sk = self.s.keys.private_of(rec, ident)
            return Job(("rerandomize_crt", rec.key_id), count, (req.ciphertexts,),
                       lambda c: be.raw_rerandomize(pk, c, private_key=sk), pk.ciphertext_width, "rerandomize")
        return Job(("rerandomize", rec.key_id), count, (req.ciphertexts,), lambda c: be.raw_rerandomize(pk, c),
                   pk.ciphertext_width, "rerandomize")

    def _plan_powmod(self, req: pb.PowModRequest, rec: None, ident: str) -> Job:
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

    PLANNERS: dict[str, Callable[..., Job]] = {
        "encrypt": _plan_encrypt, "decrypt": _plan_decrypt, "add": _plan_add, "add_plain": _plan_add_plain,
        "mul": _plan_mul, "sum": _plan_sum, "sum_groups": _plan_sum_groups, "matvec": _plan_matvec,
        "rerandomize": _plan_rerandomize, "powmod": _plan_powmod,
    }
    KEYLESS = frozenset({"powmod"})

    # -- execution --------------------------------------------------------------------------
    def submit(self, job: Job, context: grpc.ServicerContext) -> futures.Future:
        job.deadline = _deadline(context)  # an expired job is dropped before it runs
        return self.s.batcher.submit(job)

    @staticmethod
    def wait(job: Job, fut: futures.Future, context: grpc.ServicerContext) -> Any:
        context.add_callback(job.cancel)
        remaining = context.time_remaining()
        try:
            return fut.result(timeout=remaining if remaining is not None and remaining < 1e8 else None)
        except futures.TimeoutError:
            job.cancel()
            raise DeadlineExceeded("the deadline passed before the batch ran") from None

    def unary(self, op: ComputeOp, request: Any, context: Any) -> Any:
        """One request of ``op``: planned, queued, waited for; its key size and element count
        go to the metrics through ``context``."""
        job, bits = self.plan(op.name, request, context.identity)
        out = self.wait(job, self.submit(job, context), context)
        context.key_bits, context.elements = bits, job.count
        return op.reply(**{op.result: out})

    def Stream(self, request_iterator: Iterator[pb.StreamRequest], context: Any) -> Iterator[pb.StreamResponse]:
        return ChunkStream(self, request_iterator, context).answers()


def _deadline(context: grpc.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return time.monotonic() + remaining if remaining is not None and remaining < 1e8 else None


def _unary_method(op: ComputeOp) -> Callable[[ComputeServicer, Any, Any], Any]:
    def method(self: ComputeServicer, request: Any, context: Any) -> Any:
        return self.unary(op, request, context)

    method.__name__ = method.__qualname__ = op.rpc
    method.__doc__ = f"ComputeService/{op.rpc}: the {op.name!r} op on one request."
    return method


for _op in COMPUTE_OPS.values():
    setattr(ComputeServicer, _op.rpc, _unary_method(_op))


class _Chunk(NamedTuple):
    sequence: int
    op: str | None
    bits: int | None = None
    job: Job | None = None
    future: futures.Future | None = None
    error: ServiceError | None = None


class ChunkStream:
    """One ``Stream`` call. A reader thread plans and submits the chunks as they arrive, at most
    ``stream_window`` ahead of the replies; the handler thread answers them in order, each as
    soon as its batch has run. The first failure ends the stream with that chunk's status; a
    stream that sends nothing for ``idle_timeout_s`` (with nothing queued) is ended too."""

    def __init__(self, servicer: ComputeServicer, requests: Iterator[pb.StreamRequest], context: Any):
        self.servicer = servicer
        self.requests = requests
        self.context = context
        config = servicer.s.config
        self.idle = config.idle_timeout_s
        self.window: queue.Queue[_Chunk | None] = queue.Queue(maxsize=max(1, config.stream_window))
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.queued: set[Job] = set()       # submitted, not yet answered: cancelled with the call
        self.last_message = time.monotonic()

    def abandon(self) -> None:
        self.stop.set()
        with self.lock:
            for job in self.queued:
                job.cancel()

    # -- the reader thread -------------------------------------------------------------------
    def read(self) -> None:
        try:
            for req in self.requests:
                self.last_message = time.monotonic()
                if self.stop.is_set() or not self._put(self._planned(req)):
                    return
        except Exception as e:  # noqa: BLE001 - the client went away mid-stream
            if not self.stop.is_set():
                log.debug("stream reader ended: %s", type(e).__name__)
        finally:
            self._put(None)

    def _planned(self, req: pb.StreamRequest) -> _Chunk:
        op = req.WhichOneof("op")
        try:
            if op is None:
                raise InvalidArgument("the chunk names no op")
            job, bits = self.servicer.plan(op, getattr(req, op), self.context.identity)
            with self.lock:
                fut = self.servicer.submit(job, self.context)
                self.queued.add(job)
            return _Chunk(req.sequence, op, bits, job, fut)
        except Exception as e:  # noqa: BLE001 - answered in order with its status
            return _Chunk(req.sequence, op, error=as_service_error(e, op or "stream"))

    def _put(self, chunk: _Chunk | None) -> bool:
        while not self.stop.is_set():
            try:
                self.window.put(chunk, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    # -- the handler thread ------------------------------------------------------------------
    def answers(self) -> Iterator[pb.StreamResponse]:
        self.context.add_callback(self.abandon)  # cancelled, past its deadline, or ended by an error
        threading.Thread(target=self.read, name="heaccel-stream-reader", daemon=True).start()
        try:
            while (chunk := self._next()) is not None:
                data = self._result(chunk)
                self.context.elements += chunk.job.count
                yield pb.StreamResponse(sequence=chunk.sequence, data=data)
        finally:
            self.abandon()

    def _next(self) -> _Chunk | None:
        """The next chunk in order (None: the caller has sent its last); DeadlineExceeded when
        the caller has been silent for ``idle`` seconds with nothing of it queued."""
        while True:
            try:
                return self.window.get(timeout=min(1.0, self.idle))
            except queue.Empty:
                with self.lock:
                    busy = bool(self.queued)
                if not busy and time.monotonic() - self.last_message > self.idle:
                    raise DeadlineExceeded(f"no stream message within {self.idle:g} s (idle timeout)") from None

    def _result(self, chunk: _Chunk) -> bytes:
        """The chunk's reply, recorded in the metrics as its op; a failure raises, naming the chunk."""
        observe = self.servicer.s.metrics.observe_request
        error = chunk.error
        if error is None:
            t0 = time.perf_counter()
            try:
                data = self.servicer.wait(chunk.job, chunk.future, self.context)
            except Exception as e:  # noqa: BLE001
                error = as_service_error(e, chunk.op)
            finally:
                with self.lock:
                    self.queued.discard(chunk.job)
        if error is not None:
            observe(chunk.op or "stream", None, error.code.name, 0.0, 0)
            raise type(error)(f"stream chunk {chunk.sequence} ({chunk.op}): {error.message}", error.code)
        observe(chunk.op, chunk.bits, "OK", time.perf_counter() - t0, chunk.job.count)
        return data
