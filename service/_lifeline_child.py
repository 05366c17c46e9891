"""Imported by the forkserver only (a preload of :func:`service.lifeline.tie_forkserver`): the
forkserver dies with the server, and each process it forks dies with the forkserver."""
from __future__ import annotations

import os

from accel.service.lifeline import PARENT_ENV, set_parent_death_signal


def _tie_child() -> None:
    forkserver = _forkserver_pid
    set_parent_death_signal()
    if os.getppid() != forkserver:  # the forkserver died before the prctl took hold
        os._exit(1)


_forkserver_pid = os.getpid()
if os.environ.get(PARENT_ENV) == str(os.getppid()):  # in the forkserver the server started
    set_parent_death_signal()
    if os.getppid() != int(os.environ[PARENT_ENV]):
        os._exit(1)
    os.register_at_fork(after_in_child=_tie_child)
