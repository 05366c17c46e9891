"""SecureBoost's guest g/h encryption, one partition per call (accel.integrations.fate2.guest_batch),
and DJN as the plugin's opt-in, against FATE's own per-row path with fate_utils as the oracle.

Through FATE's launcher: tests/fate/test_fate2_scale.py (stock vs plugin, same model, and the
guest's encryption calls counted per partition). Runs in the FATE environment (scripts/test_fate.sh).
"""
from __future__ import annotations

import functools
import logging
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

fu = pytest.importorskip("fate_utils.paillier")
stock = pytest.importorskip("fate.arch.protocol.phe.paillier")

from accel.integrations import fate2  # noqa: E402
from accel.integrations.fate2 import guest_batch, keys as fate2_keys  # noqa: E402

STOCK_PK, STOCK_SK, STOCK_CODER = stock.PK, stock.SK, stock.Coder
PRECISION = 52  # FATE 2.2.0's FIX_POINT_PRECISION

pytestmark = pytest.mark.fate


class _Lift:
    """FATE's PHETensorEncryptor.lift, recorded (the block FATE builds keeps only the data)."""

    def lift(self, data, shape, dtype, device):
        return {"data": data, "shape": shape, "dtype": dtype, "device": device}


@pytest.fixture(scope="module")
def key():
    fate2.configure("cpu", workers=1)
    sk, pk, coder = fate2.keygen(1024)
    return sk, pk, coder, STOCK_SK(sk.sk), STOCK_PK(pk.pk), STOCK_CODER(coder.coder)


def _grad_hess(rng, n, dtype=torch.float64):
    """Binary cross-entropy's g in [-1, 1] and h in [0, 1/4], with the edges."""
    g = rng.uniform(-1, 1, n)
    h = rng.uniform(0, 0.25, n)
    edges = [(0.0, 0.0), (-1.0, 0.25), (1.0, 0.0), (-0.0, 1e-300), (1 - 2**-24, 2**-30)]
    for i, (a, b) in enumerate(edges[:n]):
        g[i], h[i] = a, b
    return torch.tensor(np.stack([g, h], axis=1), dtype=dtype)


def _stock_rows(rows, fpk, fcoder, offset, shift_bit):
    """FATE 2.2.0's make_long_tensor, row by row, on fate_utils: what the guest sends stock."""
    out = []
    for row in rows.numpy():
        t = torch.Tensor(row.copy())  # float32, as FATE builds it from the row's values (copied: no aliasing)
        t[0] = t[0] + offset
        out.append(fpk.encrypt_encoded(fcoder.pack_floats(t, shift_bit, 2, PRECISION), obfuscate=True))
    return out


@pytest.mark.parametrize("n", [1, 2, 7, 64])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_one_call_encrypts_what_fates_per_row_loop_does(key, n, dtype):
    sk, pk, coder, fsk, fpk, fcoder = key
    rng = np.random.default_rng()
    rows = _grad_hess(rng, n, dtype)
    offset, shift_bit = 1, 72  # binary: g offset 1; FATE's shift for ~1e5 samples
    got = guest_batch.pack_and_encrypt_rows(rows, coder=coder, pk=pk, encryptor=_Lift(), offset=offset,
                                            shift_bit=shift_bit, pack_num=2, precision=PRECISION)
    assert got["shape"] == (n, 1) and got["dtype"] == torch.float32 and len(got["data"]) == n
    theirs = [fate2.FV.of(fsk.decrypt_to_encoded(ev)) for ev in _stock_rows(rows, fpk, fcoder, offset, shift_bit)]
    assert all(len(t) == 1 for t in theirs)
    ours = sk.decrypt_to_encoded(got["data"])
    assert ours.values == [t.values[0] for t in theirs]  # the same integers, sample by sample
    # which are the rows, float32, offset on g
    want = rows.to(torch.float32, copy=True)
    want[:, 0] += offset
    unpacked = coder.unpack_floats(ours, shift_bit, 2, PRECISION, 2 * n)
    torch.testing.assert_close(unpacked.to(torch.float64), want.reshape(-1).to(torch.float64), rtol=0,
                               atol=2.0**-PRECISION)


def test_a_partition_of_many_blocks_is_one_call_split_back_per_block(key, monkeypatch):
    from fate.arch.tensor.phe._keypair import PHETensorEncryptor

    sk, pk, coder, fsk, fpk, fcoder = key
    calls = []
    backend = fate2.current_backend()
    real = type(backend).raw_encrypt
    monkeypatch.setattr(type(backend), "raw_encrypt", lambda self, *a, **kw: calls.append(1) or real(self, *a, **kw))
    rng = np.random.default_rng()
    sizes = [3, 0, 128, 1, 5]
    blocks = [(f"block{i}", _grad_hess(rng, n)) for i, n in enumerate(sizes)]
    encryptor = PHETensorEncryptor(pk, None, fate2.evaluator)
    out = guest_batch.encrypt_partition(iter(blocks), coder=coder, pk=pk, encryptor=encryptor, offset=1,
                                        shift_bit=72, pack_num=2, precision=PRECISION)
    assert len(calls) == 1  # the whole partition in one backend call
    assert [k for k, _ in out] == [k for k, _ in blocks]
    for (_, rows), (_, got) in zip(blocks, out):
        assert tuple(got.shape) == (len(rows), 1) and got.dtype == torch.float32 and len(got.data) == len(rows)
        theirs = [fate2.FV.of(fsk.decrypt_to_encoded(ev)).values[0]
                  for ev in _stock_rows(rows, fpk, fcoder, 1, 72)]
        assert sk.decrypt_to_encoded(got.data).values == theirs
    assert guest_batch.encrypt_partition(iter([]), coder=coder, pk=pk, encryptor=encryptor, offset=1,
                                         shift_bit=72, pack_num=2, precision=PRECISION) == []


def test_fresh_obfuscation_every_call(key):
    sk, pk, coder, *_ = key
    rows = _grad_hess(np.random.default_rng(), 8)
    kw = dict(coder=coder, pk=pk, encryptor=_Lift(), offset=1, shift_bit=72, pack_num=2, precision=PRECISION)
    a = guest_batch.pack_and_encrypt_rows(rows, **kw)["data"]
    b = guest_batch.pack_and_encrypt_rows(rows, **kw)["data"]
    assert sk.decrypt_to_encoded(a).values == sk.decrypt_to_encoded(b).values
    assert all(x != y for x, y in zip(a.cts, b.cts))
    n2 = pk.public_key.nsquare
    plain = [(1 + m * pk.public_key.n) % n2 for m in sk.decrypt_to_encoded(a).values]
    assert all(c != p for c, p in zip(a.cts, plain))  # not the readable 1 + m n


def test_rows_it_cannot_pack_per_row_are_refused(key):
    sk, pk, coder, *_ = key
    kw = dict(coder=coder, pk=pk, encryptor=_Lift(), offset=1, shift_bit=72, pack_num=2, precision=PRECISION)
    with pytest.raises(ValueError, match="multiple of pack_num=2"):
        guest_batch.pack_and_encrypt_rows(torch.zeros(4, 3), **kw)
    with pytest.raises(ValueError, match="matrix"):
        guest_batch.pack_and_encrypt_rows(torch.zeros(4), **kw)


def test_empty_partition(key):
    sk, pk, coder, *_ = key
    got = guest_batch.pack_and_encrypt_rows(torch.zeros(0, 2), coder=coder, pk=pk, encryptor=_Lift(), offset=1,
                                            shift_bit=72, pack_num=2, precision=PRECISION)
    assert len(got["data"]) == 0 and got["shape"] == (0, 1)


class _Frame:
    """A stand-in for FATE's DataFrame: apply_row and the operable columns."""

    def __init__(self, columns):
        self.columns = columns
        self.stock_calls = []
        self.data_manager = self

    def infer_operable_field_names(self):
        return self.columns

    def apply_row(self, func, *args, **kwargs):
        self.stock_calls.append(func)
        return "stock frame"


def _row_partial(pack_num=2):
    def make_long_tensor(s, coder, pk, offset, shift_bit, precision, encryptor, pack_num=2):
        raise AssertionError("not called per row")

    return functools.partial(make_long_tensor, coder=None, pk=None, offset=1, shift_bit=72, pack_num=pack_num,
                             precision=PRECISION, encryptor=None)


def test_what_it_does_not_recognise_runs_fates_own_loop_with_a_warning(monkeypatch, caplog):
    batched = []
    monkeypatch.setattr(guest_batch, "_batched_frame", lambda frame, func: batched.append(func) or "batched frame")
    monkeypatch.setattr(guest_batch, "_warned", set())

    def stock_process(tree, frame, func):
        return frame.apply_row(func)

    # FATE's make_long_tensor on g, h: batched
    frame = _Frame(["g", "h"])
    assert guest_batch._batched_g_h_process(functools.partial(stock_process, func=_row_partial()), None,
                                            frame) == "batched frame"
    assert len(batched) == 1 and not frame.stock_calls and "apply_row" not in frame.__dict__
    # anything else: FATE's per-row loop, said once
    caplog.set_level(logging.WARNING, logger=guest_batch.__name__)
    for columns, func in ((["g", "h", "x"], _row_partial()), (["g", "h"], lambda row: row),
                          (["g", "h"], _row_partial(pack_num=0))):
        frame = _Frame(columns)
        assert guest_batch._batched_g_h_process(functools.partial(stock_process, func=func), None,
                                                frame) == "stock frame"
        assert frame.stock_calls == [func] and "apply_row" not in frame.__dict__
    assert len(batched) == 1
    assert sum("encrypts per sample" in r.getMessage() for r in caplog.records) == 3


def test_install_patches_fates_guest_and_uninstall_restores_it():
    from fate.ml.ensemble.learner.decision_tree.hetero.guest import HeteroDecisionTreeGuest as Guest

    own = Guest._g_h_process
    fate2.install("cpu", workers=1)
    try:
        assert Guest._g_h_process is not own and guest_batch.enabled()
        assert Guest._g_h_process.__wrapped__ is own
    finally:
        fate2.uninstall()
    assert Guest._g_h_process is own and not guest_batch.enabled()


@pytest.mark.parametrize("env, batched", [("", True), ("0", False)])
def test_a_script_that_installs_before_fate_imports_its_guest(env, batched):
    """The launcher's order: install at the top of the script, FATE's guest imported later."""
    code = ("import sys; from accel.integrations import fate2; fate2.install('cpu', workers=1); "
            f"assert '{guest_batch.GUEST_MODULE}' not in sys.modules; "
            "from fate.ml.ensemble.learner.decision_tree.hetero.guest import HeteroDecisionTreeGuest as G; "
            "print(hasattr(G._g_h_process, '__wrapped__'))")
    env_vars = {"HEA_FATE_BATCH_GUEST": env} if env else {}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **env_vars})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(batched)


# -- DJN, opt-in -----------------------------------------------------------------------------
def test_djn_is_off_by_default_and_opt_in_by_environment(key, monkeypatch):
    sk, pk, coder, fsk, fpk, fcoder = key
    seen = []
    backend = fate2.current_backend()
    real = type(backend).raw_encrypt

    def spy(self, pk_, ms, **kw):
        seen.append(kw.get("djn"))
        return real(self, pk_, ms, **kw)

    monkeypatch.setattr(type(backend), "raw_encrypt", spy)
    x = torch.tensor([0.0, 1.0, -1.0, 0.5, 1e-8, -3e7], dtype=torch.float64)
    monkeypatch.delenv(fate2_keys.DJN_ENV, raising=False)
    pk.encrypt_encoded(coder.encode_tensor(x), True)
    monkeypatch.setenv(fate2_keys.DJN_ENV, "1")
    a = pk.encrypt_encoded(coder.encode_tensor(x), True)
    b = pk.encrypt_encoded(coder.encode_tensor(x), True)
    assert seen[0] is None and seen[1] is not None and seen[1] is seen[2]  # one hs per key and process
    assert seen[1].exponent_bits >= pk.public_key.n.bit_length() // 2
    assert a.cts != b.cts  # fresh exponents
    for ev in (a, b):  # standard ciphertexts: a stock peer reads them (our wire type) and decrypts them
        theirs = pickle.loads(pickle.dumps(ev))
        assert isinstance(theirs, fu.CiphertextVector)
        torch.testing.assert_close(torch.as_tensor(fcoder.decode_f64_vec(fsk.decrypt_to_encoded(theirs))), x,
                                   rtol=1e-12, atol=0)
    monkeypatch.setenv(fate2_keys.ALLOW_UNOBFUSCATED_ENV, "1")
    pk.encrypt_encoded(coder.encode_tensor(x), False)  # stock's unobfuscated path, when asked for
    assert seen[-1] is None
