"""Which kernels change their bits with the thread count: every registry kernel at every size, 1 thread against 2.

Each kernel of ``fastnn.kernels`` runs on its registry inputs (:mod:`fastnn.bench_cases`, every size and dtype)
once after ``fastnn.set_num_threads(1)`` and once after ``set_num_threads(2)`` (a machine of two threads or
more), at the default thresholds. A line per call: ``same`` when every output has the same bits, else ``DIFF``
with the outputs that differ and the largest difference relative to the output's largest value. Run it twice:
the first run after an edit compiles the parallel twins, whose roundings can differ from the cached copies later
runs load (``README.md``, Robustness).

Usage::

    python tools/thread_bits.py                        # all kernels (~1.5 min here)
    python tools/thread_bits.py lstm_forward matmul    # some
"""

from __future__ import annotations

import argparse

import numpy as np

import fastnn
import fastnn.kernels as K
from fastnn.bench_cases import CASES


def _outputs(case, size: str, dtype: str, inputs) -> list[np.ndarray]:
    run = case.prepare("fastnn", size, dtype, inputs=inputs)
    return [np.array(a, copy=True) for a in run.result(run.call())]


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.nanmax(np.abs(a - b)) / max(float(np.nanmax(np.abs(b))), 1e-300))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernels", nargs="*", help="kernel names (default: every public kernel)")
    names = parser.parse_args().kernels or sorted(K.__all__)
    for name in names:
        case = CASES[name]
        for size in case.sizes:
            for dtype in case.dtypes:
                inputs = case.inputs(size, dtype)
                runs = []
                for n in (1, 2):
                    fastnn.set_num_threads(n)
                    runs.append(_outputs(case, size, dtype, inputs))
                bad = [i for i, (a, b) in enumerate(zip(*runs, strict=True))
                       if not np.array_equal(a, b, equal_nan=True)]
                if bad:
                    rel = max(_relative(runs[0][i], runs[1][i]) for i in bad)
                    print(f"DIFF {name} {size} {dtype}: outputs {bad}, {rel:.1e} of the largest", flush=True)
                else:
                    print(f"same {name} {size} {dtype}", flush=True)


if __name__ == "__main__":
    main()
