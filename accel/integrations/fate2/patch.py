"""``install()``: FATE's ``kind="paillier"`` served by this package, in this process."""
from __future__ import annotations

import logging
from typing import Any

from ...backends import Backend
from . import fate_module, guest_batch
from .coder import Coder
from .keys import PK, SK, keygen
from .runtime import configure, current_backend
from .tensor_evaluator import evaluator
from .vectors import EV, FV

log = logging.getLogger(__name__)

OURS = {"keygen": keygen, "SK": SK, "PK": PK, "Coder": Coder, "evaluator": evaluator,
        "CiphertextVector": EV, "PlaintextVector": FV}


def install(backend: Backend | str | None = None, **backend_kwargs: Any) -> None:
    """Make FATE's ``kind="paillier"`` run on he-accel (see :mod:`accel.integrations.fate2`).

    Call it in every party's process before the cipher is set up. Idempotent; calling it again
    only changes the backend. SecureBoost's guest then encrypts g/h one partition per call
    (:mod:`~accel.integrations.fate2.guest_batch`; ``HEA_FATE_BATCH_GUEST=0`` keeps FATE's
    per-sample loop)."""
    if backend is not None or backend_kwargs:
        configure(backend, **backend_kwargs)
    guest_batch.enable()
    if fate_module.swap_in(OURS):
        log.info("he-accel serves FATE kind 'paillier' (backend %s)", current_backend.describe())


def uninstall() -> None:
    """Restore FATE's stock implementation."""
    guest_batch.disable()
    fate_module.restore()


installed = fate_module.installed
