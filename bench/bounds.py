"""The GPU's physical bound per op, as in ../shared/reference/performance-anchors.md (model D).

Peak integer rate = SMs x 64 IMAD/clk x clock. A Montgomery multiplication over s 32-bit limbs
costs 4 s^2 IMAD (2 s^2 32x32->64 products, lo and hi); a modexp with an e-bit exponent and a
6-bit sliding window costs e squarings + (e/7 + 32) multiplications, squarings counted as
multiplications (the conservative "sqr = mul" column of the anchors: the highest IMAD count,
so the lowest bound, so the fraction reported is the kinder of the two). Shuffles, loads,
carries and control are ignored: nothing real reaches 100%; 25-50% is the published range.
"""
from __future__ import annotations

from typing import Any

IMAD_PER_CLK_PER_SM = 64


def montmul_imad(modulus_bits: int) -> int:
    s = -(-modulus_bits // 32)
    return 4 * s * s


def modexp_imad(modulus_bits: int, exponent_bits: int) -> float:
    return (exponent_bits + exponent_bits / 7 + 32) * montmul_imad(modulus_bits)


def imad_per_op(op: str, key_bits: int, djn_exponent_bits: int | None = None) -> float | None:
    """IMAD per element of ``op`` at ``key_bits``; None where the model has no entry."""
    k, k2 = key_bits, 2 * key_bits
    op = op.removesuffix("_device")
    if op in ("encrypt", "decrypt_nocrt"):
        return modexp_imad(k2, k)                      # r^n mod n^2 (or c^lambda)
    if op == "rerandomize":
        return modexp_imad(k2, k) + montmul_imad(k2)
    if op == "encrypt_crt":
        return 2 * modexp_imad(k, k // 2)              # z_p^p mod p^2 and z_q^q mod q^2
    if op == "encrypt_djn":
        return modexp_imad(k2, djn_exponent_bits or k // 2)
    if op == "decrypt":
        return 2 * modexp_imad(k, k // 2)              # CRT: c^(p-1) mod p^2, c^(q-1) mod q^2
    if op == "mul":
        return modexp_imad(k2, 64)                     # 64-bit scalars
    if op == "matvec":
        return modexp_imad(k2, 32) + montmul_imad(k2)  # per element: c^x (32-bit), then accumulate
    if op in ("add", "add_plain", "sum", "encrypt_pooled"):
        return montmul_imad(k2)
    return None


def device_peak(backend: Any) -> dict[str, Any] | None:
    """{sms, clock_khz, imad_per_s, name} of the backend's first CUDA device, or None."""
    try:
        import cupy
    except ImportError:
        return None
    devices = (backend.describe() or {}).get("devices") or []
    if not devices or devices[0].get("runtime") != "cupy":
        return None
    dev = int(devices[0].get("device", 0))
    rt = cupy.cuda.runtime
    props = rt.getDeviceProperties(dev)
    sms = int(props["multiProcessorCount"])
    clock = props.get("clockRate")  # kHz; dropped from cudaDeviceProp in CUDA 13
    if not clock:
        try:
            clock = rt.deviceGetAttribute(13, dev)  # cudaDevAttrClockRate
        except Exception:  # noqa: BLE001
            clock = None
    if not clock:
        try:
            import pynvml
            pynvml.nvmlInit()
            h = pynvml.nvmlDeviceGetHandleByIndex(dev)
            clock = pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM) * 1000
        except Exception:  # noqa: BLE001
            return None
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return {"name": name, "sms": sms, "clock_khz": int(clock),
            "imad_per_s": sms * IMAD_PER_CLK_PER_SM * int(clock) * 1e3}


def bound_ops_per_s(peak: dict[str, Any] | None, op: str, key_bits: int) -> float | None:
    if not peak:
        return None
    cost = imad_per_op(op, key_bits)
    return None if not cost else peak["imad_per_s"] / cost
