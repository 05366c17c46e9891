"""Clients of the he-accel service: :class:`HeAccelClient` (blocking) and
:class:`AsyncHeAccelClient` (asyncio), with the same methods: each is written once, in their
shared call core, as the plan of its call; each client runs plans its own way.

* One target (``"host:port"``) or several (a list): several appliances are used with gRPC's
  ``round_robin`` load balancing, and every request carries its public key so that any box
  can serve it without a registration step.
* Batches larger than ``chunk_bytes`` go over the ordered ``Stream`` RPC in chunks; sums and
  matrix products over chunks are combined by the client (a product mod n^2 of the partial results).
* UNAVAILABLE is retried with exponential backoff and jitter (a stream resumes at its first
  unanswered chunk); every other failure raises the typed :mod:`accel.service.errors` exception.

Numbers go in and come out packed (bytes, little-endian at the key's widths). For ints and
:class:`accel.EncryptedVector`, use the remote backend: ``accel.get_backend("remote", target=...)``.
This module needs only ``grpcio`` and ``protobuf`` (it runs under FATE 2.x's pins).

Its parts, one job each: :mod:`.remote_keys` (``KeyInfo``, ``RemotePrivateKey``), :mod:`.plans`
(a call's requests and how replies combine), :mod:`.channel` (targets, TLS), :mod:`.call_core`
(the methods, written once, and the retry policy); this module runs them, blocking or awaitable.
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import time
from typing import Any, Callable, Sequence

import grpc

from .call_core import DEFAULT_CHUNK_BYTES, ENCRYPT_MODES, CallCore, Progress
from .errors import InvalidArgument, ServiceError
from .plans import Plan
from .proto.heaccel.v1 import heaccel_pb2_grpc as pb_grpc
from .remote_keys import KeyInfo, RemotePrivateKey

# the names this module has always offered (their homes: call_core, remote_keys, errors)
__all__ = ["AsyncHeAccelClient", "DEFAULT_CHUNK_BYTES", "ENCRYPT_MODES", "HeAccelClient", "InvalidArgument",
           "KeyInfo", "RemotePrivateKey", "ServiceError"]


class HeAccelClient(CallCore):
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
    def _bind(spec: Callable[..., Plan]) -> Callable[..., Any]:
        @functools.wraps(spec)
        def method(self: "HeAccelClient", *args: Any, **kw: Any) -> Any:
            return self._execute(spec(self, *args, **kw))
        return method

    def _execute(self, plan: Plan) -> Any:
        if len(plan.requests) == 1:
            return plan.finish([plan.payload(self._send(plan))])
        progress = Progress(self, plan)
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


class AsyncHeAccelClient(CallCore):
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
    def _bind(spec: Callable[..., Plan]) -> Callable[..., Any]:
        @functools.wraps(spec)
        async def method(self: "AsyncHeAccelClient", *args: Any, **kw: Any) -> Any:
            return await self._execute(spec(self, *args, **kw))
        return method

    async def _execute(self, plan: Plan) -> Any:
        if len(plan.requests) == 1:
            return plan.finish([plan.payload(await self._send(plan))])
        progress = Progress(self, plan)
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
