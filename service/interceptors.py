"""The interceptors every he-accel call passes through, outermost first:

1. :class:`AuthInterceptor` identifies the caller (bearer token or client certificate) and hands
   the call on with a :class:`CallContext` that carries the identity;
2. :class:`~accel.service.admission.AdmissionInterceptor` gives the identity a slot (or refuses)
   and waits for the request message;
3. :class:`MetricsInterceptor` counts the call in flight, times it and records its outcome;
4. :class:`StatusInterceptor` turns whatever the handler raised into the call's status
   (:func:`as_service_error`, the one place failures become codes).

Each applies to the methods in its ``ops`` (full method name -> op label) and passes the others
(health, reflection) through. They take plain callables, not the metrics library. The servicers
read ``context.identity`` and report ``context.key_bits`` and ``context.elements``.
"""
from __future__ import annotations

import abc
import logging
import time
from functools import partial
from typing import Any, Callable, Iterator, Mapping

import grpc

from .errors import Internal, InvalidArgument, ServiceError

log = logging.getLogger("heaccel.server")

Behavior = Callable[[Any, Any], Any]
Refused = Callable[[str, ServiceError], None]           # (full method name, the refusal)
Observe = Callable[[str, "int | None", str, float, int], None]  # (op, key bits, code, seconds, elements)


def as_service_error(e: BaseException, op: str) -> ServiceError:
    """The status a failure maps to: typed errors keep theirs; the library's ValueError and
    TypeError are always the caller's input; anything else is a bug, logged, never fatal."""
    if isinstance(e, ServiceError):
        return e
    if isinstance(e, (ValueError, TypeError)):
        return InvalidArgument(str(e))
    log.error("internal error in %s", op, exc_info=e)
    return Internal(f"internal error in {op}; see the server log")


class CallContext:
    """A call's gRPC context (every method delegates to it) and what the interceptors and the
    handler share: ``identity`` (from authentication), ``key_bits`` and ``elements`` (set by the
    handler on success, recorded by the metrics), ``status`` (the code a failure was answered with)."""

    def __init__(self, context: grpc.ServicerContext, identity: str):
        self._context = context
        self.identity = identity
        self.key_bits: int | None = None
        self.elements = 0
        self.status: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


_HANDLER_KINDS = {
    (False, False): ("unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


def around(handler: grpc.RpcMethodHandler, call: Callable[[Behavior, Any, Any], Any],
           stream: Callable[[Behavior, Any, Any], Iterator[Any]] | None = None) -> grpc.RpcMethodHandler:
    """``handler`` of the same kind, its behavior run as ``call(behavior, request, context)``, or
    ``stream(...)`` (a generator, so that it spans the whole reply) when replies are streamed."""
    attr, make = _HANDLER_KINDS[(handler.request_streaming, handler.response_streaming)]
    behavior = getattr(handler, attr)
    wrapper = stream if handler.response_streaming and stream is not None else call

    def run(request: Any, context: Any) -> Any:
        return wrapper(behavior, request, context)

    pool = getattr(behavior, "experimental_thread_pool", None)  # a per-method pool stays with the method
    if pool is not None:
        run.experimental_thread_pool = pool  # type: ignore[attr-defined]
    return make(run, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


class AuthInterceptor(grpc.ServerInterceptor):
    """Identifies the caller of every method in ``ops`` before anything else happens: a call that
    fails (:class:`~accel.service.errors.Unauthenticated`) is refused, recorded by ``refused``, and
    holds nothing."""

    def __init__(self, identify: Callable[[Any], str], ops: Mapping[str, str], refused: Refused):
        self.identify = identify
        self.ops = ops
        self.refused = refused

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method not in self.ops:
            return handler
        return around(handler, partial(self._identified, method))

    def _identified(self, method: str, behavior: Behavior, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            identity = self.identify(context)
        except ServiceError as e:
            self.refused(method, e)
            context.abort(e.code, e.message)
            raise  # unreachable: abort raises
        return behavior(request, CallContext(context, identity))


class _OpInterceptor(grpc.ServerInterceptor):
    """Wraps the handler of every method in ``ops`` (full method name -> op label) in
    ``self._call(op, ...)``, or ``self._stream(op, ...)`` where replies are streamed."""

    ops: Mapping[str, str]

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        op = self.ops.get(handler_call_details.method)
        if handler is None or op is None:
            return handler
        return around(handler, partial(self._call, op), partial(self._stream, op))

    @abc.abstractmethod
    def _call(self, op: str, behavior: Behavior, request: Any, context: CallContext) -> Any: ...

    @abc.abstractmethod
    def _stream(self, op: str, behavior: Behavior, request: Any, context: CallContext) -> Iterator[Any]: ...


class MetricsInterceptor(_OpInterceptor):
    """Per call: in flight while it runs (``in_flight(+1)``, then ``-1``), then
    ``observe(op, key_bits, code, seconds, elements)`` with the code it ended with."""

    def __init__(self, ops: Mapping[str, str], observe: Observe, in_flight: Callable[[int], None]):
        self.ops = ops
        self.observe = observe
        self.in_flight = in_flight

    def _call(self, op: str, behavior: Behavior, request: Any, context: CallContext) -> Any:
        start = time.perf_counter()
        self.in_flight(1)
        try:
            return behavior(request, context)
        finally:
            self.in_flight(-1)
            self._record(op, context, start)

    def _stream(self, op: str, behavior: Behavior, request: Any, context: CallContext) -> Iterator[Any]:
        start = time.perf_counter()
        self.in_flight(1)
        try:
            yield from behavior(request, context)
        except GeneratorExit:  # gRPC stopped reading the replies: the caller went away
            context.status = context.status or grpc.StatusCode.CANCELLED.name
            raise
        finally:
            self.in_flight(-1)
            self._record(op, context, start)

    def _record(self, op: str, context: CallContext, start: float) -> None:
        code = context.status or "OK"
        ok = code == "OK"
        self.observe(op, context.key_bits if ok else None, code, time.perf_counter() - start,
                     context.elements if ok else 0)


class StatusInterceptor(_OpInterceptor):
    """Whatever a handler of ``ops`` raises ends its call with the status :func:`as_service_error`
    gives (recorded in ``context.status``); the server never dies on a request."""

    def __init__(self, ops: Mapping[str, str]):
        self.ops = ops

    def _call(self, op: str, behavior: Behavior, request: Any, context: CallContext) -> Any:
        try:
            return behavior(request, context)
        except Exception as e:  # noqa: BLE001 - every failure becomes a status
            self._abort(op, e, context)

    def _stream(self, op: str, behavior: Behavior, request: Any, context: CallContext) -> Iterator[Any]:
        try:
            yield from behavior(request, context)
        except Exception as e:  # noqa: BLE001 - every failure becomes a status
            self._abort(op, e, context)

    @staticmethod
    def _abort(op: str, e: Exception, context: CallContext) -> None:
        err = as_service_error(e, op)
        context.status = err.code.name
        context.abort(err.code, err.message)
