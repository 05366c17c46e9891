"""The CPU backend's worker processes: fresh interpreters running this module, never the caller's
``__main__``.

multiprocessing's ``spawn`` and ``forkserver`` prepare every child by re-importing the parent's
main module: a script without an ``if __name__ == "__main__":`` guard then runs again in each
worker (and fails), and ``python - < file`` fails outright (``'<stdin>'`` is no file). These
workers are started as ``python -m accel.backends._entry worker`` and only ever import this package.

Protocol: length-prefixed pickles over a pair of pipes (or a socket, for the shared pool of
:mod:`accel.backends._pool_server`). A request is ``(function name, args, kwargs)`` naming a
public function of :mod:`accel.backends._gmp_ops`; the answer is ``(True, result)`` or
``(False, exception)``. Both ends belong to the same user and program; nothing else is executed.

Lifetime: each worker holds the read end of a *lifeline* pipe whose write end only its parent
holds. A watchdog thread blocks on it; when the parent dies, on kill -9 too, the kernel closes
the write end, the read returns EOF and the worker exits at once, even mid-task.
"""
from __future__ import annotations

import os
import pickle
import struct
import threading
from typing import Any, BinaryIO

_HEADER = struct.Struct("<Q")


class WorkerCrashed(RuntimeError):
    """A worker process died while running a task (killed, out of memory, ...)."""


def send(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def recv(stream: BinaryIO) -> Any:
    """The next message, or raise EOFError when the other side has gone."""
    head = _read_exact(stream, _HEADER.size)
    (size,) = _HEADER.unpack(head)
    return pickle.loads(_read_exact(stream, size))


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    buf = stream.read(size)
    if buf is None or len(buf) < size:
        raise EOFError("the other side closed the channel")
    return buf


def resolve(name: str):
    """The task function ``name``: a public function of ``_gmp_ops``, nothing else."""
    from . import _gmp_ops

    fn = getattr(_gmp_ops, name, None) if isinstance(name, str) and not name.startswith("_") else None
    if fn is None or not callable(fn) or getattr(fn, "__module__", None) != _gmp_ops.__name__:
        raise ValueError(f"unknown task {name!r}")
    return fn


def run_task(request: Any) -> tuple[bool, Any]:
    try:
        name, args, kwargs = request
        return True, resolve(name)(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - every failure goes back to the caller, as it was raised
        return False, e


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Answer requests from ``inp`` on ``out`` until ``inp`` closes."""
    while True:
        try:
            request = recv(inp)
        except EOFError:
            return
        ok, value = run_task(request)
        try:
            send(out, (ok, value))
        except (pickle.PicklingError, TypeError, AttributeError) as e:  # an unpicklable exception
            send(out, (False, RuntimeError(f"{type(value).__name__}: {value} ({e})")))


def _watch_lifeline(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 1):
                break
        except InterruptedError:
            continue
        except OSError:
            break
    os._exit(0)  # the parent is gone: stop now, whatever is running


def main(argv: list[str]) -> int:
    lifeline = int(argv[0]) if argv else -1
    if lifeline >= 0:
        threading.Thread(target=_watch_lifeline, args=(lifeline,), name="lifeline", daemon=True).start()
    # The task stream owns stdin/stdout; anything printed by mistake goes to stderr instead.
    inp = os.fdopen(os.dup(0), "rb")
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    from . import _gmp_ops  # noqa: F401 - imported before the first task, not during it

    serve(inp, out)
    return 0

