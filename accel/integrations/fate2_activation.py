"""FATE 2.x picks he-accel from its own configuration: a CUDA device, or the kind ``"heaccel"``.

Stock FATE 2.2 maps a job's device to ``{kind, key_length}`` in ``CipherKit``
(``fate.arch.context._cipher``). For a CUDA task it has no engine: with a mapping for CUDA it
runs the CPU ``paillier`` module regardless, and without one it logs "no impl exists for device
CUDA, fallback to CPU" and then fails. With he-accel installed:

* a task on device CUDA (FATE's ``GPUSpec`` device, i.e. ``Context(device=device.CUDA)``) whose
  kind is ``paillier`` (or unset) gets he-accel's engine;
* any task whose PHE kind is ``"heaccel"`` (``ctx.cipher.set_phe(ctx.device, {"kind":
  "heaccel", "key_length": 2048})``) gets it on any device. FATE's component parameters only
  admit paillier/ou/mock, so this kind is for launcher scripts; pipelines use the CUDA device.

The engine, in order: ``HEA_FATE_BACKEND`` if set (``gpu``, ``cpu``, ``cpu1``, ``remote``); else
the GPU backend where CuPy sees a device; else the offload service at ``HEA_TARGET`` if set;
else the CPU backend in-process (``cpu1``: FATE already runs partitions in its own worker
processes, where a pool per process measured slower), with a warning. The cipher FATE builds keeps kind ``"paillier"`` (what FATE's
algorithms and the peers expect): it is :mod:`accel.integrations.fate2`, installed in that
process (``fate2.install``), and ``HEA_FATE_ENGINE`` is exported so FATE's computing workers
started afterwards install it too (they run the same hook at start-up).

Everything else is left to stock FATE: a CPU job with kind ``paillier`` runs fate_utils as before.

How it is reached without a change to the job: ``python -m accel.integrations.fate2_activation
enable`` writes ``he_accel_fate2.pth`` into the environment's site-packages (``disable`` removes
it; the wheel itself ships no .pth, keeping ``accel`` its only top-level name). At interpreter
start that file loads :mod:`accel.integrations._fate2_hook` from its path, without importing
``accel``: a stdlib-only import hook that does nothing until FATE's ``fate.arch.context._cipher``
or ``fate.arch.protocol.phe.paillier`` is imported, and then calls this module to patch them.
Once enabled it serves every FATE job of the environment, because it only takes over requests
stock FATE cannot serve (a CUDA engine, an unknown kind); ``HEA_FATE_AUTO=0`` turns it off.
"""
from __future__ import annotations

import importlib
import logging
import os
import threading
from typing import Any

log = logging.getLogger(__name__)

KIND = "heaccel"
CIPHER_MODULE = "fate.arch.context._cipher"
PAILLIER_MODULE = "fate.arch.protocol.phe.paillier"
ENGINE_ENV = "HEA_FATE_ENGINE"  # set once a process has activated: inherited by FATE's workers
_lock = threading.Lock()
_patched: dict[str, Any] = {}
_serving = threading.local()


def select_engine() -> str:
    """The backend for a FATE task that asked for CUDA or kind "heaccel" (see the module doc)."""
    chosen = os.environ.get("HEA_FATE_BACKEND")
    if chosen:
        return chosen
    from ..backends import BackendUnavailableError, get_backend

    try:
        get_backend("gpu")
        return "gpu"
    except BackendUnavailableError as e:
        no_gpu = str(e)
    if os.environ.get("HEA_TARGET"):
        log.info("he-accel: no GPU here (%s); FATE's Paillier goes to the offload service %s",
                 no_gpu, os.environ["HEA_TARGET"])
        return "remote"
    log.warning("he-accel: the task asked for a GPU Paillier engine but there is no GPU here (%s) and "
                "no offload service (HEA_TARGET); running on he-accel's CPU backend", no_gpu)
    return "cpu1"


def _install(engine: str) -> None:
    from . import fate2

    if engine == "cpu1":
        # in-process CPU backend: FATE already spreads partitions over its own worker processes,
        # and a pool per process measured 0.4x stock against 1.12x inline (bench/RESULTS.md)
        fate2.install("cpu", workers=1)
    else:
        fate2.install(engine)


def serve() -> str:
    """Install :mod:`accel.integrations.fate2` in this process (once) and return its engine."""
    from . import fate2

    engine = os.environ.get(ENGINE_ENV)
    if not engine:
        engine = select_engine()
        os.environ[ENGINE_ENV] = engine
    if not fate2.installed() and not getattr(_serving, "active", False):
        # install() may import FATE's paillier module for the first time, which calls back
        # into on_paillier_module: that call must not install again (it would wait on itself)
        _serving.active = True
        try:
            _install(engine)
        finally:
            _serving.active = False
        log.info("he-accel serves this FATE task's Paillier (engine %s)", engine)
    return engine


def _is_cuda(device: Any) -> bool:
    return getattr(device, "type", None) == "CUDA"


def _wants_heaccel(device: Any, options: Any) -> bool:
    kind = (options or {}).get("kind", "paillier")
    return kind == KIND or (_is_cuda(device) and kind == "paillier")


def patch_cipher_kit(module: Any = None) -> None:
    """Patch FATE's ``CipherKit`` and ``PHECipherBuilder`` (idempotent)."""
    with _lock:
        if _patched:
            return
        mod = module or importlib.import_module(CIPHER_MODULE)
        kit, builder = mod.CipherKit, mod.PHECipherBuilder
        stock_set_phe, stock_default, stock_setup = kit.set_phe, kit._set_default_phe, builder.setup
        stock_phe = kit.phe
        _patched.update(set_phe=stock_set_phe, _set_default_phe=stock_default, setup=stock_setup, phe=stock_phe,
                        module=mod)

        def set_phe(self, device, options):
            # every party calls set_phe (the guest's setup and the hosts' use of the evaluator
            # it sends by reference both need the engine in their own process)
            if _wants_heaccel(device, options) and device == self._device:
                serve()
            return stock_set_phe(self, device, options)

        def _set_default_phe(self):
            mapping = self._cipher_mapping.setdefault("phe", {})
            if _is_cuda(self._device) and self._device not in mapping:
                from fate.arch.config import cfg

                mapping[self._device] = {"kind": "paillier",
                                         "key_length": cfg.safety.phe.paillier.minimum_key_size}
                serve()
                return
            return stock_default(self)

        @property
        def phe(self):
            built = stock_phe.fget(self)
            built.heaccel_device = self._device  # which device's mapping it was built from
            return built

        def setup(self, options=None):
            kind = (options or {}).get("kind", self.kind)
            if kind == KIND or (kind == "paillier" and _is_cuda(getattr(self, "heaccel_device", None))):
                serve()
                options = dict(options or {}, kind="paillier")  # FATE's algorithms expect "paillier"
            return stock_setup(self, options)

        kit.set_phe, kit._set_default_phe, kit.phe, builder.setup = set_phe, _set_default_phe, phe, setup


def unpatch_cipher_kit() -> None:
    with _lock:
        if not _patched:
            return
        mod = _patched.pop("module")
        mod.CipherKit.set_phe = _patched.pop("set_phe")
        mod.CipherKit._set_default_phe = _patched.pop("_set_default_phe")
        mod.CipherKit.phe = _patched.pop("phe")
        mod.PHECipherBuilder.setup = _patched.pop("setup")


# -- what the start-up hook (_fate2_hook.py, loaded by the .pth file) calls ----------------------
def on_cipher_module(module: Any) -> None:
    patch_cipher_kit(module)


def on_paillier_module(module: Any) -> None:
    # a process started by an activated one (FATE's computing workers): the same engine
    if os.environ.get(ENGINE_ENV) and not getattr(_serving, "active", False):
        serve()


def install_import_hook() -> None:
    """Patch FATE lazily, when (and only if) its cipher modules are imported (what the .pth
    file does at interpreter start; call it yourself where the .pth file is not written)."""
    from . import _fate2_hook

    _fate2_hook.install()


PTH_NAME = "he_accel_fate2.pth"
# one line (site.py executes .pth lines that start with "import"): find accel without importing
# it, load the stdlib-only hook from its file, install it
PTH_LINE = ("import importlib.util as _u, os as _o; _s = _u.find_spec('accel'); "
            "_p = _s and _s.submodule_search_locations and _o.path.join(list(_s.submodule_search_locations)[0], "
            "'integrations', '_fate2_hook.py'); _h = _p and _o.path.isfile(_p) and "
            "_u.spec_from_file_location('_he_accel_fate2_hook', _p); _m = _h and _u.module_from_spec(_h); "
            "_m and (_h.loader.exec_module(_m), _m.install())\n")


def pth_path() -> str:
    import sysconfig

    return os.path.join(sysconfig.get_paths()["purelib"], PTH_NAME)


def main(argv: list[str] | None = None) -> int:
    """``enable``: write the .pth file into this environment; ``disable``: remove it;
    ``status``: say whether it is there."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m accel.integrations.fate2_activation",
                                 description="FATE 2.x picks he-accel from its own configuration (a CUDA "
                                             "task, or kind 'heaccel'): enable or disable the start-up hook")
    ap.add_argument("action", choices=["enable", "disable", "status"])
    a = ap.parse_args(argv)
    path = pth_path()
    if a.action == "enable":
        with open(path, "w") as f:
            f.write(PTH_LINE)
        print(f"enabled: {path}")
    elif a.action == "disable":
        if os.path.exists(path):
            os.remove(path)
        print(f"disabled: {path} removed")
    else:
        print(f"{'enabled' if os.path.exists(path) else 'disabled'}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
