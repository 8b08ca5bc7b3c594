"""The command line of fastnn (``python -m fastnn``): demo, chapter-6 experiments, and helpers they share.

The argument helpers here serve every subcommand, ``bench`` included (:mod:`fastnn.bench` parses its own options).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
from collections.abc import Iterator
from typing import Any


class CLIError(Exception):
    """A failure the user can fix (data could not be downloaded, a file is corrupt ...): printed without traceback."""


def _positive_int(text: str) -> int:
    """An argparse ``type``: an int >= 1 (argparse names it in "invalid _positive_int value", hence the name)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


_THREADS_HELP = {
    False: "threads for fastnn's kernels and for NumPy's BLAS (default: fastnn's and BLAS's own defaults, i.e. "
           "every core); 1 is often fastest on a busy machine",
    True: "threads for fastnn's parallel kernels, for NumPy's BLAS and for torch (default: Numba's, BLAS's and "
          "torch's own defaults, all cores); 1 compares single cores, which a loaded machine disturbs far less",
}


def add_threads_argument(p: argparse.ArgumentParser, *, torch: bool = False) -> None:
    """``--threads N``, the option every subcommand shares; ``torch``: the subcommand also runs torch (bench)."""
    p.add_argument("--threads", type=int, default=None, help=_THREADS_HELP[torch])


def apply_threads(n: int | None, *, torch: bool = False) -> None:
    """Use ``n`` threads in fastnn kernels, in BLAS (np.dot) when threadpoolctl is installed, and with ``torch``
    in torch when it is installed; ``None`` leaves every pool at its default.

    Both pools together oversubscribe the cores when n is not set: on a loaded 2-core machine a training step
    was measured 50x slower with the default pools than with ``--threads 1``.

    Raises
    ------
    CLIError
        ``n`` is out of range; its ``__cause__`` is :func:`fastnn.set_num_threads`'s ValueError.
    """
    if n is None:
        return
    import numba

    from .._jit import set_num_threads

    try:
        set_num_threads(n)
    except ValueError as exc:
        raise CLIError(f"--threads must be in [1, {numba.config.NUMBA_NUM_THREADS}], got {n}") from exc
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not a dependency of fastnn (the examples extra brings it with scikit-learn)
        pass
    else:
        threadpool_limits(limits=n, user_api="blas")
    if torch:
        try:
            import torch as torch_module
        except ImportError:
            return
        torch_module.set_num_threads(n)


def add_quiet_argument(p: argparse.ArgumentParser) -> None:
    """``--quiet``, shared by every long-running subcommand: no progress bars or notices, only the results."""
    p.add_argument("--quiet", action="store_true", help="no progress bar or notices (a pipe never gets a bar)")


def progress_bar(total: int | None, desc: str, unit: str, *, quiet: bool = False, stream: Any = None) -> Any:
    """A tqdm bar on ``stream`` (default stderr) when it is a terminal, ``quiet`` is off and tqdm is installed (the
    ``examples`` extra); else None. Callers ``update`` and ``close`` it when it is not None."""
    stream = sys.stderr if stream is None else stream
    if quiet or not (hasattr(stream, "isatty") and stream.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit=unit, file=stream, leave=False, dynamic_ncols=True)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's garbage collector off inside the block (on again after it, also after an error, if it was on):
    timed code, where a full collection in a process holding many objects (a test session's) can take longer than
    what is timed."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
