"""SecureBoost's guest encrypts a partition's g/h in one call instead of one call per sample.

FATE 2.2.0's ``HeteroDecisionTreeGuest._g_h_process`` packs and encrypts the gradients row by
row: ``DataFrame.apply_row`` calls ``make_long_tensor`` once per sample, and each call runs
``Coder.pack_floats`` and ``PK.encrypt_encoded`` on one row. That is one backend call per sample
(5,000 calls took 134 s of the guest's 137 s at 5,000 samples, bench/RESULTS.md).

:func:`enable` wraps that method (FATE's files are not edited): while it runs, the frame's
``apply_row`` is intercepted, and when it is called with FATE's ``make_long_tensor`` the same
computation runs per partition instead: the partition's rows as one float32 matrix (what
``torch.Tensor(row.values)`` gives per row), the offset added to the first column, one
``pack_floats`` over the rows in order and one ``encrypt_encoded(..., obfuscate=True)``, then
split back into the frame's blocks (of 128 rows or so; a partition holds many). The result is
the same column FATE builds (one ciphertext vector per block, the rows' packed values in row
order, FATE's pk/evaluator/coder/dtype/device on the block), set through FATE's
own ``DataFrame[...] = DTensor`` path, so the host receives FATE's wire classes and the model is
the one stock builds. Everything else in ``_g_h_process`` (offsets, shift bits, the pack info)
stays FATE's. Anything this does not recognise (another FATE version's function, a row width
that is not a multiple of ``pack_num``) runs FATE's own per-row path, with a warning once.

The wrapper is installed with :func:`accel.integrations.fate2.install` (and so by the activation
through FATE's configuration); ``HEA_FATE_BATCH_GUEST=0`` keeps FATE's per-row loop.
"""
from __future__ import annotations

import functools
import importlib
import importlib.abc
import importlib.machinery
import logging
import os
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

GUEST_MODULE = "fate.ml.ensemble.learner.decision_tree.hetero.guest"
GUEST_CLASS = "HeteroDecisionTreeGuest"
ENV_VAR = "HEA_FATE_BATCH_GUEST"
ROW_FUNCTION = "make_long_tensor"  # FATE 2.2.0's per-row function inside _g_h_process
ROW_PARAMETERS = frozenset({"coder", "pk", "offset", "shift_bit", "precision", "encryptor", "pack_num"})

_lock = threading.Lock()
_stock: dict[str, Any] = {}  # FATE's _g_h_process while ours is in
_warned: set[str] = set()


def wanted() -> bool:
    """On unless ``HEA_FATE_BATCH_GUEST`` is 0/false/no/off."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def enabled() -> bool:
    """Whether FATE's guest runs the batched path in this process."""
    return bool(_stock)


def _warn_once(reason: str) -> None:
    if reason not in _warned:
        _warned.add(reason)
        log.warning("he-accel: SecureBoost's guest encrypts per sample (FATE's own loop): %s", reason)


def pack_and_encrypt_rows(rows: Any, *, coder: Any, pk: Any, encryptor: Any, offset: float, shift_bit: int,
                          pack_num: int, precision: int) -> Any:
    """One partition of FATE's ``make_long_tensor``, batched: ``rows`` (samples x values) to a
    PHE tensor of the rows' packed, obfuscated encryptions, in row order."""
    import torch

    block = rows.to(torch.float32)  # FATE builds each row with torch.Tensor(values): float32
    if block.ndim != 2 or block.shape[1] % pack_num:
        raise ValueError(f"rows of {tuple(block.shape)}: want a matrix whose width is a multiple of "
                         f"pack_num={pack_num}")
    block = block.clone()
    block[:, 0] = block[:, 0] + offset  # float32 arithmetic, as FATE's pack_tensor[0] + offset
    packed = coder.pack_floats(block.reshape(-1), shift_bit, pack_num, precision)
    encrypted = pk.encrypt_encoded(packed, obfuscate=True)
    return encryptor.lift(encrypted, (len(encrypted), 1), block.dtype, block.device)


def encrypt_partition(blocks: Any, **params: Any) -> list:
    """One partition of the frame's value blocks, ``(key, rows)`` pairs, to ``(key, PHE tensor)``
    pairs: all its rows packed and encrypted in one call, then split back per block (FATE's
    frame keeps one ciphertext vector per block)."""
    import torch

    blocks = list(blocks)
    if not blocks:
        return []
    rows = [block.to(torch.float32) for _, block in blocks]
    whole = pack_and_encrypt_rows(torch.cat(rows), **params)
    if len(blocks) == 1:
        return [(blocks[0][0], whole)]
    per_row = rows[0].shape[1] // params["pack_num"]
    out, start = [], 0
    for (key, _), part in zip(blocks, rows):
        size = part.shape[0] * per_row
        piece = whole.evaluator.slice(whole.data, start, size)
        out.append((key, whole.with_template(piece, shape=(size, 1))))
        start += size
    return out


def _batched_frame(frame: Any, row_func: functools.partial) -> Any:
    """What ``frame.apply_row(row_func)`` returns, one backend call per partition: a frame with
    the packed encryptions as its one column."""
    from fate.arch.tensor import DTensor

    params = {k: row_func.keywords[k] for k in ROW_PARAMETERS}
    table = frame.as_tensor().shardings._data  # the frame's blocks as (rows x values) tensors, same keys
    encrypted = table.mapPartitions(functools.partial(encrypt_partition, **params), preserves_partitioning=True)
    shapes = [shape for _, shape in sorted(encrypted.mapValues(lambda t: t.shape).collect())]
    out = frame.create_frame()
    out["gh"] = DTensor.from_sharding_table(encrypted, shapes=shapes)  # dtype, device: the shards'
    return out


def _recognised(frame: Any, func: Any) -> str | None:
    """None if ``func`` is FATE's per-row packing we batch, else why not."""
    if not (isinstance(func, functools.partial) and getattr(func.func, "__name__", "") == ROW_FUNCTION
            and ROW_PARAMETERS <= set(func.keywords) and not func.args):
        name = getattr(getattr(func, "func", func), "__name__", type(func).__name__)
        return f"apply_row called with an unrecognised function {name}"  # the name only: no argument values
    width = len(frame.data_manager.infer_operable_field_names())
    pack_num = func.keywords["pack_num"]
    if not isinstance(pack_num, int) or pack_num < 1 or width % pack_num:
        return f"{width} values per row with pack_num={pack_num!r}"
    return None


def _batched_g_h_process(stock: Any, tree: Any, grad_and_hess: Any) -> Any:
    """FATE's ``_g_h_process`` (``stock``) with its per-row ``apply_row`` run per partition."""
    stock_apply_row = grad_and_hess.apply_row

    def apply_row(func, *args, **kwargs):
        why = "apply_row with extra arguments" if args or kwargs else _recognised(grad_and_hess, func)
        if why:
            _warn_once(why)
            return stock_apply_row(func, *args, **kwargs)
        return _batched_frame(grad_and_hess, func)

    grad_and_hess.__dict__["apply_row"] = apply_row  # shadows DataFrame.apply_row for this call only
    try:
        return stock(tree, grad_and_hess)
    finally:
        grad_and_hess.__dict__.pop("apply_row", None)


def _patch(module: Any) -> None:
    with _lock:
        if _stock:
            return
        cls = getattr(module, GUEST_CLASS)
        stock = _stock["_g_h_process"] = cls._g_h_process

        @functools.wraps(stock)
        def _g_h_process(self, grad_and_hess):
            return _batched_g_h_process(stock, self, grad_and_hess)

        cls._g_h_process = _g_h_process
    log.info("he-accel: SecureBoost's guest encrypts g/h one partition per call")


class _Loader(importlib.abc.Loader):
    def __init__(self, real: Any):
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        self.real.exec_module(module)
        if wanted() and _finder_armed.is_set():
            _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    """Patches FATE's guest module when it is imported (after FATE's own code ran)."""

    def __init__(self):
        self._inside = threading.local()

    def find_spec(self, name, path=None, target=None):  # noqa: ARG002
        if name != GUEST_MODULE or getattr(self._inside, "active", False):
            return None
        self._inside.active = True
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, path)
        finally:
            self._inside.active = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader)
        return spec


_finder: _Finder | None = None
_finder_armed = threading.Event()


def enable() -> None:
    """Batch the guest's encryption in this process: now if FATE's guest module is imported,
    else when it is (an import hook; nothing is imported here). Idempotent."""
    global _finder
    if not wanted():
        return
    _finder_armed.set()
    module = sys.modules.get(GUEST_MODULE)
    if module is not None:
        _patch(module)
        return
    with _lock:
        if _finder is None:
            _finder = _Finder()
            sys.meta_path.insert(0, _finder)


def disable() -> None:
    """FATE's per-row loop back."""
    _finder_armed.clear()
    with _lock:
        stock = _stock.pop("_g_h_process", None)
        if stock is not None:
            cls = getattr(importlib.import_module(GUEST_MODULE), GUEST_CLASS)
            cls._g_h_process = stock
