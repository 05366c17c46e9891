"""The benchmark suite: ops x key sizes x batch sizes x backends, peers in the same run.

    he-accel bench --suite --backends cpu gpu --peers all --bits 1024 2048 --batch 256 1024 4096 \
        --json bench/results/suite.json --plot bench/plots

For every key size one key pair is generated and one input set per batch size (63-bit
plaintexts, signed 62-bit scalars, a signed 31-bit matrix of 8 columns); our backends and every
peer get the same inputs (python-paillier even the same key). Each measurement warms up, then
times ``repeats`` runs: the figure is the median, min and max are kept. A sample of every
measured batch is decrypted and checked (a fast wrong answer stops the run). A combination
whose time, extrapolated from the same op at a smaller batch, would exceed ``--time-budget`` is
skipped and reported as such, so that one command stays runnable on a 2-core machine.

Peers that are not installed are reported, never silently dropped. ``--derive-peers FILE``
adds figures scaled from per-core peer measurements taken elsewhere (the GPU machine's Python
3.12 has no fate_utils or HEU wheels), labelled ``derived``.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from accel import generate_keypair

from . import bounds
from . import ops as bench_ops
from .ops import ALL_OPS, PACKED_OPS, BenchCheckError, Measurement, cpu_name, device_name, git_commit, run_ops, timed
from .peers import PEER_OPS, PEERS, Inputs, PeerUnavailable, load

SUITE_OPS = ["keygen", "encrypt", "encrypt_crt", "encrypt_djn", "decrypt", "add", "add_plain", "mul", "sum",
             "matvec", "rerandomize"]
PER_KEY_OPS = {"keygen"}  # measured once per key size, not per batch


class BenchOptionError(ValueError):
    """Options that cannot be measured together (e.g. --clock cpu with a process pool)."""


@dataclass
class Target:
    """One column of the comparison: one of our backends, or a peer."""

    name: str                 # cpu, cpu:1, gpu, remote, phe, fate_utils, heu
    kind: str                 # ours | peer
    make: Callable[[], Any]
    obj: Any = None
    skipped: str = ""         # why it could not run
    rates: dict = field(default_factory=dict)  # (op, bits) -> [(batch, ops_per_s)], for the budget
    over_budget: dict = field(default_factory=dict)  # (op, bits) -> the smallest batch skipped


def _our_backend(spec: str, target: str | None, stack: contextlib.ExitStack):
    """cpu, cpu:N, cpu:N:gmpy2 (without the native engine), cpu:N:mpn (the native engine's portable
    DJN path, no AVX-512 IFMA), cpu:N:ctypes (the native engine without its int extension: lists
    packed to bytes), gpu, auto, remote (at ``target``), or remote:BACKEND: a ``he-accel serve``
    on BACKEND started here for the run."""
    from accel import CpuBackend, get_backend
    name, _, arg = spec.partition(":")
    if name == "cpu":
        arg, _, engine = arg.partition(":")
        if engine not in ("", "gmpy2", "native", "mpn", "ctypes"):
            raise ValueError(f"cpu:N:ENGINE takes gmpy2, native, mpn or ctypes, got {engine!r}")
        native = {"": None, "gmpy2": False, "native": True, "mpn": True, "ctypes": True}[engine]
        return CpuBackend(workers=int(arg) if arg else None, native=native,
                          djn_engine="mpn" if engine == "mpn" else None, native_ints=engine != "ctypes")
    if name == "remote":
        if not target:
            from .service_demo import running_server, wait_healthy
            _proc, port, _m = stack.enter_context(running_server("--backend", arg or "auto"))
            target = f"127.0.0.1:{port}"
            wait_healthy(target)
        return get_backend("remote", target=target)
    return get_backend(name)


def _label(t: Target) -> str:
    if t.kind == "peer":
        return t.name
    be = t.obj
    if be is not None and be.name == "cpu":
        engine = t.name.rpartition(":")[2] if t.name.count(":") == 2 else ""
        return f"cpu x{be.workers}" + (f" {engine}" if engine in ("gmpy2", "mpn", "ctypes") else "")
    return "remote" if t.name.startswith("remote") else t.name


#: How an op's cost per element grows with the key size, to estimate a key size not measured
#: yet from a smaller one: an exponentiation ~ bits^3 (exponent length x a multiplication),
#: a multiplication mod n^2 ~ bits^2. gmpy2 multiplies below schoolbook cost at these sizes, so
#: the estimate errs high. Keygen (a prime search, one at a time) is never skipped.
_COST_POWER = {"add": 2, "add_plain": 2, "sum": 2, "add_packed": 2, "add_plain_packed": 2, "sum_packed": 2}


def _estimate(t: Target, op: str, bits: int, batch: int, repeats: int, per_row: int = 1) -> float | None:
    """Seconds that warm-up + ``repeats`` runs of ``op`` at (bits, batch) would take on ``t``,
    from its rate at a smaller batch of the same key size, else at the largest smaller key size;
    None when nothing comparable was measured. ``per_row``: elements per batch row (matvec's
    rate counts element products)."""
    if op == "keygen":
        return None
    prior = [(b, r) for b, r in t.rates.get((op, bits), []) if b < batch]
    if prior:
        _b, rate = max(prior)
    else:
        smaller = [(kb, b, r) for (o, kb), rs in t.rates.items() if o == op and kb < bits for b, r in rs]
        if not smaller:
            return None
        kb, _b, rate = max(smaller)
        rate *= (kb / bits) ** _COST_POWER.get(op, 3)
    return batch * per_row / rate * (repeats + 1) if rate > 0 else None


def _over_budget(t: Target, op: str, bits: int, batch: int, repeats: int, per_row: int,
                 budget: float) -> str | None:
    """Why (op, bits, batch) is skipped on ``t``, or None to measure it. Once a batch is over
    budget every larger one is too, measured rate or not."""
    first = t.over_budget.get((op, bits))
    if first is not None and batch >= first:
        return f"batch {first} was already over the budget {budget:.3g} s"
    est = _estimate(t, op, bits, batch, repeats, per_row)
    if est is None or est <= budget:
        return None
    t.over_budget[(op, bits)] = batch
    return f"~{est:.3g} s > budget {budget:.3g} s"


def _record(m: Measurement, *, device: str, backend: str, kind: str, bits: int, threads: Any, note: str,
            peak: dict | None, common: dict) -> dict[str, Any]:
    rec = {"device": device, "backend": backend, "op": m.op, "key_bits": bits, "batch": m.rows or m.batch,
           "ops_per_s": round(m.ops_per_s, 3), **common,
           "min_ops_per_s": round(m.min_ops_per_s, 3), "max_ops_per_s": round(m.max_ops_per_s, 3),
           "kind": kind, "threads": threads, "note": note or m.note}
    bound = bounds.bound_ops_per_s(peak, m.op, bits)
    if bound:
        rec["bound_ops_per_s"] = round(bound, 1)
        rec["fraction_of_bound"] = round(m.ops_per_s / bound, 4)
    return rec


def run_suite(*, backends: list[str], peers: list[str], ops: list[str], bits_list: list[int],
              batches: list[int], repeats: int, time_budget: float, target: str | None = None,
              peer_max_batch: int = 4096, progress: bool = True, log=print, clock: str = "wall") -> dict[str, Any]:
    """Measure; returns {"records": [...], "missing": {target: why}, "skipped": [...]}.

    ``clock="cpu"`` times by this process's CPU time: per-core rates on a loaded machine, for
    in-process targets only (``cpu:1`` and the peers; a pool's workers are other processes)."""
    if clock == "cpu":
        for b in backends:
            if not (b.startswith("cpu:1") and b.split(":")[1] == "1"):
                raise BenchOptionError(f"clock 'cpu' measures one process: use cpu:1 targets only, not {b!r}")
    bench_ops.use_clock(clock)
    common = {"commit": git_commit(), "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "command": " ".join(shlex.quote(a) for a in ["he-accel", *sys.argv[1:]]), "clock": clock,
              "load_avg_1m": round(os.getloadavg()[0], 2)}
    stack = contextlib.ExitStack()  # servers started for remote:BACKEND, stopped at the end
    targets = [Target(b, "ours", (lambda b=b: _our_backend(b, target, stack))) for b in backends]
    missing: dict[str, str] = {}
    for t in targets:
        try:
            t.obj = t.make()
        except Exception as e:  # noqa: BLE001 - an absent GPU or endpoint is a finding, not a crash
            t.skipped = f"{type(e).__name__}: {e}"
            missing[t.name] = t.skipped
    targets = [t for t in targets if not t.skipped]
    peer_names = list(peers)
    skipped: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []

    steps = len(bits_list) * len(batches) * (len(targets) * len(ops) + len(peer_names) * len(ops))
    try:
        from tqdm import tqdm
        bar = tqdm(total=steps, desc="bench", unit="step", disable=not progress, file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is in the bench extra
        bar = None

    def tick(desc: str) -> None:
        if bar is not None:
            bar.set_postfix_str(desc, refresh=False)
            bar.update(1)

    peaks = {t.name: bounds.device_peak(t.obj) for t in targets}
    peer_targets: dict[str, Target] = {}  # per-peer rates, for the time budget
    try:
        for bits in bits_list:
            keys = generate_keypair(bits)
            peer_objs: dict[str, Any] = {}
            for name in peer_names:
                if name in missing:
                    continue
                try:
                    peer_objs[name] = load(name, bits, keys)
                except PeerUnavailable as e:
                    missing[name] = str(e)
            # the unit: single-core gmpy2 powmod(r, n, n^2), what textbook encryption costs
            unit = run_ops(targets[0].obj if targets else None, bits, 200, repeats, ["powmod_1core"], keys=keys) \
                if targets else []
            for m in unit:
                records.append(_record(m, device=f"{cpu_name()} (1 core)", backend="gmpy2-1core", kind="unit",
                                       bits=bits, threads=1, note=m.note, peak=None, common=common))
            for bi, batch in enumerate(batches):
                inputs = Inputs.random(batch)
                prepared: dict = {}  # the inputs encrypted once for every target
                for t in targets:
                    for op in ops:
                        tick(f"{bits} {batch} {t.name} {op}")
                        if op in PER_KEY_OPS and bi > 0:
                            continue
                        why = _over_budget(t, op, bits, batch, repeats, inputs.cols if op == "matvec" else 1,
                                           time_budget)
                        if why:
                            skipped.append({"backend": _label(t), "op": op, "key_bits": bits, "batch": batch,
                                            "why": why})
                            continue
                        ms = run_ops(t.obj, bits, batch, repeats, [op], keys=keys, inputs=inputs, prepared=prepared)
                        for m in ms:
                            t.rates.setdefault((op, bits), []).append((m.rows or m.batch, m.ops_per_s))
                            records.append(_record(m, device=device_name(t.obj), backend=_label(t), kind="ours",
                                                   bits=bits, threads=getattr(t.obj, "workers", None), note=m.note,
                                                   peak=peaks.get(t.name), common=common))
                for name, peer in peer_objs.items():
                    pt = peer_targets.setdefault(name, Target(name, "peer", lambda: None))
                    for op in ops:
                        tick(f"{bits} {batch} {name} {op}")
                        peer_op = PACKED_OPS.get(op, op)  # a peer's own vectors are its packed form
                        if peer_op not in PEER_OPS or (op in PER_KEY_OPS and bi > 0):
                            continue
                        pb = min(batch, peer_max_batch)
                        skipped_at = pt.over_budget.get((op, bits))
                        if pb < batch and ((skipped_at is not None and skipped_at <= pb) or any(
                                r["backend"] == name and r["op"] == op and r["key_bits"] == bits
                                and r["batch"] == pb for r in records)):
                            continue  # already measured, or already reported skipped, at the cap
                        why = _over_budget(pt, op, bits, pb, repeats, inputs.cols if op == "matvec" else 1,
                                           time_budget)
                        if why:
                            skipped.append({"backend": name, "op": op, "key_bits": bits, "batch": pb, "why": why})
                            continue
                        got = peer.op(peer_op, inputs.head(pb))
                        if got is None:
                            continue
                        fn, verify = got
                        fn()  # warm-up
                        times, out = timed(fn, repeats)
                        verify(out)
                        count = 1 if op == "keygen" else pb * (inputs.cols if op == "matvec" else 1)
                        m = Measurement(op, count, times, rows=pb if op == "matvec" else 0)
                        pt.rates.setdefault((op, bits), []).append((pb, m.ops_per_s))
                        note = f"{peer.label} {peer.version()}".strip() + (
                            f"; its {peer_op} on its own vectors" if op in PACKED_OPS else "")
                        records.append(_record(m, device=f"{cpu_name()}", backend=name, kind="peer", bits=bits,
                                               threads=peer.threads, note=note, peak=None, common=common))
    finally:
        bench_ops.use_clock("wall")
        if bar is not None:
            bar.close()
        for t in targets:
            if t.obj is not None and hasattr(t.obj, "close"):
                t.obj.close()
        stack.close()
    return {"records": records, "missing": missing, "skipped": skipped}


def derive_peers(path: str, cores: int | None = None) -> list[dict[str, Any]]:
    """Per-core peer figures from ``path`` (records measured elsewhere, threads == 1), scaled to
    this machine's cores and labelled derived: an estimate, never a measurement."""
    cores = cores or os.cpu_count() or 1
    out = []
    for r in json.loads(Path(path).read_text()):
        if r.get("kind") != "peer" or r.get("threads") != 1:
            continue
        d = dict(r)
        d.update({"backend": f"{r['backend']} x{cores} (derived)", "kind": "derived",
                  "ops_per_s": round(r["ops_per_s"] * cores, 3),
                  "min_ops_per_s": round(r["min_ops_per_s"] * cores, 3),
                  "max_ops_per_s": round(r["max_ops_per_s"] * cores, 3), "threads": cores,
                  "note": (f"DERIVED: 1-core figure measured on {r['device']} ({r['date'][:10]}, "
                           f"{r['commit']}) x {cores} cores, assuming linear scaling")})
        out.append(d)
    return out


def _baseline(records: list[dict], op: str, bits: int, prefer: str) -> tuple[str, float] | None:
    """The baseline's best ops/s for (op, bits): ``prefer`` (phe by default), else our cpu."""
    for name in (prefer, "phe", "cpu"):
        rows = [r for r in records if r["op"] == op and r["key_bits"] == bits and
                (r["backend"] == name or r["backend"].startswith(name + " x")) and r["kind"] != "derived"]
        if rows:
            best = max(rows, key=lambda r: r["batch"])
            return best["backend"], best["ops_per_s"]
    return None


def table(result: dict[str, Any], baseline: str = "phe") -> str:
    recs = [r for r in result["records"] if r["kind"] != "unit"]
    units = {r["key_bits"]: r["ops_per_s"] for r in result["records"] if r["kind"] == "unit"}
    lines = []
    for bits in sorted({r["key_bits"] for r in recs}):
        unit = units.get(bits)
        lines.append(f"\n== {bits}-bit key" + (f"  (unit: 1-core gmpy2 powmod(r, n, n^2) = {unit:,.1f}/s)"
                                              if unit else ""))
        lines.append(f"{'op':<17}{'backend':<26}{'batch':>7}{'ops/s':>14}{'min':>13}{'max':>13}"
                     f"{'x base':>9}{'x unit':>8}{'% bound':>9}")
        order = SUITE_OPS + [o for o in ALL_OPS if o not in SUITE_OPS]
        for op in [o for o in order if any(r["op"] == o and r["key_bits"] == bits for r in recs)]:
            base = _baseline(recs, op, bits, baseline)
            rows = sorted((r for r in recs if r["op"] == op and r["key_bits"] == bits),
                          key=lambda r: (r["kind"] != "ours", r["backend"], r["batch"]))
            for r in rows:
                xb = f"{r['ops_per_s'] / base[1]:.2f}" if base else "-"
                xu = f"{r['ops_per_s'] / unit:.2f}" if unit and op != "keygen" else "-"
                fb = f"{100 * r['fraction_of_bound']:.1f}" if "fraction_of_bound" in r else "-"
                lines.append(f"{op:<17}{r['backend'][:25]:<26}{r['batch']:>7}{r['ops_per_s']:>14,.1f}"
                             f"{r['min_ops_per_s']:>13,.1f}{r['max_ops_per_s']:>13,.1f}{xb:>9}{xu:>8}{fb:>9}")
            if base:
                lines.append(f"{'':<17}(x base = against {base[0]} at its largest batch)")
    lines.append("")
    by = {(r["key_bits"], r["op"], r["backend"]): r["ops_per_s"] for r in recs if r["kind"] == "ours"}
    for (bits, op, be), rate in sorted(by.items()):
        if op == "encrypt" and units.get(bits):
            lines.append(f"{bits}: {be} encrypt = {rate / units[bits]:.2f} x single-core powmod(r, n, n^2)")
        if op == "decrypt" and (bits, "decrypt_nocrt", be) in by:
            lines.append(f"{bits}: {be} CRT decrypt = {rate / by[(bits, 'decrypt_nocrt', be)]:.2f} x non-CRT decrypt")
    if result.get("missing"):
        lines.append("\nnot measured (reported, not hidden):")
        for name, why in result["missing"].items():
            lines.append(f"  {name}: {why}")
    if result.get("skipped"):
        lines.append(f"\nskipped over the time budget: {len(result['skipped'])} combinations, e.g. "
                     + "; ".join(f"{s['backend']} {s['op']} {s['key_bits']}b x{s['batch']}"
                                 for s in result["skipped"][:6]))
    return "\n".join(lines)


def plot(result: dict[str, Any], outdir: str, baseline: str = "phe") -> list[str]:
    """PNG charts: throughput against batch size per backend (one figure per key size, one panel
    per op), and speed-up bars against the baseline at each target's largest batch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    recs = [r for r in result["records"] if r["kind"] != "unit"]
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {be: palette[i % len(palette)] for i, be in enumerate(sorted({r["backend"] for r in recs}))}
    written = []
    for bits in sorted({r["key_bits"] for r in recs}):
        ops = [o for o in SUITE_OPS if any(r["op"] == o and r["key_bits"] == bits and o != "keygen" for r in recs)]
        if not ops:
            continue
        cols = min(3, len(ops))
        rows_n = -(-len(ops) // cols)
        fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.6 * rows_n), squeeze=False)
        for ax, op in zip(axes.ravel(), ops):
            for be in sorted({r["backend"] for r in recs if r["op"] == op and r["key_bits"] == bits}):
                pts = sorted((r["batch"], r["ops_per_s"]) for r in recs
                             if r["op"] == op and r["key_bits"] == bits and r["backend"] == be)
                style = "--" if any(r["kind"] != "ours" for r in recs if r["backend"] == be) else "-"
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, marker="o", label=be, color=colour[be])
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{op}, {bits}-bit")
            ax.set_xlabel("batch size")
            ax.set_ylabel("ops/s")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        for ax in axes.ravel()[len(ops):]:
            ax.axis("off")
        fig.tight_layout()
        path = out / f"throughput-{bits}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))

        # speed-up bars against the baseline
        names = sorted({r["backend"] for r in recs if r["key_bits"] == bits})
        data = {}
        for op in ops:
            base = _baseline(recs, op, bits, baseline)
            if not base:
                continue
            for be in names:
                rows = [r for r in recs if r["op"] == op and r["key_bits"] == bits and r["backend"] == be]
                if rows:
                    data[(op, be)] = max(rows, key=lambda r: r["batch"])["ops_per_s"] / base[1]
        if data:
            fig, ax = plt.subplots(figsize=(min(16, max(7, 0.45 * len(ops) * max(1, len(names)))), 4.5))
            width = 0.8 / max(1, len(names))
            for k, be in enumerate(names):
                xs = [i + k * width for i, op in enumerate(ops) if (op, be) in data]
                ys = [data[(op, be)] for op in ops if (op, be) in data]
                ax.bar(xs, ys, width, label=be, color=colour[be])
            ax.set_xticks([i + width * (len(names) - 1) / 2 for i in range(len(ops))], ops, rotation=20)
            ax.set_yscale("log")
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_ylabel(f"speed-up vs {baseline} (log)")
            ax.set_title(f"{bits}-bit key: throughput relative to {baseline}, largest batch each")
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = out / f"speedup-{bits}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(str(path))
    return written


def _ints(values: list[str]) -> list[int]:
    return [int(x) for v in values for x in str(v).split(",") if x]


def main_suite(args) -> int:
    """``he-accel bench``."""
    if getattr(args, "from_json", None):  # re-render an earlier run's table and plots, measure nothing
        path = Path(args.from_json)
        meta = path.with_suffix(".meta.json")
        result = {"records": json.loads(path.read_text()), "missing": {}, "skipped": []}
        if meta.exists():
            result.update(json.loads(meta.read_text()))
        print(table(result, args.baseline))
        for p in plot(result, args.plot, args.baseline) if args.plot else []:
            print(f"wrote {p}")
        return 0
    if args.ops == "default":
        ops = SUITE_OPS
    elif args.ops == "all":
        ops = [o for o in ALL_OPS if o != "powmod_1core"]
    else:
        ops = args.ops.split(",")
    unknown = set(ops) - set(ALL_OPS)
    if unknown:
        print(f"unknown ops: {', '.join(sorted(unknown))}; choose from {', '.join(ALL_OPS)}", file=sys.stderr)
        return 2
    ops = [o for o in ops if o != "powmod_1core"]  # measured once per key size as the unit anyway
    backends = list(args.backends or []) + ([args.backend] if args.backend else [])
    backends = [f"cpu:{args.workers}" if b == "cpu" and args.workers else b for b in backends or ["cpu"]]
    peers = list(PEERS) if args.peers == ["all"] else [] if args.peers == ["none"] else args.peers
    unknown = set(peers) - set(PEERS)
    if unknown:
        print(f"unknown peers: {', '.join(sorted(unknown))}; choose from {', '.join(PEERS)}", file=sys.stderr)
        return 2
    try:
        result = run_suite(backends=backends, peers=peers, ops=ops, bits_list=_ints(args.bits),
                           batches=_ints(args.batch), repeats=args.repeats, time_budget=args.time_budget,
                           target=args.target, peer_max_batch=args.peer_max_batch,
                           progress=not args.no_progress, clock=getattr(args, "clock", "wall"))
    except BenchCheckError as e:
        print(f"WRONG RESULT: {e}", file=sys.stderr)
        return 1
    except BenchOptionError as e:
        print(f"he-accel bench: {e}", file=sys.stderr)
        return 2
    if args.derive_peers:
        result["records"] += derive_peers(args.derive_peers)
    print(table(result, args.baseline))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result["records"], indent=1) + "\n")
        meta = Path(args.json).with_suffix(".meta.json")
        meta.write_text(json.dumps({"missing": result["missing"], "skipped": result["skipped"]}, indent=1) + "\n")
        print(f"wrote {len(result['records'])} records to {args.json} (+ {meta.name})")
    if args.plot:
        for p in plot(result, args.plot, args.baseline):
            print(f"wrote {p}")
    return 0

