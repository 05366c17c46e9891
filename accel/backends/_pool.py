"""Process pools for the CPU backend: private (per process) or shared (one per machine and user).

Both run the same workers (:mod:`accel.backends._workers`: fresh interpreters that never import
the caller's ``__main__``) and offer ``submit(task_name, *args) -> Future``. One thread per slot
feeds its worker from a shared queue and blocks on the pipe, so the GIL is free meanwhile.

* :class:`WorkerPool` (private): the workers are this process's children and die with it.
* :class:`SharedPoolClient`: connects to a pool server (:func:`serve`) that holds the workers for
  every process of the same user on this machine, e.g. FATE's per-partition task processes,
  which would otherwise start a pool each. The first client starts the server; the server exits
  after ``idle`` seconds without a connection, and its workers die with it.

The shared pool's socket lives in a directory only its user can enter (0700, owner checked,
like ssh-agent's), and both ends check the other's uid (SO_PEERCRED), since tasks carry key
material (the CRT primes of a decryption).
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import queue
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future
from typing import Any, BinaryIO

from ._workers import WorkerCrashed, recv, send

log = logging.getLogger(__name__)

_READY = "he-accel-worker-ready"
_live_pools: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()


class PoolUnavailable(RuntimeError):
    """Worker processes cannot run here; the message says why."""


def _package_root() -> str:
    """The folder that holds ``accel/`` (this file is accel/backends/_pool.py)."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker_env() -> dict[str, str]:
    """The child's environment: this package importable whatever the caller did to sys.path, and
    one BLAS thread per worker (the workers are the parallelism)."""
    env = dict(os.environ)
    root = _package_root()
    env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


def _python() -> str:
    exe = sys.executable
    if not exe or not os.path.exists(exe):
        raise PoolUnavailable(f"sys.executable is {exe!r}: an embedded interpreter cannot start Python "
                              "worker processes")
    return exe


# -- channels: one per slot ---------------------------------------------------------------------
class _ProcessChannel:
    """A worker process of ours, talked to over its stdin and stdout."""

    def __init__(self, lifeline_r: int):
        self.proc = subprocess.Popen(
            [_python(), "-m", "accel.backends._entry", "worker", str(lifeline_r)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(lifeline_r,), env=worker_env(),
            cwd=_package_root())
        self.inp: BinaryIO = self.proc.stdout  # type: ignore[assignment]
        self.out: BinaryIO = self.proc.stdin  # type: ignore[assignment]

    def close(self, wait: bool = True) -> None:
        for f in (self.out, self.inp):
            with contextlib.suppress(OSError, ValueError):
                f.close()
        if wait and self.proc.returncode is None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def forget(self) -> None:
        """In a forked child: close its copies of the pipes; the worker is not its to stop."""
        self.proc.returncode = 0  # never wait on, or kill, another process's child
        for f in (self.out, self.inp):
            with contextlib.suppress(OSError, ValueError):
                f.close()


class _SocketChannel:
    """A connection to the shared pool server."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        _check_peer(self.sock)
        self.inp: BinaryIO = self.sock.makefile("rb")
        self.out: BinaryIO = self.sock.makefile("wb")

    def close(self, wait: bool = True) -> None:
        for f in (self.out, self.inp, self.sock):
            with contextlib.suppress(OSError):
                f.close()

    def forget(self) -> None:
        self.close()


def _check_peer(sock: socket.socket) -> None:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    if uid != os.getuid():
        sock.close()
        raise PermissionError(f"the pool socket's peer runs as uid {uid}, not {os.getuid()}")


# -- the pool --------------------------------------------------------------------------------
class WorkerPool:
    """``workers`` slots, each a thread feeding one channel from a shared task queue."""

    def __init__(self, workers: int, *, shared_socket: str | None = None, start_timeout: float = 60.0):
        self.workers = workers
        self.pid = os.getpid()
        self.shared_socket = shared_socket
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lifeline_w: int | None = None
        self._lifeline_r: int | None = None
        if shared_socket is None:
            self._lifeline_r, self._lifeline_w = os.pipe()
        self._channels: list[Any] = []
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.broken = False
        self._live = workers
        self._state_lock = threading.Lock()
        try:
            for _ in range(workers):
                self._channels.append(self._open())
            deadline = time.monotonic() + start_timeout
            for ch in self._channels:  # wait for every worker to have imported its code
                _await_ready(ch, deadline)
        except BaseException as e:
            self._close_all(wait=False)
            if isinstance(e, (OSError, EOFError, TimeoutError, PermissionError)):
                raise PoolUnavailable(f"could not start CPU worker processes: {type(e).__name__}: {e}") from e
            raise
        # We keep the read end too (for restarts): only write ends decide when the children see EOF.
        for i, ch in enumerate(self._channels):
            t = threading.Thread(target=self._slot, args=(i,), name=f"he-accel-cpu-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        _live_pools.add(self)

    def _open(self):
        if self.shared_socket is not None:
            return _SocketChannel(self.shared_socket)
        return _ProcessChannel(self._lifeline_r)  # type: ignore[arg-type]

    def submit(self, name: str, *args: Any, **kwargs: Any) -> Future:
        if self._closed:
            raise RuntimeError("the worker pool is shut down")
        if self.broken:
            raise WorkerCrashed("no CPU worker is left in this pool")
        fut: Future = Future()
        self._tasks.put((fut, (name, args, kwargs)))
        return fut

    def worker_pids(self) -> list[int]:
        """The worker processes' ids (the server's workers' for a shared pool)."""
        if self.shared_socket is not None:
            return list(server_info(self.shared_socket)["workers"])
        return [ch.proc.pid for ch in self._channels]

    def _slot(self, i: int) -> None:
        while True:
            item = self._tasks.get()
            if item is None:
                return
            fut, request = item
            if not fut.set_running_or_notify_cancel():
                continue
            for attempt in (1, 2):  # tasks are pure functions of their inputs: one retry is safe
                try:
                    send(self._channels[i].out, request)
                    ok, value = recv(self._channels[i].inp)
                    break
                except (OSError, EOFError) as e:
                    ok, value = False, WorkerCrashed(f"a CPU worker died running {request[0]} ({e})")
                    if self._closed or not self._restart(i):
                        fut.set_exception(value)
                        self._lose_slot()
                        return
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def _restart(self, i: int) -> bool:
        self._channels[i].close(wait=True)
        try:
            self._channels[i] = self._open()
            _await_ready(self._channels[i], time.monotonic() + 60)
            return True
        except Exception:  # noqa: BLE001 - the slot is lost; the others keep serving
            log.exception("could not restart a CPU worker")
            return False

    def _lose_slot(self) -> None:
        with self._state_lock:
            self._live -= 1
            if self._live > 0 or self._closed:
                return
            self.broken = True
        while True:  # nobody is left to run what is queued: fail it rather than hang
            try:
                item = self._tasks.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item[0].set_exception(WorkerCrashed("no CPU worker is left in this pool"))

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._tasks.put(None)
        for t in self._threads:
            t.join(timeout=5)
        self._close_all(wait=True)

    def terminate(self) -> None:
        """At exit: stop now (the workers hold no state worth keeping)."""
        self._closed = True
        for ch in self._channels:
            if isinstance(ch, _ProcessChannel) and ch.proc.poll() is None:
                ch.proc.kill()
        self._close_all(wait=True)

    def _close_all(self, wait: bool) -> None:
        for ch in self._channels:
            ch.close(wait=wait)
        for fd in (self._lifeline_r, self._lifeline_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._lifeline_r = self._lifeline_w = None

    def _forget_after_fork(self) -> None:
        # The child inherits our pipes but not our threads: close its copies (so the workers
        # still die with us, not with it) and let it start its own pool when it needs one.
        self._closed = True
        for ch in self._channels:
            ch.forget()
        for fd in (self._lifeline_r, self._lifeline_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._lifeline_r = self._lifeline_w = None


def _await_ready(ch, deadline: float) -> None:
    if isinstance(ch, _SocketChannel):
        msg = recv(ch.inp)
        if msg != _READY:
            raise EOFError(f"unexpected greeting {msg!r}")
        return
    # A private worker answers a no-op task once its imports are done.
    send(ch.out, ("noop", (), {}))
    ok, value = recv(ch.inp)
    if not ok:
        raise EOFError(f"worker failed its first task: {value}")
    if time.monotonic() > deadline:
        raise TimeoutError("worker start took too long")


def _after_fork_in_child() -> None:
    for pool in list(_live_pools):
        pool._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the shared pool server ------------------------------------------------------------------
def runtime_dir() -> str:
    """A directory only this user can enter: $XDG_RUNTIME_DIR/he-accel or /tmp/he-accel-UID."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = os.path.join(base, "he-accel") if base and os.path.isdir(base) else os.path.join(
        tempfile.gettempdir(), f"he-accel-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not os.path.isdir(path) or os.path.islink(path):
        raise PermissionError(f"{path} must be a directory owned by uid {os.getuid()} with mode 0700")
    return path


def default_socket(name: str = "cpu-pool") -> str:
    return os.path.join(runtime_dir(), f"{name}.sock")


def connect_shared(workers: int, *, socket_path: str | None = None, idle: float = 120.0,
                   start_timeout: float = 60.0) -> WorkerPool:
    """A client of the machine's shared pool, starting the server (with ``workers`` processes)
    if none runs. Concurrent callers start one server between them (a lock file decides)."""
    path = socket_path or default_socket()
    with contextlib.suppress(OSError, EOFError, PermissionError):
        return WorkerPool(_server_workers(path), shared_socket=path)
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        with contextlib.suppress(OSError, EOFError, PermissionError):
            return WorkerPool(_server_workers(path), shared_socket=path)  # another one won the race
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # stale: nobody answers on it
        with open(path + ".log", "ab") as errors:  # the server outlives us: its stderr goes here
            subprocess.Popen([_python(), "-m", "accel.backends._entry", "server", "--socket", path, "--workers",
                              str(workers), "--idle", str(idle)], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=errors, env=worker_env(), cwd=_package_root(),
                             start_new_session=True)
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                return WorkerPool(_server_workers(path), shared_socket=path)
            except (OSError, EOFError) as e:
                if time.monotonic() > deadline:
                    raise PoolUnavailable(f"the shared CPU pool server did not start at {path}: {e}") from e
                time.sleep(0.05)
    finally:
        os.close(lock_fd)


def server_info(path: str) -> dict:
    """The shared pool server's pid and its workers' pids."""
    ch = _SocketChannel(path)
    try:
        if recv(ch.inp) != _READY:
            raise EOFError("not an he-accel pool server")
        send(ch.out, ("__info__", (), {}))
        return recv(ch.inp)
    finally:
        ch.close()


def _server_workers(path: str) -> int:
    """Ask the server how many workers it has (one short connection)."""
    ch = _SocketChannel(path)
    try:
        if recv(ch.inp) != _READY:
            raise EOFError("not an he-accel pool server")
        send(ch.out, ("__workers__", (), {}))
        return int(recv(ch.inp))
    finally:
        ch.close()


def serve(path: str, workers: int, idle: float) -> None:
    """Hold ``workers`` worker processes and serve tasks on the Unix socket ``path`` until no
    client has been connected for ``idle`` seconds."""
    pool = WorkerPool(workers)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    listener.listen(64)
    listener.settimeout(1.0)
    state = {"clients": 0, "last": time.monotonic()}
    lock = threading.Lock()

    def handle(conn: socket.socket) -> None:
        try:
            _check_peer(conn)
            inp, out = conn.makefile("rb"), conn.makefile("wb")
            send(out, _READY)
            while True:
                try:
                    request = recv(inp)
                except EOFError:
                    return
                if request[0] == "__workers__":
                    send(out, workers)
                    continue
                if request[0] == "__info__":
                    send(out, {"pid": os.getpid(), "workers": pool.worker_pids()})
                    continue
                try:
                    send(out, (True, pool.submit(*request[:1], *request[1], **request[2]).result()))
                except Exception as e:  # noqa: BLE001 - the client re-raises it
                    send(out, (False, e))
        except (OSError, PermissionError):
            return
        finally:
            conn.close()
            with lock:
                state["clients"] -= 1
                state["last"] = time.monotonic()

    try:
        while True:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                with lock:
                    if state["clients"] == 0 and time.monotonic() - state["last"] > idle:
                        return
                continue
            with lock:
                state["clients"] += 1
            threading.Thread(target=handle, args=(conn,), daemon=True).start()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        listener.close()
        pool.terminate()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="he-accel's shared CPU worker pool (started on demand)")
    ap.add_argument("--socket", required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--idle", type=float, default=120.0)
    a = ap.parse_args(argv)
    serve(a.socket, max(1, a.workers), a.idle)
    return 0



