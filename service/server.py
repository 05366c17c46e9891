"""The gRPC offload server: key registry, batch compute, health, reflection, metrics.

Build one with :class:`HeAccelServer` (dependencies injected: backend, metrics registry,
key generator) or run ``he-accel serve``. A call passes the interceptors of
:mod:`accel.service.interceptors` (authentication, admission, metrics, status codes) before its
servicer: the KeyService below, the ComputeService in :mod:`accel.service.compute`, which
validates each request in its handler thread and queues it on the
:class:`~accel.service.batcher.DynamicBatcher` (concurrent requests for the same key and op
become one backend call). Every failure becomes a status code; the server never dies on a request.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

import accel
from accel.backends import Backend, get_backend

from .admission import Admission, AdmissionInterceptor
from .auth import Authenticator
from .batcher import DynamicBatcher
from .compute import MAX_POWMOD_BITS, REPLY_FLOOR, ComputeServicer  # noqa: F401 - importable from here, as before
from .config import ServerConfig, config_from_args, default_key_store  # noqa: F401 - importable from here, as before
from .errors import ServiceError
from .interceptors import AuthInterceptor, CallContext, MetricsInterceptor, StatusInterceptor
from .interceptors import as_service_error  # noqa: F401 - importable from here, as before
from .keys import KeyRecord, KeyRegistry
from .keystore import KeyStore, MemoryKeyStore, open_key_store
from .metrics import CallbackCollector, NvmlCollector, ServiceMetrics
from .ops import COMPUTE_SERVICE, KEY_SERVICE, method_ops
from .proto.heaccel.v1 import heaccel_pb2 as pb
from .proto.heaccel.v1 import heaccel_pb2_grpc as pb_grpc

log = logging.getLogger("heaccel.server")

SERVICE_NAMES = (KEY_SERVICE.full_name, COMPUTE_SERVICE.full_name)
# grpc.reflection.v1 is v1alpha under its final name (same messages, field for field);
# grpcio-reflection ships only v1alpha, so v1 is served by the same servicer under its name.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


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
    """The key registry's RPCs. The caller is ``context.identity``; a handler names the key size
    it worked on (``context.key_bits``) for the metrics, and raises to fail."""

    def __init__(self, server: "HeAccelServer"):
        self.s = server

    @staticmethod
    def _info(rec: KeyRecord, context: CallContext) -> pb.KeyInfo:
        context.key_bits = rec.public_key.bits
        return _key_info(rec, context.identity)

    def RegisterPublicKey(self, request, context):
        return self._info(self.s.keys.register_public(request.public_key, context.identity), context)

    def GenerateKeyPair(self, request, context):
        return self._info(self.s.keys.generate(request.bits, context.identity), context)

    def ImportPrivateKey(self, request, context):
        return self._info(self.s.keys.import_private(request.public_key, request.p, request.q, context.identity),
                          context)

    def ExportPrivateKey(self, request, context):
        rec, sk = self.s.keys.private(request.key_id, context.identity)
        context.key_bits = rec.public_key.bits
        log.info("private key %s exported to its owner", rec.key_id)
        return pb.PrivateKeyMaterial(public_key=rec.public_key.to_bytes(), p=_big_endian(sk.p), q=_big_endian(sk.q))

    def DescribeKey(self, request, context):
        return self._info(self.s.keys.get(request.key_id, request.public_key, context.identity), context)

    def DeleteKey(self, request, context):
        return pb.DeleteKeyResponse(deleted=self.s.keys.delete(request.key_id, context.identity))

    def ListKeys(self, request, context):
        return pb.ListKeysResponse(keys=[_key_info(r, context.identity) for r in self.s.keys.visible(context.identity)])


def _big_endian(x: int) -> bytes:
    return x.to_bytes((x.bit_length() + 7) // 8, "big")


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
        ops = method_ops()
        self._interceptor = admission = AdmissionInterceptor(
            self.admission, set(SERVICE_NAMES), idle_timeout=c.idle_timeout_s, receivers=self._receivers,
            reserve=self._reserve, health_receivers=4 * max(1, c.health_threads), reject=self._refused)
        # outermost first: who calls, may they now, how it went, what status it ends with
        interceptors = [AuthInterceptor(self.auth.identify, ops, self._refused), admission,
                        MetricsInterceptor(ops, self.metrics.observe_request, self.metrics.inflight.inc),
                        StatusInterceptor(ops)]
        # no gRPC-wide call limit: it would count health checks too; Admission bounds the calls
        self.grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=c.handler_threads,
                                                                  thread_name_prefix="heaccel-rpc"),
                                       options=opts, interceptors=interceptors)
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

    def _refused(self, method: str, error: ServiceError) -> None:
        """A call refused before its handler (authentication, admission), by its method's name."""
        self.metrics.observe_request(method.rsplit("/", 1)[-1].lower(), None, error.code.name, 0.0, 0)

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
