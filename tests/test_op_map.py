"""The op map (kernels/README.md, tests/README.md) names only things that exist: kernels in the
name table, backend methods, gmpy2 functions, RPCs and client methods, test files and tests."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import accel
from accel import EncryptedVector
from accel.backends import _gmp_ops
from accel.backends.base import Backend
from accel.backends.gpu import GpuBackend
from accel.gpu.build import KERNEL_FILES
from accel.gpu.launch import LAUNCHERS, Launcher

ROOT = Path(__file__).resolve().parents[1]


def _table(path: Path, heading: str) -> list[list[str]]:
    """The rows (cells as text) of the first table under ``heading``."""
    text = path.read_text()
    section = text[text.index(heading):]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows and not line.startswith("|"):
            break
    return rows[1:]  # without the header


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


OPS = _table(ROOT / "kernels/README.md", "## Which file holds which op")


def test_the_kernel_map_has_every_raw_op():
    assert len(OPS) >= 12
    ops = {re.match(r"\w+", _names(row[0])[0]).group(0) for row in OPS}
    public = {m for m in dir(Backend) if m.startswith("raw_")} | {"obfuscators", "powmod"}
    assert ops == public


def test_the_services_ops_are_the_raw_apis_names():
    """service/ops.py names each op once (metrics label, Stream field, planner): the raw API's
    stem, and the map's RPC for it is that op's."""
    from accel.service.ops import COMPUTE_OPS

    stems = {re.match(r"(?:raw_)?(\w+)", _names(row[0])[0]).group(1) for row in OPS} - {"obfuscators"}
    assert set(COMPUTE_OPS) == stems
    for row in OPS:
        stem = re.fullmatch(r"(?:raw_)?(\w+)", _names(row[0])[0])  # an op's own row, not a mode's
        stem = stem and stem.group(1)
        if stem in COMPUTE_OPS:
            assert COMPUTE_OPS[stem].rpc == re.match(r"\w+", _names(row[4])[0]).group(0), row[0]


@pytest.mark.parametrize("row", OPS, ids=[r[0] for r in OPS])
def test_every_name_in_the_kernel_map_exists(row):
    from accel.service.client import ENCRYPT_MODES, HeAccelClient
    from accel.service.proto.heaccel.v1 import heaccel_pb2 as pb

    op, kernels, gpu, cpu, service, encoded, _outside = row
    rpcs = set(pb.DESCRIPTOR.services_by_name["ComputeService"].methods_by_name)
    for name in _names(kernels):
        if name.endswith(".cu"):
            assert (ROOT / "kernels" / name).is_file(), name
        else:
            assert name in KERNEL_FILES, name
    files = [n for n in _names(kernels) if n.endswith(".cu")]
    for name in [n for n in _names(kernels) if not n.endswith(".cu")]:
        assert not files or KERNEL_FILES[name] in files or name == "he_add", (name, files)
        assert LAUNCHERS[name] == name.removesuffix("_coop")  # its launcher, named after it (a twin's)
    for name in _names(gpu):
        owner, _, attr = name.rpartition(".")
        assert hasattr({"Launcher": Launcher, "": GpuBackend}[owner], attr), name
    for name in _names(cpu):
        assert callable(getattr(_gmp_ops, name, None)), name
    for name in _names(service):
        word = re.match(r"\"?(\w+)", name).group(1)
        if name.startswith('"'):
            assert word in ENCRYPT_MODES, name
        elif word[0].isupper():
            assert word in rpcs, name
        else:
            assert hasattr(HeAccelClient, word), name
    for name in _names(encoded):
        word = re.match(r"[\w.]*", name).group(0)
        if word:  # operators (+, -, *, /, @) have no name to look up
            attr = word.rpartition(".")[2]
            assert hasattr(EncryptedVector, attr) or hasattr(accel, attr), name


TEST_MAP = _table(ROOT / "tests/README.md", "## Which file tests which op") + \
    _table(ROOT / "tests/README.md", "## The rest, by layer")


@pytest.mark.parametrize("row", TEST_MAP, ids=[r[0] for r in TEST_MAP])
def test_every_test_in_the_test_map_exists(row):
    for cell in row[1:]:
        # "file.py" or "file.py (`test_a`, `test_b`)" or "dir/", comma-separated
        for part in re.finditer(r"`([\w/]+\.py|[\w]+/)`(?: \(([^)]*)\))?", cell):
            path = ROOT / "tests" / part.group(1)
            assert path.exists(), path
            source = path.read_text() if path.is_file() else ""
            for test in _names(part.group(2) or ""):
                assert re.search(rf"def {test}\(", source), f"{path.name}: {test}"
