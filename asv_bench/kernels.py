"""Every registry case that no family module here names: a kernel gets its benchmarks from its registry entry.

A family class (``activations_losses.ReLU``, ...) times a forward and its backward side by side, with peak memory
where it matters; any other case of :data:`fastnn.bench_cases.CASES` -- a newly registered kernel, a variant
layout, a forward+backward target -- is timed here, one ``case`` parameter per case.
"""

from __future__ import annotations

from fastnn.bench_cases import CASES, DTYPES, IMPLS, SIZES

from . import (
    activations_losses,
    attention,
    im2col_conv,
    linalg,
    normalization,
    optimizers,
    pooling,
    training,
    transformer,
)
from .common import KernelBenchmark, claimed


class Kernel(KernelBenchmark):
    params = (sorted(set(CASES) - claimed(activations_losses, attention, im2col_conv, linalg, normalization, optimizers,
                                          pooling, training, transformer)), list(IMPLS), list(DTYPES), list(SIZES))
    param_names = ["case", "impl", "dtype", "size"]

    def setup(self, case, impl, dtype, size):
        self.cases = {"call": case}
        super().setup(impl, dtype, size)

    def time_call(self, *params):
        self.call()
