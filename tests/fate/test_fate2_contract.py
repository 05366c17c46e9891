"""The FATE 2.x plugin against fate_utils (stock FATE's engine) as the oracle.

Every evaluator method runs twice on the same plaintexts, once through the plugin on our
backend and once through FATE's stock evaluator on fate_utils vectors; both results are
decrypted and compared. Coder encodings are compared digit for digit. Runs in the FATE
environment (scripts/test_fate.sh).
"""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

fu = pytest.importorskip("fate_utils.paillier")
stock = pytest.importorskip("fate.arch.protocol.phe.paillier")

from accel.integrations import _fate_wire as wire  # noqa: E402
from accel.integrations import fate2  # noqa: E402

STOCK_EV = stock.evaluator  # captured before any install() swaps the module's names
STOCK_PK, STOCK_SK, STOCK_CODER = stock.PK, stock.SK, stock.Coder

pytestmark = pytest.mark.fate


@pytest.fixture(scope="module")
def keys():
    fate2.configure("cpu")
    sk, pk, coder = fate2.keygen(1024)
    # the same key as stock FATE objects (what a stock peer holds)
    return sk, pk, coder, STOCK_SK(sk.sk), STOCK_PK(pk.pk), STOCK_CODER(coder.coder)


@pytest.fixture
def rng():
    return np.random.default_rng()


def _values(rng, n):
    """Mixed magnitudes and signs, so exponents differ element to element (alignment)."""
    x = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 9, n)
    if n >= 4:
        x[:4] = [0.0, 1.0, -1.0, 0.5]
    return torch.tensor(x, dtype=torch.float64)


def _ours(keys, x, obfuscate=True):
    sk, pk, coder, *_ = keys
    return pk.encrypt_encoded(coder.encode_tensor(x), obfuscate)


def _theirs(keys, x, obfuscate=True):
    *_, fsk, fpk, fcoder = keys
    return fpk.encrypt_encoded(fcoder.encode_tensor(x), obfuscate)


def _dec(keys, ev, dtype=torch.float64):
    sk, pk, coder, *_ = keys
    return coder.decode_vec(sk.decrypt_to_encoded(ev), dtype)


def _fdec(keys, ev, dtype=torch.float64):
    *_, fsk, fpk, fcoder = keys
    return fcoder.decode_vec(fsk.decrypt_to_encoded(ev), dtype)


def _same(a, b):
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0.0)


# -- coder ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.int64, torch.int32])
def test_encodings_match_fate_utils_digit_for_digit(keys, rng, dtype):
    sk, pk, coder, fsk, fpk, fcoder = keys
    if dtype.is_floating_point:
        t = _values(rng, 33).to(dtype)
    else:
        t = torch.tensor(rng.integers(-2**31, 2**31 - 1, 33), dtype=dtype)
    ours = coder.encode_tensor(t)
    theirs_v, theirs_e = wire.unpack_fixedpoint_vector(fcoder.encode_tensor(t).__getstate__())
    n = pk.public_key.n
    assert [v % n for v in ours.values] == [v % n for v in theirs_v]
    assert ours.exps.tolist() == theirs_e
    _same(coder.decode_vec(ours, dtype).to(torch.float64), t.to(torch.float64))


def test_scalar_codec_and_integer_decoding_match(keys):
    sk, pk, coder, fsk, fpk, fcoder = keys
    for v in (1.5, -2.75, 0.0, 1e-300, -3e200):
        assert coder.decode_f64(coder.encode_f64(v)) == fcoder.decode_f64(fcoder.encode_f64(v))
    # i64 decoding of a fractional value floors (a shift), i32 truncates: both as fate_utils
    for v in (-2.75, 2.75, -0.5):
        assert coder.decode_i64(coder.encode_f64(v)) == fcoder.decode_i64(fcoder.encode_f64(v))
        assert coder.decode_i32(coder.encode_f64(v)) == fcoder.decode_i32(fcoder.encode_f64(v))


def test_overflowing_value_is_refused(keys):
    _, pk, coder, *_ = keys
    with pytest.raises(ValueError, match="max_int"):
        coder.encode_i64(pk.public_key.n // 2 + 1)


def test_pack_floats_round_trip_matches_fate_utils(keys, rng):
    sk, pk, coder, fsk, fpk, fcoder = keys
    g = torch.tensor(rng.uniform(0, 2, 11), dtype=torch.float64)
    ours = coder.pack_floats(g, 53, 3, 40)
    theirs = fcoder.pack_floats(g, 53, 3, 40)
    assert ours.values == wire.unpack_fixedpoint_vector(theirs.__getstate__())[0]
    _same(coder.unpack_floats(ours, 53, 3, 40, 11), fcoder.unpack_floats(theirs, 53, 3, 40, 11))


# -- encryption interop, both ways -----------------------------------------------------------
def test_plugin_encrypts_fate_utils_decrypts_and_back(keys, rng):
    x = _values(rng, 17)
    ours = _ours(keys, x)
    assert len(ours) == 17
    stock_view = pickle.loads(pickle.dumps(ours))
    assert type(stock_view) is fu.CiphertextVector
    _same(_fdec(keys, stock_view), x)
    _same(_dec(keys, _theirs(keys, x)), x)


def test_through_fates_restricted_unpickler(keys, rng):
    from fate.arch.config import cfg
    from fate.arch.federation.api._serdes import TableRemotePersistentUnpickler

    assert cfg.safety.serdes.federation.restricted_type == "restricted"
    sk, pk, coder, *_ = keys
    x = _values(rng, 9)
    payload = pickle.dumps([pk, coder, _ours(keys, x), fate2.evaluator.__name__])
    got = TableRemotePersistentUnpickler(None, None, "n", "t", None, io.BytesIO(payload)).load()
    rpk, rcoder, rev, _ = got
    assert type(rev) is fu.CiphertextVector
    # a peer without the plugin gets stock FATE objects wrapping fate_utils ones
    assert isinstance(rpk, STOCK_PK) and isinstance(rcoder, STOCK_CODER)
    _same(_fdec(keys, rev), x)
    # an out-of-tree class is what the unpickler refuses; ours never appear on the wire
    assert b"accel" not in payload
    from accel import PublicKey

    with pytest.raises(ValueError, match="restricted"):
        TableRemotePersistentUnpickler(None, None, "n", "t", None, io.BytesIO(pickle.dumps(PublicKey(15)))).load()


def test_empty_vectors(keys):
    sk, pk, coder, *_ = keys
    empty = pk.encrypt_encoded(coder.encode_tensor(torch.zeros(0, dtype=torch.float64)), True)
    assert len(empty) == 0
    assert _dec(keys, empty).numel() == 0
    assert len(fate2.evaluator.add(empty, empty, pk)) == 0
    assert len(fate2.evaluator.cat([empty, empty])) == 0


# -- arithmetic vs the stock evaluator -------------------------------------------------------
BINARY = ["add", "sub", "rsub"]


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("n", [1, 7])
def test_binary_ops(keys, rng, op, n):
    sk, pk, coder, fsk, fpk, fcoder = keys
    x, y = _values(rng, n), _values(rng, n)
    ours = getattr(fate2.evaluator, op)(_ours(keys, x), _ours(keys, y), pk)
    theirs = getattr(STOCK_EV, op)(_theirs(keys, x), _theirs(keys, y), fpk)
    _same(_dec(keys, ours), _fdec(keys, theirs))
    # and with a stock peer's vector as the second operand
    mixed = getattr(fate2.evaluator, op)(_ours(keys, x), _theirs(keys, y), pk)
    _same(_dec(keys, mixed), _fdec(keys, theirs))


@pytest.mark.parametrize("op", ["add_plain", "sub_plain", "rsub_plain", "mul_plain"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_plain_ops(keys, rng, op, dtype):
    sk, pk, coder, fsk, fpk, fcoder = keys
    x = _values(rng, 9)
    y = _values(rng, 9) if dtype.is_floating_point else torch.tensor(rng.integers(-1000, 1000, 9))
    ours = getattr(fate2.evaluator, op)(_ours(keys, x), y, pk, coder, torch.float64)
    theirs = getattr(STOCK_EV, op)(_theirs(keys, x), y, fpk, fcoder, torch.float64)
    _same(_dec(keys, ours), _fdec(keys, theirs))


@pytest.mark.parametrize("op", ["add_plain_scalar", "sub_plain_scalar", "rsub_plain_scalar", "mul_plain_scalar"])
@pytest.mark.parametrize("scalar", [2.5, -3, 0.0, 1e-9])
def test_scalar_ops(keys, rng, op, scalar):
    sk, pk, coder, fsk, fpk, fcoder = keys
    x = _values(rng, 6)
    dtype = torch.float64 if isinstance(scalar, float) else torch.int64
    ours = getattr(fate2.evaluator, op)(_ours(keys, x), scalar, pk, coder, dtype)
    theirs = getattr(STOCK_EV, op)(_theirs(keys, x), scalar, fpk, fcoder, dtype)
    _same(_dec(keys, ours), _fdec(keys, theirs))


@pytest.mark.parametrize("integer", [False, True])
def test_matmul_and_rmatmul(keys, rng, integer):
    sk, pk, coder, fsk, fpk, fcoder = keys
    M, K, J = 3, 5, 4
    a = _values(rng, M * K)
    B = (torch.tensor(rng.integers(-50, 50, (K, J))) if integer
         else torch.tensor(rng.standard_normal((K, J)) * 10.0 ** rng.integers(-3, 4, (K, J))))
    dtype = torch.promote_types(torch.float64, B.dtype)
    ours = fate2.evaluator.matmul(_ours(keys, a), B, torch.Size([M, K]), B.shape, pk, coder, dtype)
    theirs = STOCK_EV.matmul(_theirs(keys, a), B, torch.Size([M, K]), B.shape, fpk, fcoder, dtype)
    _same(_dec(keys, ours), _fdec(keys, theirs))
    _same(_dec(keys, ours), (a.reshape(M, K) @ B.to(torch.float64)).reshape(-1))
    # rmatmul: plain (I x K) @ encrypted (K x J), CoordinatedLR's X^T [d] with J = 1
    Xt = B.T.contiguous()
    enc = _values(rng, K * 2)
    ours = fate2.evaluator.rmatmul(_ours(keys, enc), Xt, torch.Size([K, 2]), Xt.shape, pk, coder, dtype)
    theirs = STOCK_EV.rmatmul(_theirs(keys, enc), Xt, torch.Size([K, 2]), Xt.shape, fpk, fcoder, dtype)
    _same(_dec(keys, ours), _fdec(keys, theirs))


def test_in_place_adds_slices_and_shuffles(keys, rng):
    sk, pk, coder, fsk, fpk, fcoder = keys
    x, y = _values(rng, 10), _values(rng, 8)
    ours, theirs = _ours(keys, x), _theirs(keys, x)
    for fn in ("i_add", "i_sub"):
        getattr(fate2.evaluator, fn)(pk, ours, _ours(keys, y), 2, 1, 5)
        getattr(STOCK_EV, fn)(fpk, theirs, _theirs(keys, y), 2, 1, 5)
        _same(_dec(keys, ours), _fdec(keys, theirs))
    fate2.evaluator.i_add(pk, ours, _ours(keys, y))      # size None: as much as both have
    STOCK_EV.i_add(fpk, theirs, _theirs(keys, y))
    _same(_dec(keys, ours), _fdec(keys, theirs))
    fate2.evaluator.i_add(pk, ours, ours, 3, 3, 4)        # self, same offsets: doubling
    STOCK_EV.i_add(fpk, theirs, theirs, 3, 3, 4)
    _same(_dec(keys, ours), _fdec(keys, theirs))
    # self, overlapping: fate_utils panics ("not yet implemented"); ours runs left to right
    # reading updated values, as its in-place loop is specified
    model = _dec(keys, ours).clone()
    for k in range(5):
        model[4 + k] += model[1 + k]
    fate2.evaluator.i_add(pk, ours, ours, 4, 1, 5)
    _same(_dec(keys, ours), model)
    theirs = pickle.loads(pickle.dumps(ours))
    _same(_dec(keys, fate2.evaluator.slice(ours, 3, 4)), _fdec(keys, STOCK_EV.slice(theirs, 3, 4)))
    iv = [(0, 2), (5, 9)]
    _same(_dec(keys, fate2.evaluator.intervals_slice(ours, iv)), _fdec(keys, STOCK_EV.intervals_slice(theirs, iv)))
    perm = torch.tensor(rng.permutation(10))
    _same(_dec(keys, fate2.evaluator.shuffle(pk, ours, perm)), _fdec(keys, STOCK_EV.shuffle(fpk, theirs, perm.tolist())))
    fate2.evaluator.i_shuffle(pk, ours, perm)
    STOCK_EV.i_shuffle(fpk, theirs, perm.tolist())
    _same(_dec(keys, ours), _fdec(keys, theirs))
    both = fate2.evaluator.cat([ours, _theirs(keys, y)])
    assert len(both) == 18
    _same(_dec(keys, both), torch.cat([_fdec(keys, theirs), y]))
    with pytest.raises(IndexError):
        fate2.evaluator.i_add(pk, ours, _ours(keys, y), 8, 0, 5)
    with pytest.raises(IndexError):
        fate2.evaluator.intervals_slice(ours, [(0, 11)])


@pytest.mark.parametrize("stride", [1, 2])
def test_histogram_updates(keys, rng, stride):
    sk, pk, coder, fsk, fpk, fcoder = keys
    rows, bins = 7, 5
    g = _values(rng, rows * stride)
    positions = [sorted(rng.choice(bins, size=int(rng.integers(0, 4)), replace=False).tolist()) for _ in range(rows)]
    ours, theirs = fate2.evaluator.zeros(bins * stride), STOCK_EV.zeros(bins * stride, torch.float64)
    fate2.evaluator.i_update(pk, ours, _ours(keys, g), positions, stride)
    STOCK_EV.i_update(fpk, theirs, _theirs(keys, g), positions, stride)
    _same(_dec(keys, ours), _fdec(keys, theirs))
    masks = [bool(v) for v in rng.integers(0, 2, rows)]
    masked_pos = positions[: sum(masks)]
    fate2.evaluator.i_update_with_masks(pk, ours, _ours(keys, g), masked_pos, masks, stride)
    STOCK_EV.i_update_with_masks(fpk, theirs, _theirs(keys, g), masked_pos, masks, stride)
    _same(_dec(keys, ours), _fdec(keys, theirs))
    chunks = [2 * stride, 3 * stride]
    fate2.evaluator.chunking_cumsum_with_step(pk, ours, chunks, stride)
    STOCK_EV.chunking_cumsum_with_step(fpk, theirs, chunks, stride)
    _same(_dec(keys, ours), _fdec(keys, theirs))
    iv = [(0, 2 * stride), (stride, 5 * stride)]
    # stock paillier.py lacks intervals_sum_with_step (FATE's histogram calls it): the oracle is
    # the fate_utils vector method itself
    ours_s = fate2.evaluator.intervals_sum_with_step(pk, ours, iv, stride)
    theirs_s = theirs.intervals_sum_with_step(fpk.pk, iv, stride)
    _same(_dec(keys, ours_s), _fdec(keys, theirs_s))


def test_long_cumsum_uses_log_depth_and_matches(keys, rng):
    sk, pk, coder, fsk, fpk, fcoder = keys
    x = _values(rng, 37)
    ours, theirs = _ours(keys, x), _theirs(keys, x)
    fate2.evaluator.chunking_cumsum_with_step(pk, ours, [37], 1)
    STOCK_EV.chunking_cumsum_with_step(fpk, theirs, [37], 1)
    _same(_dec(keys, ours), _fdec(keys, theirs))
    _same(_dec(keys, ours), torch.cumsum(x, 0))


def test_pack_squeeze_matches(keys, rng):
    sk, pk, coder, fsk, fpk, fcoder = keys
    gh = torch.tensor(rng.uniform(0, 1, 10), dtype=torch.float64)
    packed = coder.pack_floats(gh, 40, 1, 30)
    ours = pk.encrypt_encoded(packed, True)
    theirs = fpk.encrypt_encoded(fcoder.pack_floats(gh, 40, 1, 30), True)
    o = fate2.evaluator.pack_squeeze(ours, 4, 40, pk)
    t = STOCK_EV.pack_squeeze(theirs, 4, 40, fpk)
    assert len(o) == len(t) == 3
    ro = coder.unpack_floats(sk.decrypt_to_encoded(o), 40, 4, 30, 10)
    rt = fcoder.unpack_floats(fsk.decrypt_to_encoded(t), 40, 4, 30, 10)
    _same(ro, rt)
    torch.testing.assert_close(ro.to(torch.float64), gh, rtol=0, atol=1e-6)  # float32, as stock


# -- activation and pickling -----------------------------------------------------------------
def test_install_swaps_fates_paillier_kind_and_pickles_by_fate_name(keys):
    from fate.arch.context._cipher import PHECipherBuilder

    fate2.install("cpu")
    try:
        import fate.arch.protocol.phe.paillier as mod

        assert mod.evaluator is fate2.evaluator and mod.keygen is fate2.keygen
        cipher = PHECipherBuilder(None, "paillier", 1024).setup()
        enc = cipher.get_tensor_encryptor()
        x = torch.tensor([[0.25], [-1.5], [3.0]], dtype=torch.float64)
        ct = enc.encrypt_tensor(x)
        assert isinstance(ct.data, fate2.EV)
        y = (ct * 2.0 + x).data
        out = cipher._tensor_cipher.sk.decrypt_tensor(ct.with_template(y))
        _same(out, x * 3)
        # what FATE sends to the hosts: [pk, evaluator class]; names stay under fate.*
        blob = pickle.dumps([cipher._pk, cipher._evaluator, cipher._coder])
        assert b"accel" not in blob
        pk2, ev2, coder2 = pickle.loads(blob)
        assert ev2 is fate2.evaluator and isinstance(pk2, fate2.PK) and isinstance(coder2, fate2.Coder)
        # a vector written here is read back as ours where the plugin is installed ...
        vec_blob = pickle.dumps(ct.data)
        assert b"accel" not in vec_blob and b"fate.arch.protocol.phe.paillier" in vec_blob
        assert isinstance(pickle.loads(vec_blob), fate2.EV)
        # ... and an in-place op on a fate_utils target (from a process without the plugin)
        # updates that object itself
        fpk, fsk, fcoder = cipher._pk.pk, cipher._sk.sk, cipher._coder.coder
        target = fpk.encrypt_encoded(fcoder.encode_f64_vec(np.ones(3)), True)
        fate2.evaluator.i_add(cipher._pk, target, ct.data)
        _same(torch.tensor(fcoder.decode_f64_vec(fsk.decrypt_to_encoded(target))), x.reshape(-1) + 1)
    finally:
        fate2.uninstall()
    import fate.arch.protocol.phe.paillier as mod

    assert mod.evaluator is STOCK_EV
    # ... and as fate_utils' own class by a reader running stock FATE
    assert type(pickle.loads(vec_blob)) is fu.CiphertextVector
    _same(torch.tensor(fcoder.decode_f64_vec(fsk.decrypt_to_encoded(pickle.loads(vec_blob)))), x.reshape(-1))


def test_objects_hold_no_backend_and_work_in_a_fresh_process(keys, tmp_path):
    import subprocess
    import sys

    sk, pk, coder, *_ = keys
    fate2.evaluator.add(_ours(keys, torch.ones(3, dtype=torch.float64)), _ours(keys, torch.ones(3, dtype=torch.float64)), pk)
    blob = pickle.dumps((pk, coder, _ours(keys, torch.tensor([1.0, 2.0], dtype=torch.float64))))
    (tmp_path / "in.pkl").write_bytes(blob)
    code = (
        "import pickle,sys,torch\n"
        "from accel.integrations import fate2\n"
        "if __name__=='__main__':\n"
        "  fate2.configure('cpu'); fate2.install()\n"
        "  pk,coder,ev=pickle.load(open(sys.argv[1],'rb'))\n"
        "  r=fate2.evaluator.mul_plain_scalar(ev,3.0,pk,coder,torch.float64)\n"
        "  pickle.dump(r,open(sys.argv[2],'wb'))\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "in.pkl"), str(tmp_path / "out.pkl")],
                   check=True, timeout=120)
    out = pickle.loads((tmp_path / "out.pkl").read_bytes())
    _same(_dec(keys, out), torch.tensor([3.0, 6.0], dtype=torch.float64))


def test_mismatched_lengths_fail_clearly(keys, rng):
    sk, pk, coder, *_ = keys
    with pytest.raises(ValueError, match="length mismatch|cannot broadcast"):
        fate2.evaluator.add(_ours(keys, _values(rng, 3)), _ours(keys, _values(rng, 4)), pk)
    with pytest.raises(ValueError, match="permutation"):
        fate2.evaluator.i_shuffle(pk, _ours(keys, _values(rng, 3)), [0, 0, 1])
    with pytest.raises(TypeError):
        fate2.evaluator.add("not a vector", _ours(keys, _values(rng, 3)), pk)


def test_unpacking_rounds_toward_zero_like_fate_utils(keys, rng):
    """Sums of packed 52-bit fixed-point values exceed 53 bits; fate_utils converts them to
    f64 toward zero. One ulp decides SecureBoost split ties, so it must match bit for bit."""
    sk, pk, coder, fsk, fpk, fcoder = keys
    g = torch.tensor(rng.uniform(0, 1, 64), dtype=torch.float64)
    ours = pk.encrypt_encoded(coder.pack_floats(g, 63, 1, 52), True)
    theirs = fpk.encrypt_encoded(fcoder.pack_floats(g, 63, 1, 52), True)
    positions = [[0, 1], [1], [0], [2]] * 16
    acc_o, acc_t = fate2.evaluator.zeros(3), STOCK_EV.zeros(3, torch.float64)
    fate2.evaluator.i_update(pk, acc_o, ours, positions, 1)
    STOCK_EV.i_update(fpk, acc_t, theirs, positions, 1)
    o = coder.unpack_floats(sk.decrypt_to_encoded(acc_o), 63, 1, 52, 3)
    t = fcoder.unpack_floats(fsk.decrypt_to_encoded(acc_t), 63, 1, 52, 3)
    assert o.tolist() == t.tolist()
    big = 2**60 + 2**8 + 1   # beyond 2^53 at exponent 0: toward zero, not nearest
    fv = fate2.FV([big, pk.public_key.n - big], [0, 0])
    fpv = fu.PlaintextVector()
    fpv.__setstate__(wire.pack_fixedpoint_vector([big, pk.public_key.n - big], [0, 0]))
    assert coder.decode_f64_vec(fv).tolist() == fcoder.decode_f64_vec(fpv).tolist()
    # a value whose f64 rounding decides its float32: 1 + 2^-24 (a float32 midpoint) plus a
    # little more than half an f64 ulp; toward zero gives 1.0, nearest gives 1 + 2^-23
    x = 2**59 + 2**35 + 65
    fv = fate2.FV([x], [0])
    fpv = fu.PlaintextVector()
    fpv.__setstate__(wire.pack_fixedpoint_vector([x], [0]))
    assert coder.unpack_floats(fv, 63, 1, 59, 1).tolist() == fcoder.unpack_floats(fpv, 63, 1, 59, 1).tolist() == [1.0]


def test_plugin_runs_against_the_offload_service(keys, rng):
    """``fate2.install("remote", target=...)``: the same evaluator through a he-accel service
    (here in process, CPU backend), read by stock fate_utils code on the other side."""
    from accel import CpuBackend
    from accel.service.server import HeAccelServer, ServerConfig

    sk, pk, coder, fsk, fpk, fcoder = keys
    srv = HeAccelServer(ServerConfig(address="127.0.0.1:0", max_delay_ms=1.0),
                        backend=CpuBackend(workers=1)).start()
    try:
        fate2.configure("remote", target=f"127.0.0.1:{srv.port}")
        assert fate2.current_backend().name == "remote"
        a, b = _values(rng, 9), _values(rng, 9)
        ea, eb = _ours(keys, a), _ours(keys, b)
        s = fate2.evaluator.add(ea, eb, pk)
        _same(_fdec(keys, s.to_fate_utils()), a + b)          # a stock reader decrypts it
        X = torch.tensor(rng.standard_normal((2, 9)))
        g = fate2.evaluator.rmatmul(ea, X, torch.Size([9, 1]), X.shape, pk, coder, torch.float64)
        _same(_dec(keys, g), X @ a)
        theirs = _theirs(keys, b)                              # stock ciphertexts in
        _same(_dec(keys, fate2.evaluator.add(ea, theirs, pk)), a + b)
    finally:
        fate2.configure("cpu")
        srv.stop(2)


def test_secureboost_ops_are_whole_batch_calls(keys, rng):
    """pack_squeeze: Horner over all chunks, 2 (pack_num - 1) backend calls whatever the length,
    every exponent 2^shift; chunking_cumsum_with_step: one alignment call for all chunks plus a
    log-depth scan."""
    from accel import CpuBackend

    sk, pk, coder, *_ = keys
    calls = []

    class Counting(CpuBackend):
        def raw_mul(self, pk_, cs, ks):
            calls.append(("mul", len(cs), max(abs(k) for k in ks)))
            return super().raw_mul(pk_, cs, ks)

        def raw_add(self, pk_, a, b):
            calls.append(("add", len(a), 0))
            return super().raw_add(pk_, a, b)

    gh = torch.tensor(rng.uniform(0, 1, 41), dtype=torch.float64)
    enc = pk.encrypt_encoded(coder.pack_floats(gh, 40, 1, 30), True)
    fate2.configure(Counting(workers=1))
    try:
        out = fate2.evaluator.pack_squeeze(enc, 4, 40, pk)
        assert [c[0] for c in calls] == ["mul", "add"] * 3
        assert all(k == 2**40 for op, _, k in calls if op == "mul") and calls[0][1] == 10  # the 10 chunks with a second value, at once
        calls.clear()
        x = _values(rng, 60)
        v = _ours(keys, x)
        fate2.evaluator.chunking_cumsum_with_step(pk, v, [20, 20, 20], 2)
        # alignment: at most one multiply batch before the scan; the scan: log2(10) rounds of adds
        first_add = next(i for i, c in enumerate(calls) if c[0] == "add")
        assert first_add <= 1
        assert sum(1 for c in calls if c[0] == "add") <= 2 * 4  # each round: one add (plus alignment muls)
    finally:
        fate2.configure("cpu")
    torch.testing.assert_close(coder.unpack_floats(sk.decrypt_to_encoded(out), 40, 4, 30, 41).to(torch.float64),
                               gh, rtol=0, atol=1e-6)
    ref = torch.stack([torch.cumsum(x[c * 20:(c + 1) * 20].reshape(10, 2), 0).reshape(-1) for c in range(3)]).reshape(-1)
    torch.testing.assert_close(_dec(keys, v), ref, rtol=1e-12, atol=1e-12)


def test_fresh_encryptions_are_obfuscated_even_when_fate_drops_the_flag(keys, rng, monkeypatch):
    """FATE 2.2.0's distributed encrypt_tensor passes obfuscate=False for CoordinatedLR; an
    unobfuscated 1 + m n reveals m. The plugin obfuscates anyway unless told to copy stock."""
    sk, pk, coder, *_ = keys
    x = _values(rng, 6)
    n = pk.public_key.n
    n2 = n * n
    encoded = coder.encode_tensor(x)
    deterministic = [(1 + (v % n) * n) % n2 for v in encoded.values]
    monkeypatch.delenv("HEA_FATE_ALLOW_UNOBFUSCATED", raising=False)
    ev = pk.encrypt_encoded(encoded, False)
    assert all(c != d for c, d in zip(ev.cts, deterministic))
    _same(_dec(keys, ev), x)
    monkeypatch.setenv("HEA_FATE_ALLOW_UNOBFUSCATED", "1")
    assert pk.encrypt_encoded(encoded, False).cts == deterministic
    assert all(c != d for c, d in zip(pk.encrypt_encoded(encoded, True).cts, deterministic))


# -- fate_utils scalars, clear errors, names after uninstall ---------------------------------
def test_fate_utils_scalars_are_refused_clearly(keys):
    """fate_utils' Plaintext/Ciphertext scalars expose no state (no pickling, no __getstate__):
    refused with a TypeError that says what to pass instead."""
    sk, pk, coder, fsk, fpk, fcoder = keys
    theirs = fcoder.encode_f64(1.5)
    with pytest.raises(TypeError, match="Plaintext scalar exposes no state"):
        fate2.FV.of(theirs)
    with pytest.raises(TypeError, match="Ciphertext scalar exposes no state"):
        fate2.EV.of(fpk.encrypt_encoded_scalar(theirs, True), pk.public_key)
    ours = pk.encrypt_encoded_scalar(coder.encode_f64(1.5), True)   # ours: a vector of one
    assert len(ours) == 1 and coder.decode_f64(sk.decrypt_to_encoded(ours)) == 1.5


def test_bad_coder_arguments_fail_clearly(keys):
    sk, pk, coder, *_ = keys
    with pytest.raises(ValueError, match="scalar"):
        coder.encode(torch.ones(3, dtype=torch.float64))
    assert coder.decode_f64(coder.encode(torch.tensor(2.5, dtype=torch.float64))) == 2.5
    with pytest.raises(NotImplementedError, match="not supported"):
        coder.encode(1.0, dtype=torch.float16)
    for bad in ({"pack_num": 0}, {"offset_bit": -1}, {"pack_num": 2.5}):
        args = {"offset_bit": 40, "pack_num": 2, "precision": 30, **bad}
        with pytest.raises(ValueError, match="positive integer"):
            coder.pack_floats(torch.ones(4, dtype=torch.float64), **args)
    with pytest.raises(ValueError, match="num_elem_each_pack"):
        coder.pack_vec(torch.ones(4, dtype=torch.int64), 8, 0)
    with pytest.raises(TypeError, match="coder or public key"):
        fate2.Coder("not a key")
    with pytest.raises(ValueError, match="max_int"):
        coder.encode_i64(-(pk.public_key.n // 2) - 1)


def test_names_are_the_packages_again_after_uninstall(keys):
    fate2.install("cpu")
    try:
        assert fate2.evaluator.__module__ == "fate.arch.protocol.phe.paillier"
    finally:
        fate2.uninstall()
    for obj in (fate2.evaluator, fate2.EV, fate2.FV, fate2.PK, fate2.SK, fate2.Coder, fate2.keygen):
        assert obj.__module__ == "accel.integrations.fate2"
    assert pickle.loads(pickle.dumps(fate2.evaluator)) is fate2.evaluator
    assert b"accel.integrations.fate2\n" in pickle.dumps(fate2.evaluator, protocol=0)


def test_histogram_updates_at_scale_match_fate_utils(keys, rng):
    """A SecureBoost-shaped update: 64 rows x 12 features into 12 x 8 bins, stride 2, mixed
    exponents (alignment inside groups), a target already live, masks leaving rows out."""
    sk, pk, coder, fsk, fpk, fcoder = keys
    rows, feats, bins, stride = 64, 12, 8, 2
    g = _values(rng, rows * stride)
    positions = [[f * bins + int(rng.integers(0, bins)) for f in range(feats)] for _ in range(rows)]
    start = _values(rng, feats * bins * stride)
    ours, theirs = _ours(keys, start), _theirs(keys, start)
    fate2.evaluator.i_update(pk, ours, _ours(keys, g), positions, stride)
    STOCK_EV.i_update(fpk, theirs, _theirs(keys, g), positions, stride)
    _same(_dec(keys, ours), _fdec(keys, theirs))
    masks = [bool(v) for v in rng.integers(0, 2, rows)]
    masked_pos = [positions[i] for i in range(sum(masks))]
    fate2.evaluator.i_update_with_masks(pk, ours, _ours(keys, g), torch.tensor(masked_pos), torch.tensor(masks), stride)
    STOCK_EV.i_update_with_masks(fpk, theirs, _theirs(keys, g), masked_pos, masks, stride)
    _same(_dec(keys, ours), _fdec(keys, theirs))


def test_histogram_update_refuses_positions_out_of_range(keys, rng):
    sk, pk, coder, *_ = keys
    a = fate2.evaluator.zeros(4)
    before = list(a.cts)
    with pytest.raises(IndexError, match="target"):
        fate2.evaluator.i_update(pk, a, _ours(keys, _values(rng, 2)), [[0, 4], [1]], 1)
    with pytest.raises(IndexError, match="target"):
        fate2.evaluator.i_update(pk, a, _ours(keys, _values(rng, 2)), [[-1], [1]], 1)
    with pytest.raises(IndexError, match="source"):
        fate2.evaluator.i_update(pk, a, _ours(keys, _values(rng, 2)), [[0], [1], [2]], 1)
    with pytest.raises(ValueError, match="stride"):
        fate2.evaluator.i_update(pk, a, _ours(keys, _values(rng, 2)), [[0], [1]], 0)
    assert a.cts == before  # refused before anything changed
