"""The kernel name table: each kernel family's source file, the size classes each file is
compiled at, and the names ``<family>_<size>`` the backend launches (one unit: one file at one
size class; see :mod:`accel.gpu.compiler`)."""
from __future__ import annotations

import re
from typing import Iterable

#: kernel name (without the size suffix) -> source file of its family
KERNEL_FILES = {
    "paillier_encrypt": "paillier_encrypt.cu", "paillier_obfuscate": "paillier_encrypt.cu",
    "paillier_rerandomize": "paillier_encrypt.cu", "paillier_encrypt_with": "paillier_encrypt.cu",
    "paillier_crt_obfuscate": "paillier_encrypt.cu", "paillier_crt_encrypt": "paillier_encrypt.cu",
    "paillier_decrypt": "paillier_decrypt.cu",
    "he_add": "homomorphic.cu", "he_add_plain": "homomorphic.cu", "he_mul_scalar": "homomorphic.cu",
    "he_product": "reduce.cu",
    "matvec_tables": "matvec.cu", "matvec_partial": "matvec.cu", "matvec_finish": "matvec.cu",
    "powmod": "modexp.cu", "powmod_coop": "modexp_coop.cu",
    "paillier_encrypt_coop": "paillier_coop.cu", "paillier_obfuscate_coop": "paillier_coop.cu",
    "djn_table": "djn.cu", "djn_encrypt": "djn.cu",
    "djn_table_coop": "djn_coop.cu", "djn_encrypt_coop": "djn_coop.cu",
    "paillier_decrypt_coop": "decrypt_coop.cu",
    "he_add_coop": "homomorphic_coop.cu", "he_product_coop": "homomorphic_coop.cu",
    "he_mul_scalar_coop": "homomorphic_coop.cu",
    "he_inverse_prefix_coop": "inverse_coop.cu", "he_inverse_back_coop": "inverse_coop.cu",
    # device-resident ciphertexts in Montgomery form (GpuBackend.to_montgomery)
    "he_to_mont_coop": "resident_coop.cu", "he_from_mont_coop": "resident_coop.cu",
    "he_add_mont_coop": "resident_coop.cu", "he_product_mont_coop": "resident_coop.cu",
    "he_mul_scalar_mont_coop": "resident_coop.cu", "he_add_plain_mont_coop": "resident_coop.cu",
    "he_rerandomize_mont_coop": "resident_coop.cu",
}
#: Paillier size classes: plaintext limbs of keys up to 1024, 2048, 3072 and 4096 bits
KEY_CLASSES = (32, 64, 96, 128)
#: generic powmod: modulus limbs up to 8192 bits (n^2 of a 4096-bit key)
MOD_CLASSES = (32, 64, 96, 128, 192, 256)
#: the files whose size parameter is a modulus width, not a key class
MODEXP_FILE = "modexp.cu"
MODEXP_FILES = (MODEXP_FILE, "modexp_coop.cu")
#: cooperative kernels: threads per number (a group of lanes of one warp) by modulus limbs, as
#: coop_tpi() in kernels/coop_mont.cuh (tests/test_coop_kernels.py checks that they agree); the
#: Paillier ones work modulo n^2, so key class LP takes COOP_TPI[2 * LP]
COOP_TPI = {32: 8, 64: 16, 96: 32, 128: 32, 192: 32, 256: 32}
#: the architecture the prebuilt binaries target by default (H100 / H200)
DEFAULT_ARCH = "sm_90"

_NAME = re.compile(r"^(?P<family>[a-z_]+?)_(?P<size>\d+)$")


def split_kernel_name(name: str) -> tuple[str, int]:
    m = _NAME.match(name)
    if not m or m["family"] not in KERNEL_FILES:
        raise KeyError(f"unknown kernel {name!r}")
    return m["family"], int(m["size"])


def unit_of(kernel: str) -> tuple[str, int]:
    """(source file, size) of the unit that defines ``kernel``."""
    family, size = split_kernel_name(kernel)
    return KERNEL_FILES[family], size


def size_classes(file: str) -> tuple[int, ...]:
    return MOD_CLASSES if file in MODEXP_FILES else KEY_CLASSES


def source_files() -> list[str]:
    return sorted(set(KERNEL_FILES.values()))


def all_units(sizes: Iterable[int] | None = None) -> list[tuple[str, int]]:
    """Every (file, size) pair; ``sizes`` keeps only those classes (key classes in limbs, which
    also keeps the powmod classes of the same width and of their n^2)."""
    keep = None if sizes is None else set(sizes)
    out = []
    for f in source_files():
        for s in size_classes(f):
            if keep is None or s in keep or (f in MODEXP_FILES and s // 2 in keep):
                out.append((f, s))
    return out


def kernels_of(file: str, size: int) -> list[str]:
    """The kernel names a unit must define: what the backend may launch from it."""
    return sorted(f"{fam}_{size}" for fam, f in KERNEL_FILES.items() if f == file)
