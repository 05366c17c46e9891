"""Typed service errors and their gRPC status codes (shared by the server and the client)."""
from __future__ import annotations

import grpc


class ServiceError(Exception):
    """An error with a gRPC status code. Subclasses fix the code; messages never hold secrets."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, code: grpc.StatusCode | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}: {self.message})"


class InvalidArgument(ServiceError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class KeyNotFound(ServiceError, LookupError):
    code = grpc.StatusCode.NOT_FOUND


class PermissionDenied(ServiceError, PermissionError):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(ServiceError, PermissionError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class DeadlineExceeded(ServiceError, TimeoutError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(ServiceError):
    code = grpc.StatusCode.CANCELLED


class Unavailable(ServiceError, ConnectionError):
    code = grpc.StatusCode.UNAVAILABLE


class Internal(ServiceError):
    code = grpc.StatusCode.INTERNAL


_BY_CODE = {cls.code: cls for cls in (
    InvalidArgument, KeyNotFound, PermissionDenied, Unauthenticated, ResourceExhausted,
    FailedPrecondition, AlreadyExists, DeadlineExceeded, Cancelled, Unavailable, Internal,
)}


def from_status(code: grpc.StatusCode, message: str) -> ServiceError:
    """The typed exception for a status the service (or gRPC itself) returned."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return ServiceError(message or code.name, code)
    return cls(message or code.name)
