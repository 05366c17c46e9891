"""Worker processes die with the server, even when it is killed with SIGKILL.

The CPU backend's pool forks its workers from multiprocessing's forkserver. Neither notices a
parent that dies without cleaning up, so a ``kill -9`` of the server used to leave the
forkserver and every worker running. :func:`tie_forkserver` starts the forkserver before the
backend first needs it, with :mod:`service._lifeline_child` preloaded: that module asks Linux
(``prctl(PR_SET_PDEATHSIG, SIGKILL)``) to kill the forkserver when the server dies, and every
process the forkserver forks when the forkserver dies, so the whole tree goes with the server.
Nothing here touches the pool itself; off Linux it does nothing.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
PARENT_ENV = "HEA_LIFELINE_PARENT"
CHILD_MODULE = "accel.service._lifeline_child"


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Have the kernel send ``sig`` to this process when its parent (thread) exits (Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def tie_forkserver(preload: tuple[str, ...] = ("accel.backends._gmp_ops",)) -> bool:
    """Start multiprocessing's forkserver now, tied to this process; False when it already ran
    (started by someone else: untied) or the platform has none.

    Call it from a thread that lives as long as the process (the main thread): the kernel
    signals the forkserver when the thread that started it exits.
    """
    if not sys.platform.startswith("linux") or "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    if threading.current_thread() is not threading.main_thread():
        log.warning("worker processes are not tied to the server: tie_forkserver needs the main thread")
        return False
    fs = multiprocessing.forkserver._forkserver
    if getattr(fs, "_forkserver_pid", None) is not None:
        return False
    os.environ[PARENT_ENV] = str(os.getpid())
    multiprocessing.forkserver.set_forkserver_preload([*preload, CHILD_MODULE])
    multiprocessing.forkserver.ensure_running()
    return True
