from __future__ import annotations

import random

import pytest

from accel import CpuBackend, generate_keypair

from .oracle import Oracle

# Keys are expensive at 3072/4096 bits; make each size once per session.
_KEYS: dict[int, tuple] = {}


def keypair(bits: int):
    if bits not in _KEYS:
        _KEYS[bits] = generate_keypair(bits, allow_insecure=bits < 1024)
    return _KEYS[bits]


@pytest.fixture(scope="session")
def key1024():
    return keypair(1024)


@pytest.fixture(scope="session")
def key2048():
    return keypair(2048)


@pytest.fixture(scope="session")
def tiny_key():
    """A 256-bit key: insecure, for fast property tests of the arithmetic."""
    return keypair(256)


@pytest.fixture(scope="session")
def inline_backend():
    be = CpuBackend(workers=1)
    yield be
    be.close()


@pytest.fixture(scope="session")
def pool_backend():
    """Two worker processes with one element per task chunk: exercises splitting and offsets."""
    be = CpuBackend(workers=2, chunks_per_worker=8)
    yield be
    be.close()


@pytest.fixture(params=["inline", "pool"])
def backend(request, inline_backend, pool_backend):
    return inline_backend if request.param == "inline" else pool_backend


@pytest.fixture
def oracle1024(key1024):
    return Oracle.for_key(key1024[1])


@pytest.fixture
def seeded_rng():
    return random.Random(12345)
