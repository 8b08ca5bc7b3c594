"""One valid call of every public kernel, as keyword arguments, shared by the robustness tests.

``CALLS[name](dtype, rng)`` returns the keyword arguments of a small, valid call of ``fastnn.kernels.<name>`` (and
of its twin ``fastnn.reference.<name>``): the kernel's registry entry (:mod:`fastnn.bench_cases`) at its tiny
size, in the form fastnn's own layers and optimizers call. The validation table mutates one argument at a time;
the thread, process and special-value tests run the calls as they are. Arrays are freshly drawn on every call, so
a test may modify them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

import fastnn.kernels as K
from fastnn.bench_cases import CASES, valid_call

Kwargs = dict[str, Any]

CALLS: dict[str, Callable[[np.dtype, np.random.Generator], Kwargs]] = {
    name: partial(valid_call, name) for name in K.__all__}

#: Arguments a kernel updates in place by contract (optimizer param and state, batch-norm running statistics).
INPLACE: dict[str, tuple[str, ...]] = {name: CASES[name].inplace for name in K.__all__ if CASES[name].inplace}


def arrays_of(kw: Kwargs) -> dict[str, np.ndarray]:
    """The array arguments of a call."""
    return {k: v for k, v in kw.items() if isinstance(v, np.ndarray)}


def copies(kw: Kwargs) -> dict[str, np.ndarray]:
    """Copies of a call's arrays (to check later that nothing was written)."""
    return {k: v.copy() for k, v in arrays_of(kw).items()}


def assert_unchanged(kw: Kwargs, before: dict[str, np.ndarray], skip: tuple[str, ...] = ()) -> None:
    """Every array of ``kw`` still equals its copy in ``before`` (NaN equal to NaN), except names in ``skip``."""
    for k, v in before.items():
        if k in skip:
            continue
        np.testing.assert_array_equal(kw[k], v, err_msg=f"argument {k!r} was modified")


def outputs(result: Any) -> list[np.ndarray]:
    """A kernel's return value as a list of arrays (tuples flattened; 0-d scalars as 0-d arrays)."""
    if result is None:
        return []
    if isinstance(result, tuple):
        return [np.asarray(r) for r in result]
    return [np.asarray(result)]
