"""The kernels' resource report (``he-accel kernels report``): ptxas ``-v`` output parsed per
kernel (registers, stack, spills), and the theoretical occupancy on sm_90."""
from __future__ import annotations

import re
from typing import Iterable

from .names import KEY_CLASSES

_ENTRY = re.compile(r"Compiling entry function '(\w+)'")
_PROPS = re.compile(r"Function properties for (\w+)")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")
_STACK = re.compile(r"(\d+) bytes cumulative stack size")


def parse_ptxas_log(text: str) -> dict[str, dict]:
    """ptxas ``-v`` output -> per kernel: registers, stack frame, spill stores and loads,
    cumulative stack, shared memory, and the spills of the ``__noinline__`` routines it calls
    (reported after the kernel's own lines; their spills are paid inside the kernel)."""
    out: dict[str, dict] = {}
    entry = target = None
    for line in text.splitlines():
        if m := _ENTRY.search(line):
            entry = m[1]
            out[entry] = {"registers": 0, "stack_frame": 0, "spill_stores": 0, "spill_loads": 0,
                          "cumulative_stack": 0, "smem": 0, "callee_spill_stores": 0, "callee_spill_loads": 0}
            target = None
        elif entry is not None and (m := _PROPS.search(line)):
            target = "self" if m[1] == entry else "callee"
        elif entry is not None and (m := _FRAME.search(line)):
            rec = out[entry]
            if target == "self":
                rec.update(stack_frame=int(m[1]), spill_stores=int(m[2]), spill_loads=int(m[3]))
            elif target == "callee":
                rec["callee_spill_stores"] += int(m[2])
                rec["callee_spill_loads"] += int(m[3])
        elif entry is not None and (m := _USED.search(line)):
            rec = out[entry]
            rec["registers"] = int(m[1])
            if s := _SMEM.search(line):
                rec["smem"] = int(s[1])
            if s := _STACK.search(line):
                rec["cumulative_stack"] = int(s[1])
    return out


#: sm_90 limits per multiprocessor (CUDA C Programming Guide, compute capability 9.0)
#: (the system reserves 1 KB of shared memory per resident block)
SM90 = {"regs": 65536, "warps": 64, "blocks": 32, "smem": 228 * 1024, "smem_reserved": 1024, "reg_unit": 256,
        "max_regs": 255}


def theoretical_occupancy(registers: int, block: int, smem: int = 0, limits: dict = SM90) -> float:
    """Resident warps / maximum warps per SM for a launch of ``block`` threads per block."""
    warps_per_block = -(-block // 32)
    regs_per_warp = -(-max(1, registers) * 32 // limits["reg_unit"]) * limits["reg_unit"]
    by_regs = (limits["regs"] // regs_per_warp) // warps_per_block
    by_warps = limits["warps"] // warps_per_block
    by_smem = limits["smem"] // (smem + limits.get("smem_reserved", 0)) if smem else limits["blocks"]
    blocks = min(by_regs, by_warps, by_smem, limits["blocks"])
    return blocks * warps_per_block / limits["warps"]


def classes_for_bits(bits: Iterable[int]) -> list[int]:
    """Key sizes in bits -> the Paillier size classes that serve them."""
    out = []
    for b in bits:
        lp = next((c for c in KEY_CLASSES if 32 * c >= int(b)), None)
        if lp is None:
            raise ValueError(f"no kernel size class for {b}-bit keys (largest: {32 * KEY_CLASSES[-1]})")
        out.append(lp)
    return sorted(set(out))


def report_rows(manifest: dict, block: int = 128) -> list[dict]:
    """One row per kernel and size class of a manifest (``build`` output), with the theoretical
    occupancy on sm_90 at the backend's launch shape (``block`` threads per block)."""
    rows = []
    for u in sorted(manifest["units"], key=lambda u: (u["arch"], u["file"], u["size"])):
        for name, r in sorted(u["resources"].items()):
            rows.append({"kernel": name, "file": u["file"], "size": u["size"], "arch": u["arch"], **r,
                         "occupancy": theoretical_occupancy(r["registers"], block, r.get("smem", 0))})
    return rows


def format_report(rows: list[dict], block: int = 128) -> str:
    """A markdown table of :func:`report_rows`."""
    head = ("| kernel | arch | registers | stack frame B | spill st/ld B | callee spill st/ld B | smem B "
            f"| occupancy @{block} |\n|---|---|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        lines.append(f"| `{r['kernel']}` | {r['arch']} | {r['registers']} | {r['stack_frame']} "
                     f"| {r['spill_stores']}/{r['spill_loads']} | {r['callee_spill_stores']}/{r['callee_spill_loads']} "
                     f"| {r['smem']} | {r['occupancy']:.0%} |")
    return "\n".join(lines)
