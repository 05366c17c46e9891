"""Fixtures for the CUDA suite (``pytest -m gpu``): a real GpuBackend on CuPy and the CPU oracle."""
import pytest

from accel import CpuBackend


@pytest.fixture(scope="session")
def cpu():
    be = CpuBackend()
    yield be
    be.close()


@pytest.fixture(scope="session")
def gpu(cpu):
    from accel.backends.gpu import GpuBackend

    be = GpuBackend(fallback=cpu)  # CuPy runtime on every visible device; fails loudly without one
    yield be
    be.close()
