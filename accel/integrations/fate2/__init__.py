"""FATE 2.x drop-in: the ``fate.arch.protocol.phe.paillier`` contract on he-accel backends.

Activate it with one line at the top level of every party's script::

    from accel.integrations import fate2
    fate2.install()                     # backend from HEA_FATE_BACKEND, default "auto"
    fate2.install("remote", target="appliance:50051")   # or an offload endpoint

At the top level, not inside ``run(ctx)``: FATE's standalone computing runs partitions in
spawned worker processes that re-import the main script, so a top-level ``install()`` runs in
them too. (A worker without it still computes correctly, with stock FATE: what it sends back
is read by this package as well, only not accelerated.)

``install()`` swaps ``keygen``, ``SK``, ``PK``, ``Coder`` and ``evaluator`` of FATE's
``fate.arch.protocol.phe.paillier`` module for the ones here, which is exactly what FATE's
``PHECipherBuilder.setup`` imports for ``kind="paillier"``: CoordinatedLR, SecureBoost and the
PHE tensors then run their encryption, decryption and ciphertext arithmetic as whole-vector
backend calls (GPU, all-core CPU, or the offload service).

Interoperability, by construction:

* What crosses a party boundary is FATE's own vocabulary. A ciphertext vector pickles as a
  ``fate_utils.paillier.CiphertextVector`` (same ciphertexts, same exponents), keys and coder as
  ``fate.arch.protocol.phe.paillier.PK/Coder`` wrapping fate_utils objects. FATE's restricted
  unpickler accepts them, and a peer running stock FATE reads them with stock code.
* The evaluator accepts fate_utils vectors wherever it accepts its own, so data from a stock
  peer flows in unchanged.
* Encoding is fate_utils' (BASE 16, ``exp = floor((frexp - 53) / 4)``, max_int = n // 2), so
  decrypted values and exponents match stock runs.

Nothing here holds a device handle: the backend is resolved lazily, once per process, so the
objects pickle into FATE's worker processes and each opens CUDA (or its gRPC channel) itself.

Like stock FATE, the private key object pickles (as a fate_utils ``SK``) when FATE itself
pickles it, e.g. into its own computing workers; this package never sends it anywhere.

One job per module, each importing only those above it in this list:

==========================  ==========================================================
``interop``                 fate_utils' keys, coder and vectors read and built
``fate_module``             FATE's paillier module: its names now; swapping ours in/out
``runtime``                 the backend of this process (:func:`configure`)
``arguments``               FATE's tensors, lists and shapes as numpy arrays and ints
``vectors``                 :class:`FV` (encoded plaintexts), :class:`EV` (ciphertexts)
``arithmetic``              batched ciphertext arithmetic; the backend an argument
``coder``                   :class:`Coder` on :mod:`accel.encoding`
``keys``                    :class:`PK`, :class:`SK`, :func:`keygen`
``tensor_evaluator``        FATE's ``evaluator``
``guest_batch``             SecureBoost's guest: g/h encrypted one partition per call
``patch``                   :func:`install`, :func:`uninstall`, :func:`installed`
==========================  ==========================================================
"""
from __future__ import annotations

try:
    import torch  # noqa: F401 - FATE's tensors: the coder and the evaluator take and return them
    from fate_utils import paillier  # noqa: F401 - stock FATE 2.x's engine, read and written
except ImportError as e:  # pragma: no cover - needs the FATE environment
    raise ImportError("accel.integrations.fate2 needs torch and fate_utils (pip install pyfate==2.2.0)") from e

from ...encoding import BASE  # noqa: F401 - re-exported: this module's name for it before the split
from .coder import Coder
from .fate_module import FATE_MODULE
from .keys import PK, SK, keygen
from .patch import install, installed, uninstall
from .runtime import configure, current_backend
from .tensor_evaluator import evaluator
from .vectors import EV, FV

__all__ = ["EV", "FV", "PK", "SK", "Coder", "configure", "current_backend", "evaluator", "install",
           "installed", "keygen", "uninstall"]

# Pickled by reference (FATE sends the evaluator class) under this package's name, as before
# the split, whichever module defines them.
for _obj in (EV, FV, PK, SK, Coder, evaluator, keygen):
    _obj.__module__ = __name__
del _obj

_backend = current_backend  # the name before the split (tests and scripts called fate2._backend())
