"""Request decoding: vectorised range checks against Python ints, signed numbers, and a
hypothesis fuzz of the whole request decoder (any request is a Job or a typed status)."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accel.service import codec
from accel.service.errors import InvalidArgument, ServiceError
from accel.service.proto.heaccel.v1 import heaccel_pb2 as pb
from accel.service.server import ComputeServicer

W = 8  # bytes per number in the unit tests (2 limbs)


@given(st.lists(st.integers(0, 2**64 - 1), max_size=20), st.integers(1, 2**64))
def test_first_not_below_matches_ints(values, bound):
    blob = b"".join(v.to_bytes(W, "little") for v in values)
    want = next((i for i, v in enumerate(values) if v >= bound), -1)
    assert codec.first_not_below(blob, W, bound) == want


@given(st.lists(st.integers(0, 3), max_size=20))
def test_first_zero(values):
    blob = b"".join(v.to_bytes(W, "little") for v in values)
    assert codec.first_zero(blob, W) == next((i for i, v in enumerate(values) if v == 0), -1)


def test_edges_of_the_ciphertext_range():
    n = 2**61 - 1
    n2 = n * n
    w = 16
    ok = [1, n - 1, n, n2 - 1]
    assert codec.ciphertexts(b"".join(v.to_bytes(w, "little") for v in ok), n2, w) == 4
    for bad, idx in (([1, 0], 1), ([n2, 1], 0), ([1, 2, n2 + 5], 2)):
        with pytest.raises(InvalidArgument, match=rf"ciphertext\[{idx}\] is out of range"):
            codec.ciphertexts(b"".join(v.to_bytes(w, "little") for v in bad), n2, w)
    with pytest.raises(InvalidArgument, match="not a multiple of the width 16"):
        codec.ciphertexts(b"\x01" * 17, n2, w)
    assert codec.plaintexts(b"", n, w) == 0
    with pytest.raises(InvalidArgument, match=r"plaintext\[0\]"):
        codec.plaintexts(n.to_bytes(w, "little"), n, w)


@given(st.lists(st.integers(-(2**100) + 1, 2**100 - 1), max_size=30))
def test_signed_round_trip(values):
    width = codec.signed_width(values, 64)
    mags, neg = codec.pack_signed(values, width)
    assert codec.signed(mags, width, neg, 2**100, "scalar") == values
    assert (neg == b"") == all(v >= 0 for v in values)


def test_signed_rejects_bad_input():
    with pytest.raises(InvalidArgument, match="sign bytes"):
        codec.signed(b"\x01" * 8, 4, b"\x00", 100, "scalar")
    with pytest.raises(InvalidArgument, match="sign byte 1 must be 0 or 1"):
        codec.signed(b"\x01" * 8, 4, b"\x00\x02", 100, "scalar")
    with pytest.raises(InvalidArgument, match=r"scalar\[1\] is out of range"):
        codec.signed((5).to_bytes(4, "little") + (100).to_bytes(4, "little"), 4, b"", 100, "scalar")
    with pytest.raises(InvalidArgument, match="width"):
        codec.signed(b"", 0, b"", 100, "scalar")


def test_signed_counts_before_decoding():
    """The count the header implies is checked first: a blob of the wrong length fails on its
    length, even when its first number is out of range (decoding would have said so)."""
    blob = b"\xff" * 4096
    assert codec.signed_count(blob, 4, b"", "scalar") == 1024
    with pytest.raises(InvalidArgument, match="length mismatch: 1 expected, 4096 scalars given"):
        codec.signed(blob, 1, b"", 2, "scalar", expected=1)
    with pytest.raises(InvalidArgument, match=r"scalar\[0\] is out of range"):
        codec.signed(blob, 1, b"", 2, "scalar", expected=4096)


# -- fuzzing the request decoder ---------------------------------------------------------------

OPS = ["encrypt", "decrypt", "add", "add_plain", "mul", "sum", "sum_groups", "matvec", "rerandomize", "powmod"]


@pytest.fixture(scope="module")
def planner(service_server, key1024):
    service_server.keys.register_public(key1024[0].to_bytes(), "anonymous")
    return ComputeServicer(service_server)


def blobs(width_hint: int):
    return st.one_of(
        st.binary(max_size=3 * width_hint + 3),
        st.integers(0, 3).flatmap(lambda k: st.binary(min_size=k * width_hint, max_size=k * width_hint)),
    )


@st.composite
def requests(draw, pk):
    op = draw(st.sampled_from(OPS))
    cw, pw = pk.ciphertext_width, pk.plaintext_width
    key = draw(st.sampled_from([
        pb.KeyRef(key_id=pk.fingerprint),
        pb.KeyRef(key_id="nope"),
        pb.KeyRef(),
        pb.KeyRef(public_key=draw(st.binary(max_size=40))),
        pb.KeyRef(key_id="x", public_key=pk.to_bytes()),
    ]))
    signed = pb.SignedNumbers(magnitudes=draw(blobs(4)), width=draw(st.sampled_from([0, 1, 4, 5, 2000])),
                              negative=draw(st.binary(max_size=4)))
    c1, c2, m = draw(blobs(cw)), draw(blobs(cw)), draw(blobs(pw))
    if op == "encrypt":
        req = pb.EncryptRequest(key=key, plaintexts=m, mode=draw(st.sampled_from([0, 1, 2, 3, 7])))
    elif op == "decrypt":
        req = pb.DecryptRequest(key=key, ciphertexts=c1)
    elif op == "add":
        req = pb.AddRequest(key=key, a=c1, b=c2)
    elif op == "add_plain":
        req = pb.AddPlainRequest(key=key, ciphertexts=c1, plaintexts=m)
    elif op == "mul":
        req = pb.MulRequest(key=key, ciphertexts=c1, scalars=signed)
    elif op == "sum":
        req = pb.SumRequest(key=key, ciphertexts=c1)
    elif op == "sum_groups":
        counts = draw(st.lists(st.sampled_from([0, 1, 2, 3, 2**64 - 1]), max_size=5))
        req = pb.SumGroupsRequest(key=key, ciphertexts=c1, counts=counts)
    elif op == "matvec":
        req = pb.MatVecRequest(key=key, ciphertexts=c1, matrix=signed, columns=draw(st.integers(0, 2**32 - 1)))
    elif op == "rerandomize":
        req = pb.RerandomizeRequest(key=key, ciphertexts=c1, use_private_key=draw(st.booleans()))
    else:
        req = pb.PowModRequest(modulus=draw(st.binary(max_size=12)), bases=draw(blobs(8)), exponents=signed)
    return op, req


def _plan_or_status(planner, op, req):
    try:
        job, _ = planner.plan(op, req, "anonymous")
    except ServiceError as e:
        assert e.message and e.code is not None
        return None
    assert job.count >= 0
    for inp in job.inputs:
        assert len(inp) in (job.count, job.count * (len(inp) // max(job.count, 1)))
    return job


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_structured_requests(planner, key1024, data):
    op, req = data.draw(requests(key1024[0]))
    _plan_or_status(planner, op, req)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=600))
def test_fuzz_raw_stream_bytes(planner, raw):
    from google.protobuf.message import DecodeError

    try:
        req = pb.StreamRequest.FromString(raw)
    except DecodeError:
        return
    op = req.WhichOneof("op")
    if op is not None:
        _plan_or_status(planner, op, getattr(req, op))


def test_valid_request_plans_and_runs(planner, key1024):
    pk = key1024[0]
    ms = b"".join(i.to_bytes(pk.plaintext_width, "little") for i in range(5))
    job, bits = planner.plan("encrypt", pb.EncryptRequest(key=pb.KeyRef(key_id=pk.fingerprint), plaintexts=ms),
                             "anonymous")
    assert (job.count, bits, job.out_width) == (5, 1024, pk.ciphertext_width)
    assert len(job.run(*job.inputs)) == 5 * pk.ciphertext_width
