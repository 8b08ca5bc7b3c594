"""Quick side-by-side benchmark without asv: ``python -m fastnn.bench`` (or ``python -m fastnn bench``).

Every case of the registry :mod:`fastnn.bench_cases` is run for each implementation (fastnn's Numba kernels, the NumPy
reference, PyTorch's CPU op when torch is installed) in the same process, interleaved repeat by repeat so that
load from other processes hits all of them alike. Each implementation is called until compiled and warm before
timing; a repeat times a block of calls long enough for the clock, and the table shows the median per call.

The triad line is a STREAM-style bandwidth measured by :func:`fastnn.kernels._bandwidth.triad_bandwidth`. For
memory-bound cases (optimizer steps, normalization, pooling, ReLU) the ``GB/s`` column is the compulsory traffic
of one call (each input read once, each output written once) over fastnn's time, and ``of triad`` its ratio to
that bandwidth: near 1 means the kernel runs at memory speed.

``--targets`` measures the speed targets instead: the registry's cases with a ``goal`` (a forward *and* its
backward, a full optimizer step, a whole training step), each at its goal's size in float32, fastnn against the
NumPy twins and PyTorch's CPU path. The optimizer and normalization rows also report achieved memory bandwidth
against the triad, since those kernels are bandwidth-bound; the recurrent rows report the rate of their matrix
products against the machine's GEMM peak (:func:`gemm_peak`), since those are compute-bound, and a note under the
table names any target whose time is shorter than its products take at that peak. Run it on a quiet machine with
OpenBLAS left to pick its own kernels::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m fastnn.bench --targets
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _compiling, bench_cases
from ._jit import get_num_threads
from .bench_cases import CASES, DTYPES, IMPLS, SIZES, Case
from .cli import CLIError, add_quiet_argument, add_threads_argument, apply_threads, collector_paused, progress_bar
from .kernels import _bandwidth


def measure(calls: dict[str, Callable[[], Any]], repeat: int, min_time: float) -> dict[str, float]:
    """Median seconds per call of each callable, timed side by side.

    Parameters
    ----------
    calls
        Implementation name -> zero-argument callable.
    repeat
        Timed blocks per implementation; the median of their per-call times is returned.
    min_time
        Seconds a block lasts at least: the number of calls in a block is doubled until it does.
    """
    numbers = {}
    for name, call in calls.items():
        call()  # compile (Numba), allocate caches (torch), fault pages in
        call()
        _compiling.settle()  # a first run's background compile worker: time the kernels later runs use
        number = 1
        while True:
            t = _block(call, number)
            if t >= min_time or number >= 1 << 20:
                break
            # aim 20% past min_time from the per-call time seen, at least doubling
            number = min(1 << 20, max(2 * number, int(1.2 * min_time * number / max(t, 1e-9))))
        numbers[name] = number
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(repeat):
        # rotate the order so no implementation always runs right after another's cache-trashing block
        for name in names[r % len(names):] + names[:r % len(names)]:
            samples[name].append(_block(calls[name], numbers[name]) / numbers[name])
    return {name: statistics.median(s) for name, s in samples.items()}


def _block(call: Callable[[], Any], number: int) -> float:
    with collector_paused():
        t0 = time.perf_counter()
        for _ in range(number):
            call()
        return time.perf_counter() - t0


def triad_bandwidth(repeats: int = 10) -> float:
    """Bytes per second of a STREAM triad on this machine (best of ``repeats``)."""
    return float(_bandwidth.triad_bandwidth(repeats=repeats))


def gemm_peak(n: int = 2048, repeats: int = 5) -> float:
    """Floating-point operations per second of a float32 ``(n, n) @ (n, n)`` product through NumPy's BLAS on every
    core it uses (best of ``repeats``, 2 per multiply-add): the rate no matrix product here beats."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm: BLAS threads started, pages faulted in
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def _calls(case: Case, impls: Sequence[str], size: str, dtype: str
           ) -> tuple[dict[str, Callable[[], Any]], dict[str, str]]:
    """The timed call of each implementation of ``case`` on the same inputs, and why any is missing."""
    inputs = case.inputs(size, dtype)
    calls, missing = {}, {}
    for impl in impls:
        try:
            calls[impl] = case.prepare(impl, size, dtype, inputs).call
        except NotImplementedError as exc:
            missing[impl] = str(exc)
    return calls, missing


def format_time(t: float | None) -> str:
    if t is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


def format_row(cells: Sequence[str], widths: Sequence[int]) -> str:
    """One table line: first column left-aligned, the others right-aligned, each at least its width."""
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()


def run(cases: Sequence[str], sizes: Sequence[str], dtypes: Sequence[str], repeat: int, min_time: float,
        bandwidth: float | None, out: Any = None, quiet: bool = False) -> list[dict[str, Any]]:
    """Time every (case, size, dtype) and print one table row each as it finishes; returns the rows as dicts.

    On a terminal (stderr) a progress bar names the row being timed, unless ``quiet``.
    """
    out = sys.stdout if out is None else out
    todo = [(name, size, dtype) for name in cases for size in sizes if size in CASES[name].sizes
            for dtype in dtypes if dtype in CASES[name].dtypes]
    bar = progress_bar(len(todo), "timing", " rows", quiet=quiet)
    impls = [i for i in IMPLS if i != "torch" or bench_cases.torch_available()]
    header = ["case", "size", "dtype", *impls, "numpy/fastnn", *(["torch/fastnn"] if "torch" in impls else []),
              "GB/s", "of triad"]
    # fixed widths, so each row can be printed as soon as it is measured
    widths = [max(len(h), w) for h, w in zip(header, [max(map(len, cases)), 5, 7, *[9] * len(impls),
                                                       *[12] * (len(header) - 5 - len(impls)), 5, 8], strict=True)]
    print(format_row(header, widths), file=out)
    print(format_row(["-" * w for w in widths], widths), file=out, flush=True)
    results = []
    for name, size, dtype in todo:
        case = CASES[name]
        if bar is not None:
            bar.set_postfix_str(f"{name} {size} {dtype}")
        calls, missing = _calls(case, impls, size, dtype)
        times: dict[str, float | None] = dict.fromkeys(impls)
        times.update(measure(calls, repeat, min_time) if calls else {})
        del calls
        res = {"case": name, "size": size, "dtype": dtype, "times": times, "missing": missing,
               "bytes": case.bytes_moved(size, dtype)}
        results.append(res)
        if bar is not None:
            bar.clear()  # the row replaces the bar's line; the bar is drawn again below it
        print(format_row(_row(res, impls, bandwidth), widths), file=out, flush=True)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    for res in results:
        for impl, why in res["missing"].items():
            if impl != "torch":
                print(f"note: {res['case']} {impl}: {why}", file=out)
    return results


def _row(res: dict[str, Any], impls: Sequence[str], bandwidth: float | None) -> list[str]:
    t = res["times"]
    fast = t.get("fastnn")

    def ratio(other: str) -> str:
        return f"{t[other] / fast:.2f}x" if fast and t.get(other) else "-"

    gbs = share = "-"
    if fast and res["bytes"]:
        achieved = res["bytes"] / fast
        gbs = f"{achieved / 1e9:.1f}"
        if bandwidth:
            share = f"{achieved / bandwidth:.0%}"
    return [res["case"], res["size"], res["dtype"], *(format_time(t[i]) for i in impls), ratio("numpy"),
            *([ratio("torch")] if "torch" in impls else []), gbs, share]


def run_targets(repeat: int = 7, min_time: float = 0.2, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Measure every speed target (the cases with a ``goal``; of those named in ``names`` when given); one row per
    target with seconds per call of each implementation."""
    triad, peak = triad_bandwidth(), gemm_peak()
    rows = []
    for case in CASES.values():
        if case.goal is None or (names is not None and case.name not in names):
            continue
        calls, _ = _calls(case, IMPLS, case.goal.size, "float32")
        rows.append({"case": case.goal.title, "goal": case.goal.ratio, "threads": get_num_threads(), "triad": triad,
                     "peak": peak, "traffic": case.bytes_moved(case.goal.size, "float32"),
                     "flops": case.product_flops(case.goal.size), **measure(calls, repeat, min_time)})
    return rows


def format_targets(rows: Sequence[dict[str, Any]]) -> str:
    """The targets table as plain text."""

    def ms(s: float | None) -> str:
        return "-" if s is None else f"{s * 1e3:.2f} ms"

    head = ("case", "fastnn", "NumPy ref", "torch", "ref/fastnn", "fastnn/torch", "target", "GB/s", "of triad",
            "GFLOP/s", "of peak")
    lines, notes = [], []
    for r in rows:
        f, n, t = r.get("fastnn"), r.get("numpy"), r.get("torch")
        gbs = r["traffic"] / f / 1e9 if r["traffic"] and f else None
        flops, triad, peak = r.get("flops"), r["triad"], r.get("peak")
        gfs = flops / f / 1e9 if flops and f else None
        lines.append((r["case"], ms(f), ms(n), ms(t), f"{n / f:.1f}x" if n and f else "-",
                      f"{f / t:.2f}" if f and t else "-", f"<= {r['goal']:.1f}",
                      f"{gbs:.1f}" if gbs else "-",
                      f"{gbs * 1e9 / triad:.0%}" if gbs and triad else "-",
                      f"{gfs:.0f}" if gfs else "-",
                      f"{gfs * 1e9 / peak:.0%}" if gfs and peak else "-"))
        if flops and peak and t and r["goal"] * t < flops / peak:
            notes.append(f"{r['case']}: the target, {r['goal']:.1f} x torch = {ms(r['goal'] * t)}, is below "
                         f"{ms(flops / peak)}, the time of its products' {flops / 1e6:.0f} MFLOP at the GEMM peak")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    out = [format_row(head, widths), format_row(["-" * w for w in widths], widths)]
    out += [format_row(line, widths) for line in lines]
    if rows and rows[0]["triad"]:
        out.append(f"STREAM triad (Numba, {rows[0]['threads']} threads): {rows[0]['triad'] / 1e9:.1f} GB/s")
    if rows and rows[0].get("peak"):
        out.append(f"GEMM peak (float32 2048 x 2048 through NumPy's BLAS): {rows[0]['peak'] / 1e9:.0f} GFLOP/s")
    return "\n".join(out + notes)


def _choices(value: str, allowed: Sequence[str], what: str) -> list[str]:
    chosen = list(allowed) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in chosen if v not in allowed]
    if bad or not chosen:
        raise argparse.ArgumentTypeError(f"{what} must be 'all' or a comma-separated subset of {list(allowed)}, "
                                         f"got {value!r}")
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m fastnn.bench",
        description="Time fastnn's kernels against the NumPy reference (and torch when installed), side by side.")
    parser.add_argument("--size", default="mnist,cifar", help="mnist, cifar, tiny, a comma list or 'all' "
                        "(default: mnist,cifar; --quick: mnist)")
    parser.add_argument("--dtype", default="float32", help="float32, float64, a comma list or 'all' "
                        "(default: float32)")
    parser.add_argument("--filter", default="", metavar="REGEX", help="only cases whose name matches REGEX "
                        f"(cases: {', '.join(CASES)})")
    parser.add_argument("--repeat", type=int, default=None, help="timed blocks per implementation, median "
                        "reported (default 7; --quick: 3)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter repeats and the mnist size only")
    add_threads_argument(parser, torch=True)
    parser.add_argument("--no-triad", action="store_true", help="skip the triad bandwidth measurement")
    add_quiet_argument(parser)
    parser.add_argument("--list", action="store_true", help="list the cases and their shapes per size, and exit")
    parser.add_argument("--targets", action="store_true", help="measure the speed targets instead (forward+backward "
                        "pairs, optimizer and training steps, float32, vs torch): the registry's cases with a goal")
    args = parser.parse_args(argv)
    try:
        sizes = _choices("mnist" if args.quick and args.size == "mnist,cifar" else args.size,
                         ("tiny", *SIZES), "--size")
        dtypes = _choices(args.dtype, DTYPES, "--dtype")
        pattern = re.compile(args.filter)
    except (argparse.ArgumentTypeError, re.error) as exc:
        parser.error(str(exc))
    repeat = args.repeat if args.repeat is not None else (3 if args.quick else 7)
    if repeat < 1:
        parser.error(f"--repeat must be >= 1, got {repeat}")
    cases = [name for name in CASES if pattern.search(name)]
    if not cases:
        parser.error(f"--filter {args.filter!r} matches no case (cases: {', '.join(CASES)})")
    if args.list:
        width = max(map(len, cases))
        for name in cases:
            for size in sizes:
                if size in CASES[name].sizes:
                    print(f"{name:<{width}} {size:<6} {CASES[name].describe(size)}")
        return 0
    try:
        apply_threads(args.threads, torch=True)
    except CLIError as exc:
        parser.error(f"--threads: {exc.__cause__}")
    if args.targets:
        print(f"{get_num_threads()} threads; median of {repeat} interleaved blocks per call, JIT warmed; float32")
        print(format_targets(run_targets(repeat, 0.05 if args.quick else 0.2, cases)))
        return 0
    bandwidth = None if args.no_triad else triad_bandwidth(3 if args.quick else 10)
    print(f"triad bandwidth: {f'{bandwidth / 1e9:.1f} GB/s' if bandwidth else 'not measured'}")
    print(f"median of {repeat} repeats per call, JIT warmed, {get_num_threads()} threads; "
          "ratios > 1x: fastnn is faster")
    run(cases, sizes, dtypes, repeat, 0.005 if args.quick else 0.05, bandwidth, quiet=args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
