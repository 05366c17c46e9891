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
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SMS, CLOCK_HZ, SMSP_PER_SM = 132, 1.98e9, 4
KEY_BITS = 2048
#: assumed, not measured: L2 -> SM read bandwidth of an H100 SXM (published microbenchmarks give
#: 5.5-7 TB/s; the low end), shared-memory bandwidth 128 B per cycle per SM
L2_BYTES_PER_S = 5.5e12
SMEM_BYTES_PER_CYCLE_SM = 128
#: the cooperative kernels' block (HEA_COOP_BLOCK) and DJN comb (accel.backends.gpu.DJN_COMB_BITS)
COOP_BLOCK, DJN_COMB = 128, 8
#: inputs per group of the sum kernels (accel.backends.gpu.SUM_CHUNK)
SUM_CHUNK = 32
#: a cooperative low-half product (mul_low: the rows without the reduction) in multiplications
MUL_LOW = 0.6
#: elements per group of a batch-inversion prefix level (accel.gpu.launch.INVERSE_CHUNK)
INVERSE_CHUNK = 16
#: multiplications per inverted element by Montgomery's trick (kernels/inverse_coop.cu): one in
#: the prefix pass, two in the back pass, at every level (each 1/INVERSE_CHUNK of the one below)
INVERSE_MULS = 3 * INVERSE_CHUNK / (INVERSE_CHUNK - 1)


def public_table_entries(lpt: int, squaring: bool = True) -> int:
    """kernels/coop_mont.cuh coop_pub_entries: the most odd powers that keep 8 blocks of 128 in
    sm_90's 228 KB of shared memory (1 KB reserved per block) beside the squaring's copies (of
    the number and of one sum: 3 LPT + 1 limbs per thread, where the dedicated squaring runs)."""
    sqr = 4 * COOP_BLOCK * (3 * lpt + 1) if squaring and lpt <= 4 else 0  # coop_sqr_smem
    return max(8, min(16, (228 * 1024 // 8 - 1024 - sqr) // (4 * COOP_BLOCK * lpt)))

ASSUMPTIONS = """\
- Throughput-bound, latency fully hidden: each SM sub-partition (4 per SM) issues one warp
  instruction per cycle; per sub-partition the FMA pipe (IMAD*, 16 lanes) and the ALU pipe (IADD3,
  LOP3, SEL, ISETP, SHF, LEA, VIADD, MOV, ...) each take 2 cycles per warp instruction,
  IMAD.WIDE 4 (half rate); shuffles, votes and memory instructions 4 (32 lanes/cycle per SM).
  An instruction stream costs max(issue, FMA, ALU, LSU) cycles. Uniform-datapath (U*) and
  barrier/convergence instructions cost issue slots only.
- Memory, where modelled (the DJN comb): L2 -> SM read bandwidth 5.5 TB/s (the low end of
  published H100 microbenchmarks; not measured here), shared memory 128 B per cycle per SM.
- Local memory (LDL/STL of the one-thread kernels) hits L1: an upper bound for those kernels,
  whose 6-24 KB per-thread frames far exceed L1 at full occupancy (L2 traffic is not modelled).
- Counts come from the SASS of the multiplication loop of the powmod kernels as built by
  `he-accel kernels build` (sm_90), and per multiplication the epilogue (carry resolution,
  final subtraction) is added for the cooperative core, the loop prologues and the final
  subtract-select for the one-thread one. The cooperative core's dedicated squaring is read
  from the same powmod kernels: its block loop (TPI/2 - 1 iterations, the step before it
  counted as one more; the step after it is in the straight code that follows), the straight
  code up to the reduction loop (the last step, doubling, squares, carry assembly), the
  reduction loop (TPI iterations) and the epilogue through its six ballots; the one-thread
  kernels square with the multiplication.
- Operation mixes at 2048-bit keys (n^2: 4096 bits, 128 limbs; p^2: 2048 bits, 64 limbs):
  textbook encryption = r^n mod n^2 (2048-bit public exponent) + 2 multiplications;
  CRT decryption = 2 x c^(p-1) mod p^2 (1024-bit secret exponent, 64 limbs) + the reduction of c,
  L_p and Garner (one-thread: 8 multiplications; cooperative, as `paillier_decrypt_coop`: 3 + 2
  per half, 3 for Garner, and 3 low-half products, each counted as 0.6 of a multiplication);
  DJN encryption = hs^r mod n^2 with a 1024-bit secret r by the device-resident comb (one-thread
  `djn_encrypt`: 4-bit rows, 256 multiplications, its masked reads of 16 entries per row not
  counted; cooperative `djn_encrypt_coop`: 8-bit rows, 127 multiplications, plus per row the
  SASS of the constant-time read of all 256 entries from shared memory (trees of 8 bitwise
  selects, each kept by a multiply-add by its 0/1 bit) and of the block's copy of the
  row into it, checked against shared-memory bandwidth, and the whole bounded by the L2 traffic
  of the table: each block of 128 threads reads every row once, 16.8 MB per 4 encryptions at
  2048-bit keys, at the L2 bandwidth above) + 2; x64-bit scalar = c^k mod n^2, 64-bit public k;
  add = 2 multiplications mod n^2 (to Montgomery form, product); an add in a sum = one
  multiplication per input plus one per group of 32 (he_product's correction by R^g). In
  Montgomery form (MontgomeryArray, kernels/resident_coop.cu) an add is one multiplication
  (aR bR R^-1 = abR) and an add in a sum one (no correction); the conversions in and out (one
  multiplication each per ciphertext, once per chain) are not counted. The whole-kernel rows
  count the add kernels' SASS per element instead (loads, range checks, stores included).
  Windows: one-thread kernels 4-bit fixed (16-entry table), squarings at the cost of a
  multiplication; cooperative core: public exponents by fractional sliding windows of up to 5
  bits over E odd powers (E about one per 16 exponent bits, at most 10 at four limbs per lane:
  2048-bit n uses all 10), squarings and multiplications counted by running the kernel's window
  choice over 200 random exponents (fixed seed) and costed apart; secret exponents by 3-bit
  fixed windows (8 entries, the top window read into the accumulator), squarings by the
  dedicated squaring.
- A negative 64-bit scalar (cooperative): c^|k| as above, then the batch's results inverted
  together by Montgomery's trick (`he_inverse_prefix_coop`, `he_inverse_back_coop`: 1 + 2
  multiplications per element per level, 16 elements per group, so 3 x 16/15 = 3.2 per element)
  and one inversion of the batch's total on the host (per batch, not per element: left out like
  launches). The passes' extra memory traffic (2.5 KB per element at 2048-bit keys: read x twice
  and the prefix once, write the prefix and the result) would bound them at about 1.3G elements/s
  at 3.35 TB/s of HBM3, far above these rates: not a bound. The one-thread kernel's per-element
  binary-GCD inversion (data-dependent trip counts, divergent, `mod_inverse<128>` in local
  memory) is not modelled.
- The cooperative column applies the core to every operation; the kernel built on it is named
  in the last column.
- Device-resident batches large enough to fill every SM (the cooperative core needs
  132 x 32 warps x 32/TPI numbers, e.g. 4,224 numbers at TPI 32; the one-thread kernels need
  32 x that); no transfer, launch or host cost.
"""

# issue 15's targets and performance-anchors.md's first-principles H100 bounds (sqr=mul ... opt. sqr)
NEGATIVE_SCALAR = "x64-bit scalar, negative (batch inversion)"
TARGETS = {"textbook encryption": 70_000, "CRT decryption": 250_000, "DJN encryption": 1_000_000,
           "x64-bit scalar": 1_500_000, NEGATIVE_SCALAR: 1_500_000, "add": 100_000_000,
           "add in a sum (device-resident chain)": 100_000_000,
           "add, Montgomery form": 100_000_000, "add in a sum, Montgomery form": 100_000_000}
BOUNDS = {"textbook encryption": "108k ... 137k", "CRT decryption": "425k ... 539k",
          "DJN encryption": "212k ... 270k (generic); 1.0M / 2.0M (comb w=4/8)", "x64-bit scalar": "~3M",
          NEGATIVE_SCALAR: "~3M", "add": "255M (PCIe ~100M)", "add in a sum (device-resident chain)": "255M",
          "add, Montgomery form": "255M", "add in a sum, Montgomery form": "255M"}

#: the kernels on the cooperative core that run each operation (GpuBackend(cooperative=True))
COOP_KERNELS = {"textbook encryption": "`paillier_encrypt_coop`", "CRT decryption": "`paillier_decrypt_coop`",
                "DJN encryption": "`djn_encrypt_coop` (8-bit comb)", "x64-bit scalar": "`he_mul_scalar_coop` (k >= 0)",
                NEGATIVE_SCALAR: "`he_mul_scalar_coop`, `he_inverse_prefix_coop`, `he_inverse_back_coop`",
                "add": "`he_add_coop`", "add in a sum (device-resident chain)": "`he_product_coop`",
                "add, Montgomery form": "`he_add_mont_coop` (MontgomeryArray)",
                "add in a sum, Montgomery form": "`he_product_mont_coop` (MontgomeryArray)"}
#: whole kernels counted from their SASS per element (see whole_kernel): (file, kernel family)
WHOLE_KERNELS = (("homomorphic_coop.cu", "he_add_coop"), ("resident_coop.cu", "he_add_mont_coop"))

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
    per_sqr: Mix | None = None  # a dedicated squaring, per warp (None: squarings run per_mul)
    sqr_parts: dict = field(default_factory=dict)  # the squaring's pieces, per warp, for the table

    def warp_cycles_per_number(self) -> float:
        return self.per_mul.cycles() / self.numbers_per_warp

    def warp_cycles_per_square(self) -> float:
        return (self.per_sqr or self.per_mul).cycles() / self.numbers_per_warp


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
    per_sqr, parts = coop_sqr_model(f, lpt, tpi)
    return MulModel(f"powmod_coop_{L}", L, 32 // tpi, per_step, per_mul, per_sqr, parts)


def _straight_to_votes(f: Function, start: int, votes_wanted: int) -> int:
    """Index after the instruction stream from `start` through its `votes_wanted`-th VOTE, then
    on to the next branch or label."""
    end, votes = start, 0
    while end < len(f.ops) and votes < votes_wanted:
        votes += f.ops[end].startswith("VOTE")
        end += 1
    label_at = set(f.labels.values())
    while end < len(f.ops) and end not in label_at and "BRA" not in f.ops[end]:
        end += 1
    return end


def coop_sqr_model(f: Function, lpt: int, tpi: int) -> tuple[Mix | None, dict]:
    """The dedicated squaring (mont_sqr_blocks), if the kernel has one: the block loop (TPI/2 + 1
    steps: two slices read from shared memory, 2 LPT loads; the position-l copy stored), the
    carry assembly up to the reduction loop, the reduction loop (TPI iterations of LPT rows:
    one broadcast and one shift each) and the epilogue (normalise, add P_hi, the final
    subtraction: six ballots). None where squarings run the multiplication (HEA_COOP_SQR=0)."""
    loops = f.loops()
    def count(lo: int, hi: int, prefix: str) -> int:
        return sum(o.startswith(prefix) for o in f.ops[lo:hi + 1])

    block = next(((lo, hi) for lo, hi in loops if count(lo, hi, "LDS") == 2 * lpt and count(lo, hi, "SHFL") == 0
                  and count(lo, hi, "STS") == 2 * lpt + 1), None)
    if block is None:
        return None, {}
    reduce = next(((lo, hi) for lo, hi in loops if lo > block[1]
                   and f.ops[lo:hi + 1].count("SHFL.IDX") == lpt and f.ops[lo:hi + 1].count("SHFL.DOWN") == lpt), None)
    if reduce is None:
        raise RuntimeError(f"{f.name}: a squaring block loop but no reduction loop after it")
    if any(block[1] < lo and hi < reduce[0] for lo, hi in loops):
        raise RuntimeError(f"{f.name}: a loop between the squaring's block and reduction loops")
    # the loop runs steps 1 .. TPI/2 - 1; step 0 (before it) is counted as one more iteration,
    # step TPI/2 (after it) is in the carry assembly's straight code
    parts = {
        "block steps": f.mix(*block).scaled(tpi // 2),
        "carry assembly": f.mix(block[1] + 1, reduce[0] - 1),
        "reduction rows": f.mix(*reduce).scaled(tpi),
        "epilogue": f.mix(reduce[1] + 1, _straight_to_votes(f, reduce[1] + 1, 6) - 1),
    }
    total = Mix()
    for m in parts.values():
        total = total + m
    parts["block step"] = f.mix(*block)
    parts["reduction loop iteration"] = f.mix(*reduce)
    return total, parts


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
def fixed_muls(ebits: int, w: int, entries: int) -> float:
    windows = math.ceil(ebits / w)
    return windows * w + windows + entries


def secret_counts(ebits: int, w: int, table_muls: int) -> tuple[float, float]:
    """(squarings, multiplications) of the cooperative pow_secret: the top window is a masked
    read, every other window w squarings and a multiplication."""
    windows = math.ceil(ebits / w) - 1
    return windows * w, windows + table_muls


def public_entries(ebits: int, most: int) -> int:
    """kernels/coop_mont.cuh pub_entries_for: about one table entry per 16 exponent bits."""
    return max(2, min(most, ebits >> 4))


def public_counts(ebits: int, most: int, trials: int = 200) -> tuple[float, float]:
    """(squarings, multiplications) of the cooperative pow_public, averaged over random exponents
    of `ebits` bits (top bit set; a fixed seed): its table (one squaring, E - 1 products) and
    its fractional sliding windows (odd digits up to 2E - 1, at most 5 bits), as the kernel
    chooses them."""
    entries = public_entries(ebits, most)
    max_digit = 2 * entries - 1
    rng = random.Random(ebits * 1000 + most)
    sq = mul = 0
    for _ in range(trials):
        e = rng.getrandbits(ebits) | (1 << (ebits - 1))
        i, started = ebits - 1, False
        while i >= 0:
            if not (e >> i) & 1:
                sq += started
                i -= 1
                continue
            lo = max(0, i - 4)
            while not (e >> lo) & 1:
                lo += 1
            d = (e >> lo) & ((1 << (i - lo + 1)) - 1)
            while d > max_digit:
                d >>= 1
                lo += 1
                while not d & 1:
                    d >>= 1
                    lo += 1
            if started:
                sq += i - lo + 1
                mul += 1
            started = True
            i = lo - 1
    return 1 + sq / trials, entries - 1 + mul / trials


def operations(kind: str) -> dict[str, list[tuple[int, float, float]]]:
    """op -> [(limbs, multiplications, squarings at that size)]; DJN's cooperative comb is
    modelled apart (djn_comb_model)."""
    n, half = KEY_BITS, KEY_BITS // 2
    L2, Lp2 = 2 * n // 32, n // 32
    if kind == "coop":
        from accel.gpu.build import COOP_TPI  # noqa: PLC0415

        most = public_table_entries(L2 // COOP_TPI[L2])

        def pub(e: int, extra: float) -> tuple[float, float]:
            sq, mul = public_counts(e, most)
            return mul + extra, sq

        # paillier_encrypt_coop: R mod m, r to Montgomery form, r^n, m n as a low-half product,
        # the product by 1 + m n
        textbook = pub(n, 3 + MUL_LOW)
        # he_mul_scalar_coop: R mod m, to and from Montgomery form
        scalar = pub(64, 3)
        # decrypt_coop: per half c mod p^2 (3), the power (6 table products), out of Montgomery
        # form, L_p (a low-half product) and the product by hp (1); Garner: 3 and a low product
        sq, mul = secret_counts(half, 3, 6)
        dec = (2 * (3 + mul + 1 + MUL_LOW + 1) + 3 + MUL_LOW, 2 * sq)
        djn = (0.0, 0.0)  # replaced by djn_comb_model
    else:
        def pub1(e: int) -> tuple[float, float]:
            return fixed_muls(e, 4, 15) + 2, 0.0  # squarings run the multiplication: counted in it

        textbook = (pub1(n)[0] + 2, 0.0)
        scalar = (pub1(64)[0] + 1, 0.0)
        dec = (2 * pub1(half)[0] + 8, 0.0)
        djn = (-(-half // 4) + 2, 0.0)  # djn_encrypt: 4-bit comb rows, one multiplication each
    return {
        "textbook encryption": [(L2, *textbook)],
        "CRT decryption": [(Lp2, *dec)],
        "DJN encryption": [(L2, *djn)],
        "x64-bit scalar": [(L2, *scalar)],
        # then Montgomery's trick over the batch; one-thread: a per-element binary GCD (not
        # modelled: data-dependent and divergent)
        NEGATIVE_SCALAR: [(L2, scalar[0] + INVERSE_MULS, scalar[1])] if kind == "coop" else [],
        "add": [(L2, 2, 0.0)],
        # raw_sum's tree: SUM_CHUNK inputs per group, SUM_CHUNK - 1 products and one by R^g
        "add in a sum (device-resident chain)": [(L2, SUM_CHUNK / (SUM_CHUNK - 1), 0.0)],
        # ciphertexts kept as c R mod n^2 (kernels/resident_coop.cu; cooperative kernels only):
        # aR bR R^-1 = abR, and a sum's products need no correction by R^g
        "add, Montgomery form": [(L2, 1, 0.0)] if kind == "coop" else [],
        "add in a sum, Montgomery form": [(L2, 1, 0.0)] if kind == "coop" else [],
    }


@dataclass
class CombModel:
    """djn_encrypt_coop per encryption at 2048-bit keys (see ASSUMPTIONS)."""
    rows: int
    entries: int
    pick_per_entry: Mix     # masked read of one staged entry, per warp
    stage_per_piece: Mix    # one 16-byte piece of the block's copy, per warp
    cycles_per_enc: float   # per sub-partition, per number
    smem_cycles_per_enc: float
    l2_bytes_per_enc: float

    def rate(self) -> float:
        compute = SMS * SMSP_PER_SM * CLOCK_HZ / max(self.cycles_per_enc, self.smem_cycles_per_enc)
        return min(compute, L2_BYTES_PER_S / self.l2_bytes_per_enc)


def _innermost(f: Function, need: tuple[str, ...], avoid: tuple[str, ...]) -> tuple[int, int]:
    """The smallest loop whose body has an instruction starting with each of `need` and none
    starting with any of `avoid`."""
    found = []
    for lo, hi in f.loops():
        body = f.ops[lo : hi + 1]
        if all(any(o.startswith(p) for o in body) for p in need) and not any(
                o.startswith(p) for o in body for p in avoid):
            found.append((hi - lo, lo, hi))
    if not found:
        raise RuntimeError(f"{f.name}: no loop with {need} and without {avoid}")
    _, lo, hi = min(found)
    return lo, hi


def djn_comb_model(mul: MulModel, tpi: int, comb: int = DJN_COMB) -> CombModel:
    lp = KEY_BITS // 32
    L = 2 * lp
    f = sass_of("djn_coop.cu", lp)[f"djn_encrypt_coop_{lp}"]
    # the tree loop (DJN_TREE entries per iteration, bitwise selects; the per-entry loop beside
    # it only runs for rows of fewer entries, comb < 3)
    lo, hi = _innermost(f, ("LDS", "LOP3"), ("SHFL", "BAR", "LDG", "STS"))
    pick = f.mix(lo, hi)
    lds = sum(n for op, n in pick.ops.items() if op.startswith("LDS"))
    per_lds = 4 if any(op.startswith("LDS.128") for op in pick.ops) else 1  # limbs per load
    entries_per_iter = lds * per_lds / (L // tpi)
    lo, hi = _innermost(f, ("LDG", "STS"), ("SHFL", "BAR"))
    stage = f.mix(lo, hi)
    pieces_per_iter = sum(n for op, n in stage.ops.items() if op.startswith("STS"))
    entries = 1 << comb
    rows = -(-(KEY_BITS // 2) // comb)
    npw = 32 // tpi                       # numbers per warp
    per_block = COOP_BLOCK // tpi         # numbers per block, sharing one copy of each row
    pick_e = pick.scaled(1 / entries_per_iter)
    stage_p = stage.scaled(1 / pieces_per_iter)
    pieces_per_thread = entries * L / 4 / COOP_BLOCK
    per_row = pick_e.scaled(entries / npw) + stage_p.scaled(pieces_per_thread / npw)
    per_enc = per_row.scaled(rows) + mul.per_mul.scaled((rows - 1 + 2) / npw)
    row_bytes = entries * L * 4
    smem_bytes = rows * (row_bytes + row_bytes / per_block)  # every group reads; the block writes once
    smem_cycles = smem_bytes / (SMEM_BYTES_PER_CYCLE_SM / SMSP_PER_SM)
    return CombModel(rows, entries, pick_e, stage_p, per_enc.cycles(), smem_cycles, rows * row_bytes / per_block)


def whole_kernel(file: str, kernel: str, tpi: int) -> tuple[Mix, int]:
    """A cooperative kernel's instructions per element at 2048-bit keys (mod n^2: L = 128 limbs),
    from its SASS: each multiplication row loop (found as in coop_model) TPI times, and every
    other instruction of the kernel once (its prologue and error paths included, so an upper
    bound on the loads, range checks, stores and multiplication epilogues of one element).
    Returns (that mix, the number of multiplications: row loops)."""
    lp = KEY_BITS // 32
    lpt = 2 * lp // tpi
    f = sass_of(file, lp)[f"{kernel}_{lp}"]
    rows = [(lo, hi) for lo, hi in f.loops()
            if f.ops[lo : hi + 1].count("SHFL.IDX") == 2 * lpt and f.ops[lo : hi + 1].count("SHFL.DOWN") == lpt
            and not any(o.startswith("VOTE") for o in f.ops[lo : hi + 1])]
    if not rows:
        raise RuntimeError(f"no multiplication row loop found in {kernel}_{lp}")
    per_element, in_rows = Mix(), set()
    for lo, hi in rows:
        per_element = per_element + f.mix(lo, hi).scaled(tpi)
        in_rows.update(range(lo, hi + 1))
    for i, op in enumerate(f.ops):
        if i not in in_rows:
            per_element.add(op)
    return per_element, len(rows)


def predict(models: dict[int, MulModel], kind: str) -> dict[str, float]:
    sub_partitions = SMS * SMSP_PER_SM
    out = {}
    for op, parts in operations(kind).items():
        cycles = sum(models[L].warp_cycles_per_number() * muls + models[L].warp_cycles_per_square() * sqrs
                     for L, muls, sqrs in parts)
        out[op] = sub_partitions * CLOCK_HZ / cycles if cycles else math.nan  # nan: modelled apart
    return out


def fmt_rate(x: float) -> str:
    if math.isnan(x):
        return "not modelled"
    return f"{x / 1e6:.2f}M/s" if x >= 1e6 else f"{x / 1e3:.1f}k/s"


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
    lines += ["", "Squaring (cooperative core): warp instructions per number, from the SASS of the same kernels.", "",
              "| kernel | multiplication | squaring | squaring / multiplication (cycles) | block steps | "
              "carry assembly | reduction rows | epilogue | one block step | one reduction iteration (LPT rows) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for L in sizes:
        m = coop[L]
        if m.per_sqr is None:
            lines.append(f"| `{m.kernel}` | {m.per_mul.total / m.numbers_per_warp:,.0f} | (the multiplication) | 1.00 "
                         "| | | | | | |")
            continue
        per = {k: v.total / m.numbers_per_warp for k, v in m.sqr_parts.items()}
        lines.append(f"| `{m.kernel}` | {m.per_mul.total / m.numbers_per_warp:,.0f} | "
                     f"{m.per_sqr.total / m.numbers_per_warp:,.0f} | "
                     f"{m.warp_cycles_per_square() / m.warp_cycles_per_number():.2f} | {per['block steps']:,.0f} | "
                     f"{per['carry assembly']:,.0f} | {per['reduction rows']:,.0f} | {per['epilogue']:,.0f} | "
                     f"{m.sqr_parts['block step'].total:,.0f} | {m.sqr_parts['reduction loop iteration'].total:,.0f} |")
    p_one, p_coop = predict(one, "one"), predict(coop, "coop")
    comb = djn_comb_model(coop[128], COOP_TPI[128])
    p_coop["DJN encryption"] = comb.rate()
    lines += ["", f"DJN comb (`djn_encrypt_coop_64`, {comb.entries}-entry rows, {comb.rows} rows): per entry "
              f"{comb.pick_per_entry.total:.2f} warp instructions for the masked read, per 16-byte piece "
              f"{comb.stage_per_piece.total:.2f} for the block's copy; per encryption "
              f"{comb.cycles_per_enc:,.0f} issue cycles per number against {comb.smem_cycles_per_enc:,.0f} of "
              f"shared-memory bandwidth, {comb.l2_bytes_per_enc / 1e6:.1f} MB of L2 reads "
              f"(L2 bound {fmt_rate(L2_BYTES_PER_S / comb.l2_bytes_per_enc)} at "
              f"{L2_BYTES_PER_S / 1e12:.1f} TB/s)."]
    lines += ["", "| op (2048-bit key) | one thread per number | cooperative core | target (issue 15) | "
              "bound (anchors, H100) | cooperative kernel |", "|---|---:|---:|---:|---:|---|"]
    for op in TARGETS:
        lines.append(f"| {op} | {fmt_rate(p_one[op])} | {fmt_rate(p_coop[op])} | >= {fmt_rate(TARGETS[op])} "
                     f"| {BOUNDS[op]} | {COOP_KERNELS[op]} |")
    tpi = COOP_TPI[128]
    lines += ["", "Whole kernels per element (2048-bit keys, TPI " + str(tpi) + ": the multiplication rows TPI times, "
              "every other instruction of the kernel once, prologue and error paths included):", "",
              "| kernel | multiplications | warp instr per element per number | cycles per element per number | "
              "predicted |", "|---|---:|---:|---:|---:|"]
    for file, family in WHOLE_KERNELS:
        m, muls = whole_kernel(file, family, tpi)
        npw = 32 // tpi
        cycles = m.cycles() / npw
        lines.append(f"| `{family}_64` | {muls} | {m.total / npw:,.0f} | {cycles:,.0f} | "
                     f"{fmt_rate(SMS * SMSP_PER_SM * CLOCK_HZ / cycles)} |")
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
