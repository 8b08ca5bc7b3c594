"""Compile fastnn's kernels for this machine ahead of time, into Numba's on-disk cache (an optional install step).

Every case of the kernel registry (:data:`fastnn.bench_cases.CASES`, which every kernel is in) runs once per dtype
and per size (``tiny`` and ``mnist``, which between them take each code path the layers take: Winograd and im2col
convolutions, the 2x2 and general pools ...), in each of its call forms, once on the serial twins and, with more
than one core, once on the parallel ones. The work is shared among worker processes, one kernel family each at a
time, which all write into the same cache (:mod:`fastnn._numba_cache` makes that safe). A later process then loads
every kernel instead of compiling it: the first demo or training step starts as fast as the second.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import re
import time
from typing import Any

from .. import _compiling
from . import CLIError, _positive_int, add_quiet_argument, progress_bar

#: The registry sizes run: between them every code path of the layers (see the module docstring).
SIZES = ("tiny", "mnist")
#: Families run after all the others: their cases chain the other families' kernels, which are cached by then.
LAST = ("training",)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dtype", default="float32,float64", help="float32, float64 or both, comma-separated")
    p.add_argument("--filter", default="", metavar="REGEX",
                   help="only registry cases whose name matches REGEX (python -m fastnn.bench --list shows them)")
    p.add_argument("--jobs", type=_positive_int, default=None, help="worker processes (default: one per core)")
    add_quiet_argument(p)
    p.set_defaults(run=run)


def tasks(dtypes: list[str], pattern: str = "") -> list[tuple[str, str, tuple[str, ...]]]:
    """``(family, dtype, case names)`` units of work from the registry: every case whose name matches
    ``pattern``, grouped by kernel family (cases of a family share kernels, so one worker compiles them once);
    :data:`LAST` families come last."""
    from ..bench_cases import CASES

    found = re.compile(pattern)
    families: dict[tuple[str, str], list[str]] = {}
    for dtype in dtypes:
        for name, case in CASES.items():
            if found.search(name) and dtype in case.dtypes:
                families.setdefault((case.module, dtype), []).append(name)
    units = [(family, dtype, tuple(names)) for (family, dtype), names in families.items()]
    return sorted(units, key=lambda u: u[0] in LAST)


def compile_unit(names: tuple[str, ...], dtype: str) -> tuple[int, float]:
    """Run the cases ``names`` in ``dtype`` at every size of :data:`SIZES`, in every call form, on the serial and
    (more than one thread) the parallel twins; returns the kernels compiled and the seconds that took."""
    import numba

    from ..bench_cases import CASES

    regimes = ["1000000000000000000"] + (["0"] if numba.config.NUMBA_NUM_THREADS > 1 else [])
    before = os.environ.get("FASTNN_PARALLEL_MIN_WORK")
    try:
        with _compiling.watch() as done:
            for regime in regimes:  # serial twins, then parallel twins (the threshold is read at each launch)
                os.environ["FASTNN_PARALLEL_MIN_WORK"] = regime
                for name in names:
                    case = CASES[name]
                    forms = [None] if case.steps is not None else [None, *case.variants]
                    for size in SIZES:
                        if size in case.sizes:
                            for form in forms:
                                case.prepare("fastnn", size, dtype, variant=form).call()
    finally:
        if before is None:
            os.environ.pop("FASTNN_PARALLEL_MIN_WORK", None)
        else:
            os.environ["FASTNN_PARALLEL_MIN_WORK"] = before
    return done.count, done.seconds


def warm(dtypes: list[str], pattern: str = "", jobs: int = 1, progress: Any = None) -> tuple[int, int]:
    """Compile what :func:`tasks` lists into the on-disk cache, ``jobs`` processes at a time (1: this process).

    ``progress``: a tqdm bar (or anything with ``update(n)``) advanced by one per family and dtype done.
    Returns (units of work, kernels compiled).
    """
    units = tasks(dtypes, pattern)
    compiled = 0
    if jobs == 1:
        for _, dtype, names in units:
            compiled += compile_unit(names, dtype)[0]
            if progress is not None:
                progress.update(1)
        return len(units), compiled
    with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for phase in (False, True):  # the LAST families once every other family is in the cache
            futures = [pool.submit(compile_unit, names, dtype)
                       for family, dtype, names in units if (family in LAST) == phase]
            for future in concurrent.futures.as_completed(futures):
                compiled += future.result()[0]
                if progress is not None:
                    progress.update(1)
    return len(units), compiled


def run(args: argparse.Namespace) -> int:
    dtypes = [d.strip() for d in args.dtype.split(",") if d.strip()]
    bad = [d for d in dtypes if d not in ("float32", "float64")]
    if bad or not dtypes:
        raise CLIError(f"--dtype must be float32, float64 or both (comma-separated), got {args.dtype!r}")
    try:
        re.compile(args.filter)
    except re.error as exc:
        raise CLIError(f"--filter is not a regular expression: {exc}") from exc
    where = _compiling.cache_dir()
    if where is None:
        raise CLIError("there is no on-disk cache to fill: fastnn's is off (FASTNN_NUMBA_CACHE=0) or no cache "
                       "directory is writable (set NUMBA_CACHE_DIR to a writable directory)")
    units = tasks(dtypes, args.filter)
    if not units:
        raise CLIError(f"no registry case matches --filter {args.filter!r} in {', '.join(dtypes)}")
    jobs = args.jobs or min(os.cpu_count() or 1, len(units))
    start = time.perf_counter()
    bar = progress_bar(len(units), "compiling kernels", " families", quiet=args.quiet)
    try:
        done, compiled = warm(dtypes, args.filter, jobs, bar)
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        print(f"warmup: {compiled} kernels compiled ({', '.join(dtypes)}; {done} families x dtypes, {jobs} "
              f"processes) in {time.perf_counter() - start:.1f} s into {where}")
    return 0

