"""The float32 paths stay float32 in the generated machine code, and the hot loops vectorise.

A Python float literal or a float64 scalar in a float32 loop makes LLVM convert every element to double
(``vcvtss2sd``/``vcvtps2pd``) and do the arithmetic in ``pd``/``sd`` instructions: the results stay close, so only
the assembly shows it. These tests read the assembly of the float32 specialisations of the bandwidth-bound bodies.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from numba import config as numba_config

from fastnn import config as fastnn_config
from fastnn._jit import Kernel
from fastnn.kernels import normalization, optimizers

pytestmark = pytest.mark.skipif(numba_config.DISABLE_JIT, reason="no machine code under NUMBA_DISABLE_JIT=1")

# double-precision arithmetic or float32 <-> float64 conversions
DOUBLE_MATH = re.compile(r"\bv?(add|sub|mul|div|fmadd\w*|fmsub\w*|fnmadd\w*|sqrt|max|min)[ps]d\b"
                         r"|\bv?cvt(ss2sd|ps2pd)\b")
PACKED_SINGLE = re.compile(r"\bv(add|sub|mul|div|fmadd\w*|fnmadd\w*|sqrt)ps\s+%[yz]mm")


def _asm(kernel, twin: str, *args) -> str:
    """Assembly of ``kernel``'s ``twin`` for ``args``, compiled afresh exactly as fastnn compiles it (code loaded from
    Numba's on-disk cache cannot be inspected)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fastnn_config, "CACHE", False)
        dispatcher = getattr(Kernel(kernel.py_func, kernel.family), twin)
    dispatcher(*args)
    return "\n".join(dispatcher.inspect_asm().values())


def _adam_args(n: int = 64):
    f = np.float32
    p, g, m, v = (np.ones(n, f) for _ in range(4))
    return (p, g, m, v, f(1e-3), f(0.9), f(0.1), f(0.999), f(0.001), f(1e-8), f(1.0), f(0.0), f(1.0))


def _adam_hat_args(n: int = 64):
    f = np.float32
    p, g, m, v = (np.ones(n, f) for _ in range(4))
    return (p, g, m, v, f(1e-3), f(0.1), f(0.001), f(1e-7), f(0.0), f(1.0))


@pytest.mark.parametrize("twin", ["serial", "parallel"])
@pytest.mark.parametrize("form", ["pytorch", "eps_hat"])  # eps_hat: the book's Adam, fastnn.optim.Adam's default
def test_float32_adam_has_no_double_math_and_vectorises(twin, form):
    body, args = (optimizers._adam, _adam_args()) if form == "pytorch" else (optimizers._adam_hat, _adam_hat_args())
    asm = _asm(body, twin, *args)
    assert not DOUBLE_MATH.findall(asm), sorted(set(DOUBLE_MATH.findall(asm)))[:5]
    assert PACKED_SINGLE.search(asm), "no packed single-precision arithmetic on ymm/zmm registers"


@pytest.mark.parametrize("twin", ["serial", "parallel"])
def test_float32_normalize_pass_has_no_double_math_and_vectorises(twin):
    f = np.float32
    x = np.ones((4, 256), f)
    cen, scale, shift = (np.ones(4, f) for _ in range(3))
    asm = _asm(normalization._normalize_rows, twin, x, 256, cen, scale, shift, np.empty_like(x))
    assert not DOUBLE_MATH.findall(asm), sorted(set(DOUBLE_MATH.findall(asm)))[:5]
    assert PACKED_SINGLE.search(asm)
