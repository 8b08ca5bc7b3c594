"""Where a parallel twin starts paying: serial vs parallel twin per size, best of 200 calls each.

Run on a quiet machine; the crossovers feed ``PARALLEL_MIN_WORK`` in ``fastnn/config.py``::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python tools/measure_thresholds.py

Each cell is ``serial/parallel`` microseconds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

import fastnn.kernels as K

SIZES = (2**12, 2**14, 2**15, 2**16, 2**17, 2**18, 2**20)


def best(call: Callable[[], object], n: int = 200) -> float:
    """Fastest of ``n`` timed calls after two warm-up calls (compilation, page faults)."""
    call()
    call()
    fastest = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        fastest = min(fastest, time.perf_counter() - t0)
    return fastest


def cases(size: int, rng: np.random.Generator) -> dict[str, Callable[[], object]]:
    x = rng.standard_normal(size, dtype=np.float32)
    d = rng.standard_normal(size, dtype=np.float32)
    p, m, v = x.copy(), np.zeros_like(x), np.zeros_like(x)
    scores, labels = x.reshape(-1, 64), np.zeros(size // 64, dtype=np.int64)
    return {
        "relu_f": lambda: K.relu_forward(x),
        "relu_b": lambda: K.relu_backward(d, x),
        "adam": lambda: K.adam_step(p, d, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.1, 0.001),
        "sgd": lambda: K.sgd_step(p, d, 1e-3),
        "softmax_ce": lambda: K.softmax_cross_entropy_forward(scores, labels),
    }


def main() -> None:
    rng = np.random.default_rng(0)
    for size in SIZES:
        row = []
        for name, call in cases(size, rng).items():
            os.environ["FASTNN_PARALLEL_MIN_WORK"] = str(1 << 62)
            serial = best(call)
            os.environ["FASTNN_PARALLEL_MIN_WORK"] = "0"
            parallel = best(call)
            row.append(f"{name} {serial * 1e6:7.1f}/{parallel * 1e6:7.1f}us")
        print(f"{size:8d}  " + "  ".join(row), flush=True)


if __name__ == "__main__":
    main()
