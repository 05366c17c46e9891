"""The run-time plumbing that needs no device: kernel names, compile options, records, errors."""
import re

import pytest

from accel.gpu import errors as E
from accel.gpu.runtime import KERNEL_FILES, compile_options, sources_digest, split_kernel_name
from accel.gpu.sources import source_dir


def declared_kernels():
    out = {}
    # a launch-bounds macro such as HEA_COOP_BOUNDS(2 * LP) may stand between `void` and the name
    declaration = r'extern "C" __global__ void (?:\w+\([^()]*\)\s+)?(\w+?)_##\w+\('
    for path in source_dir().glob("*.cu"):
        for name in re.findall(declaration, path.read_text()):
            out[name] = path.name
    return out


def test_every_kernel_maps_to_its_source_file():
    declared = declared_kernels()
    assert declared == KERNEL_FILES


def test_kernel_names_and_compile_options():
    assert split_kernel_name("paillier_encrypt_with_64") == ("paillier_encrypt_with", 64)
    assert split_kernel_name("he_add_32") == ("he_add", 32)
    assert "-DHEA_KEY_CLASS=96" in compile_options("matvec_partial_96")
    assert "-DHEA_MOD_LIMBS=192" in compile_options("powmod_192")
    assert any(o.startswith("--include-path=") for o in compile_options("he_add_32"))
    assert "--gpu-architecture=sm_90" in compile_options("he_add_32")
    with pytest.raises(KeyError):
        split_kernel_name("no_such_kernel_32")
    assert len(sources_digest()) == 16


def test_error_words_decode_like_the_cpu_backend():
    E.raise_for(E.NO_ERROR)
    with pytest.raises(ValueError, match=r"plaintext\[12\] is out of range"):
        E.raise_for((10 << 8) | E.PLAINTEXT_RANGE, offset=2)
    with pytest.raises(ValueError, match=r"ciphertext b\[0\]"):
        E.raise_for(E.SECOND_RANGE)
    with pytest.raises(ValueError, match=r"invertible"):
        E.raise_for((1 << 8) | E.NOT_INVERTIBLE)
    with pytest.raises(ValueError, match="odd"):
        E.raise_for(E.MODULUS_EVEN)
    with pytest.raises(RuntimeError, match="unknown"):
        E.raise_for(99)
