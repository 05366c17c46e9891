"""Where a FATE 2.x job spends its Paillier time: every call into FATE's PHE module, timed.

:func:`instrument` wraps whatever ``fate.arch.protocol.phe.paillier`` serves in this process
(stock fate_utils or he-accel's plugin): the evaluator's static methods, ``PK.encrypt_encoded*``,
``SK.decrypt_to_encoded`` and the coder's (un)packing and tensor (de)coding, and counts the he-accel
backend batch calls each one makes. Only the outermost call is recorded (``add_plain`` calling
``add`` is one record). Each record is one JSON line in ``$HEA_FATE_PROFILE_DIR/<pid>.jsonl``,
written as it happens, since FATE's computing workers end without running exit handlers:

    {"pid", "role", "op", "n" (input length), "s" (seconds), "backend_calls", "backend_elems"}

:func:`summarise` reads a directory back into per-role and per-op totals.
"""
from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ENV_DIR = "HEA_FATE_PROFILE_DIR"
ENV_ROLE = "HEA_FATE_PROFILE_ROLE"
_state = threading.local()
_file_lock = threading.Lock()
_files: dict[int, Any] = {}

EVALUATOR_OPS = ("add", "add_plain", "add_plain_scalar", "sub", "sub_plain", "sub_plain_scalar", "rsub",
                 "rsub_plain", "rsub_plain_scalar", "mul_plain", "mul_plain_scalar", "matmul", "rmatmul", "zeros",
                 "i_add", "i_sub", "slice", "intervals_slice", "cat", "i_shuffle", "shuffle", "i_update",
                 "i_update_with_masks", "chunking_cumsum_with_step", "intervals_sum_with_step", "pack_squeeze")
CODER_OPS = ("pack_floats", "unpack_floats", "encode_tensor", "decode_tensor")
BACKEND_OPS = ("raw_encrypt", "raw_decrypt", "raw_add", "raw_add_plain", "raw_mul", "raw_sum", "raw_sum_groups",
               "raw_matvec", "raw_rerandomize")


def _length(x: Any) -> int:
    for probe in (len, lambda v: v.numel()):
        try:
            return int(probe(x))
        except Exception:  # noqa: BLE001 - not every argument has a length
            continue
    return 1


def _emit(record: dict) -> None:
    d = os.environ.get(ENV_DIR)
    if not d:
        return
    pid = os.getpid()
    with _file_lock:
        f = _files.get(pid)
        if f is None:
            f = _files[pid] = open(Path(d) / f"{pid}.jsonl", "a", buffering=1)  # noqa: SIM115 - kept open
        f.write(json.dumps(record) + "\n")


def _timed(op: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if getattr(_state, "op", None) is not None:  # nested: counted in the outer op
            return fn(*args, **kwargs)
        _state.op, _state.calls, _state.elems = op, 0, 0
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            s = time.perf_counter() - t0
            n = max((_length(a) for a in args[:2] if not isinstance(a, (int, float))), default=0) if args else 0
            _emit({"pid": os.getpid(), "role": os.environ.get(ENV_ROLE, "?"), "op": op, "n": n, "s": s,
                   "backend_calls": _state.calls, "backend_elems": _state.elems})
            _state.op = None

    return wrapper


def _counted(fn):
    @functools.wraps(fn)
    def wrapper(self, pk, first, *args, **kwargs):
        if getattr(_state, "op", None) is None or getattr(_state, "in_backend", False):
            return fn(self, pk, first, *args, **kwargs)  # outside FATE's ops, or a subclass's super()
        _state.calls += 1
        _state.elems += _length(first)
        _state.in_backend = True
        try:
            return fn(self, pk, first, *args, **kwargs)
        finally:
            _state.in_backend = False

    return wrapper


def _backend_classes() -> list:
    import importlib

    classes = []
    for mod_name, cls_name in (("accel.backends.base", "Backend"), ("accel.backends.cpu", "CpuBackend"),
                               ("accel.backends.gpu", "GpuBackend"), ("accel.service.remote", "RemoteBackend")):
        try:
            classes.append(getattr(importlib.import_module(mod_name), cls_name))
        except ImportError:  # stock FATE without he-accel, or no grpc for the remote backend
            continue
    return classes


def instrument() -> None:
    """Wrap FATE's PHE module as it is now in this process (call after any ``fate2.install``)."""
    if not os.environ.get(ENV_DIR):
        return
    import importlib

    mod = importlib.import_module("fate.arch.protocol.phe.paillier")
    if getattr(mod, "_hea_profiled", False):
        return
    ev = mod.evaluator
    for name in EVALUATOR_OPS:
        if hasattr(ev, name):
            setattr(ev, name, staticmethod(_timed(name, getattr(ev, name))))
    for cls, names in ((mod.PK, ("encrypt_encoded", "encrypt_encoded_scalar")), (mod.SK, ("decrypt_to_encoded",)),
                       (mod.Coder, CODER_OPS)):
        for name in names:
            if hasattr(cls, name):
                setattr(cls, name, _timed(name, getattr(cls, name)))
    for cls in _backend_classes():
        for name in BACKEND_OPS:
            if name in vars(cls):  # only where the class defines it (inherited ones are wrapped once)
                setattr(cls, name, _counted(vars(cls)[name]))
    mod._hea_profiled = True


def summarise(directory: str | Path) -> dict:
    """Totals per role (seconds in PHE ops, summed over that party's processes) and per op."""
    by_role: dict[str, float] = defaultdict(float)
    by_op: dict[str, dict] = {}
    for path in Path(directory).glob("*.jsonl"):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            by_role[r["role"]] += r["s"]
            o = by_op.setdefault(r["op"], {"calls": 0, "elems": 0, "s": 0.0, "backend_calls": 0,
                                           "max_backend_calls_per_call": 0, "backend_elems": 0})
            o["calls"] += 1
            o["elems"] += r["n"]
            o["s"] += r["s"]
            o["backend_calls"] += r["backend_calls"]
            o["backend_elems"] += r["backend_elems"]
            o["max_backend_calls_per_call"] = max(o["max_backend_calls_per_call"], r["backend_calls"])
    return {"phe_s_by_role": dict(by_role), "ops": dict(sorted(by_op.items(), key=lambda kv: -kv[1]["s"]))}
