"""What every asv benchmark class here shares: the parameter grid, and a ``setup`` that takes its data from
:mod:`fastnn.bench_cases` (the registry the tests check) and warms the JIT before anything is timed."""

from __future__ import annotations

import inspect
import types
from typing import Any, ClassVar

from fastnn import _compiling
from fastnn.bench_cases import CASES, DTYPES, IMPLS, SIZES


class KernelBenchmark:
    """Base class: ``cases`` maps an attribute name to a registry case; ``setup`` binds each to its timed call.

    A subclass writes one-line benchmarks over those attributes, e.g. ``def time_forward(self, *p):
    self.forward()``. A parameter combination that cannot run here (torch not installed, a size, dtype or
    implementation the case does not have) raises NotImplementedError in ``setup``, which asv reports as skipped.
    """

    params: ClassVar[tuple[list[str], ...]] = (list(IMPLS), list(DTYPES), list(SIZES))
    param_names: ClassVar[list[str]] = ["impl", "dtype", "size"]
    cases: ClassVar[dict[str, str]] = {}

    def setup(self, impl: str, dtype: str, size: str) -> None:
        shared: dict[int, dict[str, Any]] = {}  # forward and backward cases usually share their input builder
        for attr, name in self.cases.items():
            case = CASES[name]
            inputs = shared.get(id(case.make))
            if inputs is None:
                inputs = shared[id(case.make)] = case.inputs(size, dtype)
            call = case.prepare(impl, size, dtype, inputs).call
            # compile (or load from Numba's cache) and touch every buffer before the clock starts
            call()
            call()
            _compiling.settle()  # a first run's background compile worker: time the kernels later runs use
            setattr(self, attr, call)


def claimed(*modules: types.ModuleType) -> set[str]:
    """The registry cases the KernelBenchmark classes of ``modules`` time."""
    return {name for mod in modules for _, cls in inspect.getmembers(mod, inspect.isclass)
            if issubclass(cls, KernelBenchmark) for name in cls.cases.values()}


class _ForwardBackward(KernelBenchmark):
    """A forward and its backward timed side by side: ``cases`` maps ``"forward"`` and ``"backward"``.

    The leading underscore keeps asv from collecting this base class itself (it has no cases).
    """

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()


class _ForwardBackwardMemory(_ForwardBackward):
    """:class:`_ForwardBackward` plus the forward's peak memory (where it allocates workspaces)."""

    def peakmem_forward(self, *params):
        self.forward()
