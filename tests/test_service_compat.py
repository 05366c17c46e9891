"""The client and server under FATE 2.x's pins (grpcio 1.62.1, protobuf 4.24.4, numpy < 2).

Marked ``compat``: scripts/test.sh runs these in a second virtual environment that has exactly
those pins (and grpcio-tools 1.62.1, to check that the checked-in stubs are what the pinned
generator writes). The main environment deselects them.
"""
from __future__ import annotations

import asyncio
import filecmp
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from accel import generate_keypair
from accel.packing import blob_to_ints, ints_to_blob

from .oracle import Oracle

pytestmark = pytest.mark.compat
ROOT = Path(__file__).resolve().parents[1]


def test_the_environment_has_fates_pins():
    assert version("grpcio") == "1.62.1"
    assert version("protobuf") == "4.24.4"
    assert int(version("numpy").split(".")[0]) < 2


def test_checked_in_stubs_are_what_grpcio_tools_1_62_1_writes(tmp_path):
    assert version("grpcio-tools") == "1.62.1"
    subprocess.run(["bash", str(ROOT / "scripts/gen_protos.sh"), str(tmp_path)], check=True, cwd=ROOT,
                   env={"GEN_PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    gen = tmp_path / "service/proto/heaccel/v1"
    names = ["heaccel_pb2.py", "heaccel_pb2.pyi", "heaccel_pb2_grpc.py"]
    _, mismatch, errors = filecmp.cmpfiles(gen, ROOT / "service/proto/heaccel/v1", names, shallow=False)
    assert not mismatch and not errors, f"stale stubs: run scripts/gen_protos.sh ({mismatch + errors})"


def test_round_trip_sync_and_async_under_the_pins(service_server):
    from accel.service.client import AsyncHeAccelClient, HeAccelClient

    pk, sk = generate_keypair(1024)
    o = Oracle.for_key(sk)
    ms = [0, 1, pk.n - 1, 12345]
    target = f"127.0.0.1:{service_server.port}"
    with HeAccelClient(target, chunk_bytes=1024) as c:
        ct = c.encrypt(pk, ints_to_blob(ms, pk.plaintext_width))
        assert o.dec_all(blob_to_ints(c.add(pk, ct, ct), pk.ciphertext_width)) == [2 * m % pk.n for m in ms]
        # repeated uint64 under protobuf 4.24.4; five sums at four a chunk: two Stream chunks
        sums = blob_to_ints(c.sum_groups(pk, ct, [1, 0, 3, 0, 0]), pk.ciphertext_width)
        assert o.dec_all(sums) == [ms[0], 0, sum(ms[1:]) % pk.n, 0, 0]
        assert c.import_private_key(sk).private_key_owned_by_caller
        assert blob_to_ints(c.decrypt(pk, ct), pk.plaintext_width) == ms

    async def run():
        async with AsyncHeAccelClient(target) as a:
            return await a.sum(pk, ct)

    assert o.dec(blob_to_ints(asyncio.run(run()), pk.ciphertext_width)[0]) == sum(ms) % pk.n
