"""Admission before work: who may hold one of the server's calls, and for how long.

gRPC's own ``maximum_concurrent_rpcs`` counts every call alike, health checks included, and a
unary call holds a handler thread while it waits for its request message, before any handler
code runs: 256 silent calls from anyone used to lock every caller out. Here instead:

* every unary method of the he-accel services is served as a client-streaming one, so that its
  handler starts at once: the caller, authenticated from the call's metadata (by
  :class:`~accel.service.interceptors.AuthInterceptor`, the interceptor before this one), takes a
  slot (``max_calls`` in total, ``max_calls_per_identity`` per identity) or gets
  RESOURCE_EXHAUSTED, and only then is the request message waited for, at most ``idle_timeout``;
  ``Stream`` takes its slot the same way and times its own messages out;
* health checks run on a thread pool of their own (the reserve), outside these limits;
* while draining, new calls get UNAVAILABLE (clients retry elsewhere or later).
"""
from __future__ import annotations

import collections
import threading
from concurrent import futures
from typing import Any, Callable, Iterator

import grpc

from .errors import DeadlineExceeded, InvalidArgument, ResourceExhausted, ServiceError, Unavailable

HEALTH_CHECK = "/grpc.health.v1.Health/Check"
PUBLIC = "public:"  # identities of the calls open to all (health Watch, reflection): not waited for by a drain
HEALTH_RECEIVE_TIMEOUT = 2.0  # probes send their request at once; a silent one frees the reserve soon


class Admission:
    """Counts calls in progress, in total and per identity."""

    def __init__(self, max_calls: int, max_calls_per_identity: int):
        if max_calls < 1 or max_calls_per_identity < 1:
            raise ValueError("max_calls and max_calls_per_identity must be >= 1")
        self.max_calls = max_calls
        self.max_calls_per_identity = max_calls_per_identity
        self._active: collections.Counter[str] = collections.Counter()
        self._total = 0
        self._working = 0  # calls that a drain waits for (not the endless public ones)
        self._cond = threading.Condition()
        self.draining = False

    def acquire(self, identity: str) -> None:
        with self._cond:
            if self.draining:
                raise Unavailable("the server is shutting down; retry on another replica or later")
            if self._active[identity] >= self.max_calls_per_identity:
                raise ResourceExhausted(f"this identity already has {self.max_calls_per_identity} calls in "
                                        "progress, its limit; retry later")
            if self._total >= self.max_calls:
                raise ResourceExhausted(f"the server has {self.max_calls} calls in progress, its limit; retry later")
            self._active[identity] += 1
            self._total += 1
            if not identity.startswith(PUBLIC):
                self._working += 1

    def release(self, identity: str) -> None:
        with self._cond:
            self._active[identity] -= 1
            if not self._active[identity]:
                del self._active[identity]
            self._total -= 1
            if not identity.startswith(PUBLIC):
                self._working -= 1
            self._cond.notify_all()

    @property
    def active(self) -> int:
        with self._cond:
            return self._total

    @property
    def working(self) -> int:
        with self._cond:
            return self._working

    def drain(self, timeout: float) -> bool:
        """Admit nothing more; wait up to ``timeout`` s for the calls in progress (health Watch
        and reflection streams excepted: they may never end). True when none is left."""
        with self._cond:
            self.draining = True
            return self._cond.wait_for(lambda: self._working == 0, timeout)


def _authenticated(context: Any) -> str:
    return context.identity  # set by AuthInterceptor, the interceptor before this one


def _receive(request_iterator: Iterator[Any], context: grpc.ServicerContext, receivers: futures.Executor,
             timeout: float) -> Any:
    """A call's one request message, waited for at most ``timeout`` s (on a ``receivers`` thread:
    gRPC's iterator has no timeout of its own; aborting the call ends that wait too)."""
    fut = receivers.submit(next, request_iterator, None)
    try:
        request = fut.result(timeout=timeout)
    except futures.TimeoutError:
        e: ServiceError = DeadlineExceeded(f"no request message within {timeout:g} s (idle timeout)")
    except grpc.RpcError:
        e = ServiceError("the caller went away", grpc.StatusCode.CANCELLED)
    else:
        if request is not None:
            return request
        e = InvalidArgument("the call ended without a request message")
    context.abort(e.code, e.message)


def _health_check(handler: grpc.RpcMethodHandler, pool: futures.ThreadPoolExecutor,
                  receivers: futures.Executor, timeout: float) -> grpc.RpcMethodHandler:
    """Health Check on ``pool`` (grpc's per-behavior thread pool hook), its request waited for
    at most ``timeout`` s so that silent probes cannot hold the reserve."""
    def run(request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return handler.unary_unary(_receive(request_iterator, context, receivers, timeout), context)

    run.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return grpc.stream_unary_rpc_method_handler(run, request_deserializer=handler.request_deserializer,
                                                response_serializer=handler.response_serializer)


class AdmissionInterceptor(grpc.ServerInterceptor):
    """Applies :class:`Admission` to the methods of ``services`` (see the module docstring).

    Their calls arrive authenticated: ``context.identity`` (the
    :class:`~accel.service.interceptors.CallContext` of the interceptor before this one).
    ``reject(method, error)`` records a refused call; ``receivers`` waits for request messages
    (one thread per admitted call at most, so it is sized like ``max_calls``); ``reserve`` runs
    health checks.
    """

    def __init__(self, admission: Admission, services: set[str], *, idle_timeout: float, receivers: futures.ThreadPoolExecutor, reserve: futures.ThreadPoolExecutor,
                 reject: Callable[[str, ServiceError], None] = lambda method, error: None,
                 health_receivers: int = 16):
        self.admission = admission
        self.services = services
        self.idle_timeout = idle_timeout
        self.receivers = receivers
        self.reserve = reserve
        self.reject = reject
        self._health_receivers = futures.ThreadPoolExecutor(max_workers=health_receivers,
                                                            thread_name_prefix="heaccel-health-recv")

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if method == HEALTH_CHECK:
            return _health_check(handler, self.reserve, self._health_receivers,
                                 min(self.idle_timeout, HEALTH_RECEIVE_TIMEOUT))
        service = method.split("/")[1]
        if service in self.services:
            identify = _authenticated
            # Stream times its own messages out (its reader already waits off the handler thread)
            own_requests = handler.request_streaming
        else:
            # open to all (health Watch, reflection): admitted as one shared identity per service,
            # so that silent or endless calls there hold at most one identity's share
            identify = lambda context: PUBLIC + service  # noqa: E731
            own_requests = False
        return self._admitted(handler, method, identify, own_requests)

    def _admit(self, method: str, identify: Callable[[Any], str], context: grpc.ServicerContext) -> str:
        try:
            ident = identify(context)
            self.admission.acquire(ident)
            return ident
        except ServiceError as e:
            self.reject(method, e)
            context.abort(e.code, e.message)
            raise  # unreachable: abort raises

    def _requests(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        """The call's request messages, each waited for at most ``idle_timeout`` s."""
        end = object()
        while True:
            fut = self.receivers.submit(next, request_iterator, end)
            try:
                message = fut.result(timeout=self.idle_timeout)
            except futures.TimeoutError:
                context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                              f"no request message within {self.idle_timeout:g} s (idle timeout)")
            if message is end:
                return
            yield message

    def _admitted(self, handler: grpc.RpcMethodHandler, method: str, identify: Callable[[Any], str],
                  own_requests: bool = False) -> grpc.RpcMethodHandler:
        """``handler`` served as request-streaming, so that it runs at once: admission first, then
        the request(s), waited for at most ``idle_timeout`` (unless ``own_requests``: the handler
        reads its request stream itself)."""
        kind = ("stream" if handler.request_streaming else "unary") + "_" + \
               ("stream" if handler.response_streaming else "unary")
        behavior = getattr(handler, kind)

        def request_of(request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
            if own_requests:
                return request_iterator
            if handler.request_streaming:
                return self._requests(request_iterator, context)
            return self.receive(request_iterator, context)

        if handler.response_streaming:
            def run(request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
                ident = self._admit(method, identify, context)
                try:
                    yield from behavior(request_of(request_iterator, context), context)
                finally:
                    self.admission.release(ident)

            make = grpc.stream_stream_rpc_method_handler
        else:
            def run(request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
                ident = self._admit(method, identify, context)
                try:
                    return behavior(request_of(request_iterator, context), context)
                finally:
                    self.admission.release(ident)

            make = grpc.stream_unary_rpc_method_handler
        return make(run, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)

    def receive(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        return _receive(request_iterator, context, self.receivers, self.idle_timeout)

    def close(self) -> None:
        self._health_receivers.shutdown(wait=False, cancel_futures=True)
