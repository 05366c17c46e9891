"""A performance model of the Montgomery kernels, read from their SASS: a benchmark, not a test.

    python -m accel.bench.kernel_model

Compiles the powmod units through the backend's own NVRTC path (accel.gpu.build), disassembles
the cubins with ``nvdisasm`` (pip: nvidia-cuda-nvdisasm, matching the NVRTC version; CUDA 13.5's
cubins are too new for cuobjdump 13.4), finds the Montgomery multiplication's loops and counts
their instructions per limb-step by pipe, then predicts ops/s on an H100/H200 (132 SMs, 1.98 GHz)
for each Paillier operation at 2048-bit keys, for today's one-thread-per-number kernels and the
cooperative core, beside issue 15's targets and the bounds of performance-anchors.md.

Nothing here is measured on a GPU. The assumptions are printed with the table (ASSUMPTIONS).
"""
from __future__ import annotations

import argparse
import math
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SMS, CLOCK_HZ, SMSP_PER_SM = 132, 1.98e9, 4
KEY_BITS = 2048

ASSUMPTIONS = """\
- Throughput-bound, latency fully hidden: each SM sub-partition (4 per SM) issues one warp
  instruction per cycle; per sub-partition the FMA pipe (IMAD*, 16 lanes) and the ALU pipe (IADD3,
  LOP3, SEL, ISETP, SHF, LEA, VIADD, MOV, ...) each take 2 cycles per warp instruction,
  IMAD.WIDE 4 (half rate); shuffles, votes and memory instructions 4 (32 lanes/cycle per SM).
  An instruction stream costs max(issue, FMA, ALU, LSU) cycles. Uniform-datapath (U*) and
  barrier/convergence instructions cost issue slots only.
- Local memory (LDL/STL of the one-thread kernels) hits L1: an upper bound for those kernels,
  whose 6-24 KB per-thread frames far exceed L1 at full occupancy (L2 traffic is not modelled).
- Counts come from the SASS of the multiplication loop of the powmod kernels as built by
  `he-accel kernels build` (sm_90); squaring is the same code (no dedicated squaring yet), and
  per multiplication the epilogue (carry resolution, final subtraction) is added for the
  cooperative core, the loop prologues and the final subtract-select for the one-thread one.
- Operation mixes at 2048-bit keys (n^2: 4096 bits, 128 limbs; p^2: 2048 bits, 64 limbs):
  textbook encryption = r^n mod n^2 (2048-bit public exponent) + 2 multiplications;
  CRT decryption = 2 x c^(p-1) mod p^2 (1024-bit secret exponent, 64 limbs) + 8 multiplications;
  DJN encryption = hs^r mod n^2 with a 1024-bit secret r (generic windows: the fixed-base comb is
  not built) + 2; x64-bit scalar = c^k mod n^2, 64-bit public k; add = 2 multiplications mod n^2.
  Windows: one-thread kernels 4-bit fixed (16-entry table); cooperative core 4-bit sliding windows
  (8 odd powers) for public exponents and 3-bit fixed windows (8 entries) for secret ones.
- Device-resident batches large enough to fill every SM (the cooperative core needs
  132 x 32 warps x 32/TPI numbers, e.g. 4,224 numbers at TPI 32; the one-thread kernels need
  32 x that); no transfer, launch or host cost.
"""

# issue 15's targets and performance-anchors.md's first-principles H100 bounds (sqr=mul ... opt. sqr)
TARGETS = {"textbook encryption": 70_000, "CRT decryption": 250_000, "DJN encryption": 1_000_000,
           "x64-bit scalar": 1_500_000, "add": 100_000_000}
BOUNDS = {"textbook encryption": "108k ... 137k", "CRT decryption": "425k ... 539k",
          "DJN encryption": "212k ... 270k (generic); 1.0M / 2.0M (comb w=4/8)", "x64-bit scalar": "~3M",
          "add": "255M (PCIe ~100M)"}

FMA = re.compile(r"^IMAD")
ALU = re.compile(r"^(IADD3|LOP3|SEL|ISETP|SHF|LEA|VIADD|MOV|PRMT|PLOP3|IABS|FLO|POPC|CS2R|P2R|R2P|IMNMX|VIMNMX|BMSK)")
LSU = re.compile(r"^(LD|ST|SHFL|VOTE|ATOM|RED|MATCH)")
FREE = re.compile(r"^(U|BRA|BSSY|BSYNC|WARPSYNC|ENDCOLLECTIVE|NOP|EXIT|RET|CALL|BAR|S2R|S2UR|CS2UR|DEPBAR)")


@dataclass
class Mix:
    """Instruction counts by pipe (a fraction of an instruction where averaged over loop steps)."""
    total: float = 0.0
    fma: float = 0.0
    fma_wide: float = 0.0
    alu: float = 0.0
    lsu: float = 0.0
    mem: float = 0.0  # of lsu: local/global/shared memory (not shuffles or votes)
    ops: dict = field(default_factory=dict)

    def add(self, op: str, times: float = 1.0) -> None:
        self.total += times
        self.ops[op] = self.ops.get(op, 0) + times
        if FMA.match(op):
            self.fma += times
            if ".WIDE" in op:
                self.fma_wide += times
        elif LSU.match(op):
            self.lsu += times
            if op.startswith(("LD", "ST")):
                self.mem += times
        elif ALU.match(op):
            self.alu += times

    def scaled(self, k: float) -> "Mix":
        m = Mix()
        for op, n in self.ops.items():
            m.add(op, n * k)
        return m

    def __add__(self, other: "Mix") -> "Mix":
        m = self.scaled(1.0)
        for op, n in other.ops.items():
            m.add(op, n)
        return m

    def cycles(self) -> float:
        """Cycles of one sub-partition to issue this stream of warp instructions."""
        issue = self.total
        fma = 2 * (self.fma - self.fma_wide) + 4 * self.fma_wide
        return max(issue, fma, 2 * self.alu, 4 * self.lsu)


# -- SASS ------------------------------------------------------------------------------------------
_INSN = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)")
_LABEL = re.compile(r"^(\.L_x_\d+|\$[\w$.]+|\.text\.[\w$.]+):")
_TARGET = re.compile(r"`\((\.L_x_\d+)\)")


@dataclass
class Function:
    name: str
    ops: list[str] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    branches: list[tuple[int, str]] = field(default_factory=list)

    def loops(self) -> list[tuple[int, int]]:
        """(first, last) instruction indices of every loop (a branch back to a label)."""
        out = []
        for at, target in self.branches:
            start = self.labels.get(target)
            if start is not None and start <= at:
                out.append((start, at))
        return sorted(set(out))

    def mix(self, lo: int, hi: int) -> Mix:
        m = Mix()
        for op in self.ops[lo : hi + 1]:
            m.add(op)
        return m


def parse_sass(text: str) -> dict[str, Function]:
    """nvdisasm output -> functions (kernels and the __noinline__ routines they call)."""
    funcs: dict[str, Function] = {}
    cur: Function | None = None
    for line in text.splitlines():
        s = line.strip()
        if m := _LABEL.match(s):
            name = m[1]
            if name.startswith(".text."):
                cur = funcs.setdefault(name[6:], Function(name[6:]))
            elif name.startswith("$") and cur is not None:
                cur = funcs.setdefault(name, Function(name))
            elif cur is not None:
                cur.labels[name] = len(cur.ops)
            continue
        if cur is None:
            continue
        if m := _INSN.search(s):
            op = m[1]
            if "BRA" in op and (t := _TARGET.search(s)):
                cur.branches.append((len(cur.ops), t[1]))
            cur.ops.append(op)
    return funcs


def disassembler() -> list[str]:
    """nvdisasm from PATH, the CUDA toolkit or the nvidia-cuda-nvdisasm wheel."""
    found = shutil.which("nvdisasm")
    if not found:
        for base in map(Path, sys.path):
            for cand in base.glob("nvidia/cu*/bin/nvdisasm"):
                found = str(cand)
    if not found:
        raise SystemExit("nvdisasm not found: pip install nvidia-cuda-nvdisasm (same CUDA version as NVRTC)")
    return [found, "-c"]


def sass_of(file: str, size: int, arch: str = "sm_90") -> dict[str, Function]:
    from accel.gpu import build as B  # noqa: PLC0415

    unit = B.compile_unit(file, size, arch)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unit.cubin"
        path.write_bytes(unit.cubin)
        out = subprocess.run([*disassembler(), str(path)], capture_output=True, text=True, check=True).stdout
    return parse_sass(out)


# -- the multiplications -----------------------------------------------------------------------------
@dataclass
class MulModel:
    kernel: str
    limbs: int
    numbers_per_warp: int
    per_step: Mix        # one limb-step (one limb of a times one multiplier word, plus reduction share)
    per_mul: Mix         # one whole multiplication, per warp (all the numbers the warp holds)

    def warp_cycles_per_number(self) -> float:
        return self.per_mul.cycles() / self.numbers_per_warp


def coop_model(L: int, tpi: int) -> MulModel:
    """The cooperative multiplication: the row loop (LPT rows per iteration, TPI iterations)
    plus the epilogue up to the fourth ballot (normalise and final subtraction)."""
    lpt = L // tpi
    funcs = sass_of("modexp_coop.cu", L)
    f = funcs[f"powmod_coop_{L}"]
    rows = None
    for lo, hi in f.loops():
        body = f.ops[lo : hi + 1]
        if body.count("SHFL.IDX") == 2 * lpt and body.count("SHFL.DOWN") == lpt:
            rows = (lo, hi)
            break
    if rows is None:
        raise RuntimeError(f"no multiplication row loop found in powmod_coop_{L}")
    lo, hi = rows
    row_loop = f.mix(lo, hi)
    # epilogue: from the loop exit through the 4th VOTE, then to the next branch or label
    end, votes = hi + 1, 0
    while end < len(f.ops) and votes < 4:
        votes += f.ops[end].startswith("VOTE")
        end += 1
    label_at = set(f.labels.values())
    while end < len(f.ops) and end not in label_at and "BRA" not in f.ops[end]:
        end += 1
    epilogue = f.mix(hi + 1, end - 1)
    per_mul = row_loop.scaled(tpi) + epilogue
    # a limb-step (one limb of a*b_i and one of m*u, as for the one-thread kernel): the row loop
    # per row per limb the lane holds
    per_step = row_loop.scaled(1.0 / (lpt * lpt))
    return MulModel(f"powmod_coop_{L}", L, 32 // tpi, per_step, per_mul)


def one_thread_model(L: int) -> MulModel:
    """Today's CIOS multiplication (one thread per number, mont_mul<L> is a called routine):
    two inner loops of 8 limb-steps per iteration (a*b_i and m*u), L/8 iterations, inside a
    loop over the L multiplier words; other loops (clear, subtract, select) run L/4 times."""
    funcs = sass_of("modexp.cu", L)
    name = next(n for n in funcs if "8mont_mulILi" in n)
    f = funcs[name]
    loops = f.loops()
    inner = [lp for lp in loops if not any(o != lp and lp[0] <= o[0] and o[1] <= lp[1] for o in loops)]
    outer = [lp for lp in loops if any(i != lp and lp[0] <= i[0] and i[1] <= lp[1] for i in inner)]
    if len(outer) != 1:
        raise RuntimeError(f"{name}: expected one row loop, found {outer}")
    o_lo, o_hi = outer[0]
    row_inner = [lp for lp in inner if o_lo <= lp[0] and lp[1] <= o_hi]
    others = [lp for lp in inner if lp not in row_inner]
    inner_mix = Mix()
    for lo, hi in row_inner:
        inner_mix = inner_mix + f.mix(lo, hi)
    row = inner_mix.scaled(L / 8)
    covered = sum(hi - lo + 1 for lo, hi in row_inner)
    row = row + f.mix(o_lo, o_hi).scaled((o_hi - o_lo + 1 - covered) / (o_hi - o_lo + 1))
    per_mul = row.scaled(L)
    straight = Mix()
    in_loop = set()
    for lo, hi in loops:
        in_loop.update(range(lo, hi + 1))
    for i, op in enumerate(f.ops):
        if i not in in_loop:
            straight.add(op)
    for lo, hi in others:
        per_mul = per_mul + f.mix(lo, hi).scaled(L / 4)
    per_mul = per_mul + straight  # one thread's stream: a warp runs it once for its 32 numbers
    per_step = inner_mix.scaled(1.0 / 8)       # a limb-step: one step of each of the two loops
    return MulModel(name.split("$")[1] if "$" in name else name, L, 32, per_step, per_mul)


# -- operations ---------------------------------------------------------------------------------------
def sliding_muls(ebits: int, w: int, entries: int) -> float:
    """Squarings + multiplications of a left-to-right sliding-window powmod (average exponent)."""
    return (ebits - 1) + ebits / (w + 1) + entries


def fixed_muls(ebits: int, w: int, entries: int) -> float:
    windows = math.ceil(ebits / w)
    return windows * w + windows + entries


def operations(kind: str) -> dict[str, list[tuple[int, float]]]:
    """op -> [(limbs, multiplications at that size)]"""
    n, half = KEY_BITS, KEY_BITS // 2
    if kind == "coop":
        pub = lambda e: sliding_muls(e, 4, 8) + 3  # noqa: E731 (R mod m, to and from Montgomery form)
        sec = lambda e: fixed_muls(e, 3, 7) + 3  # noqa: E731
    else:
        pub = lambda e: fixed_muls(e, 4, 15) + 2  # noqa: E731
        sec = pub
    L2, Lp2 = 2 * n // 32, n // 32
    return {
        "textbook encryption": [(L2, pub(n) + 2)],
        "CRT decryption": [(Lp2, 2 * sec(half) + 8)],
        "DJN encryption": [(L2, sec(half) + 2)],
        "x64-bit scalar": [(L2, pub(64) + 1)],
        "add": [(L2, 2)],
    }


def predict(models: dict[int, MulModel], kind: str) -> dict[str, float]:
    sub_partitions = SMS * SMSP_PER_SM
    out = {}
    for op, parts in operations(kind).items():
        cycles = sum(models[L].warp_cycles_per_number() * muls for L, muls in parts)
        out[op] = sub_partitions * CLOCK_HZ / cycles
    return out


def fmt_rate(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k"


def report(markdown: bool = True) -> str:
    from accel.gpu.build import COOP_TPI, nvrtc_version  # noqa: PLC0415

    sizes = (64, 128)
    one = {L: one_thread_model(L) for L in sizes}
    coop = {L: coop_model(L, COOP_TPI[L]) for L in sizes}
    lines = [f"Kernel model ({nvrtc_version()}, sm_90 SASS via nvdisasm; H100/H200: {SMS} SMs, "
             f"{CLOCK_HZ / 1e9:.2f} GHz). A MODEL, not a measurement.", ""]
    lines += ["| kernel | limbs | numbers/warp | warp instr per limb-step (per lane) | IMAD | ALU | shfl+vote | "
              "memory | warp instr per multiplication per number | cycles per mult. per number |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, ms in (("one thread", one), ("cooperative", coop)):
        for L in sizes:
            m = ms[L]
            s = m.per_step
            lines.append(f"| `{m.kernel}` ({label}) | {L} | {m.numbers_per_warp} | {s.total:.1f} | {s.fma:.1f} | "
                         f"{s.alu:.1f} | {s.lsu - s.mem:.1f} | {s.mem:.1f} | "
                         f"{m.per_mul.total / m.numbers_per_warp:,.0f} | {m.warp_cycles_per_number():,.0f} |")
    p_one, p_coop = predict(one, "one"), predict(coop, "coop")
    lines += ["", "| op (2048-bit key) | one thread per number | cooperative core | target (issue 15) | "
              "bound (anchors, H100) |", "|---|---:|---:|---:|---:|"]
    for op in TARGETS:
        lines.append(f"| {op} | {fmt_rate(p_one[op])}/s | {fmt_rate(p_coop[op])}/s | >= {fmt_rate(TARGETS[op])}/s "
                     f"| {BOUNDS[op]} |")
    # small batches: how much of one full wave a batch of 4,096 fills (encryption: mod n^2)
    warps_per_sm = 32  # 50% theoretical occupancy, as `he-accel kernels report` gives at 2048 bits
    wave_coop = SMS * warps_per_sm * (32 // COOP_TPI[128])
    wave_one = SMS * warps_per_sm * 32
    lines += ["", f"A batch of 4,096 at 2048-bit keys fills {min(1, 4096 / wave_coop):.0%} of one wave of the "
              f"cooperative kernels ({wave_coop:,} numbers at {warps_per_sm} warps per SM, TPI "
              f"{COOP_TPI[128]}) and {4096 / wave_one:.0%} of one wave of the one-thread kernels "
              f"({wave_one:,}), so by this model the cooperative core runs it at about "
              f"{min(1, 4096 / wave_coop):.0%} of its large-batch rate (issue 15: at least half)."]
    lines += ["", "Assumptions:", ASSUMPTIONS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    print(report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
