"""The registry (fastnn.bench_cases) checks itself: every public kernel has an entry, and every case agrees with
its NumPy twin and with PyTorch at the tiny size.

A kernel added with its twin and its registry entry is tested here, timed by ``python -m fastnn.bench`` and asv,
and called by the robustness tests (``tests/robustness/cases.py``) with no other file touched.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from fastnn.bench_cases import CASES, Case

from ..conftest import TOL

#: torch computes the same maths in another order (and other algorithms: convolution by its own GEMM paths)
TORCH_TOL = {
    np.dtype(np.float32): {"rtol": 2e-4, "atol": 2e-5},
    np.dtype(np.float64): {"rtol": 1e-9, "atol": 1e-11},
}

#: Every (case, variant) pair: the plain call and each keyword form the case lists.
FORMS = [(name, None) for name in CASES] + [(name, v) for name, c in CASES.items() for v in c.variants]


def test_every_public_kernel_has_an_entry():
    """The entry of a kernel is the case named after it; a kernel cannot land without one."""
    missing = [name for name in K.__all__ if name not in CASES or CASES[name].kernel != name]
    assert missing == []
    assert sorted(K.__all__) == sorted(R.__all__)
    for case in CASES.values():
        if case.kernel is not None:
            assert case.kernel in K.__all__, case.name
            assert set(case.inplace) <= set(case.args), case.name


def _outputs(case: Case, impl: str, dtype: np.dtype, inputs: dict, variant: str | None = None
             ) -> tuple[np.ndarray, ...]:
    try:
        run = case.prepare(impl, "tiny", dtype, inputs, variant)
    except NotImplementedError as exc:
        pytest.skip(f"{case.name}: {exc}")
    return run.result(run.call())


def _snapshot(inputs: dict) -> dict:
    return {k: v.copy() for k, v in inputs.items() if isinstance(v, np.ndarray)}


@pytest.mark.parametrize(("name", "variant"), FORMS, ids=[f"{n}-{v}" if v else n for n, v in FORMS])
def test_fastnn_matches_numpy(name, variant, dtype, twin):
    case = CASES[name]
    if dtype.name not in case.dtypes:
        pytest.skip(f"{name} runs in {case.dtypes} only")
    inputs = case.inputs("tiny", dtype)
    before = _snapshot(inputs)
    fast = _outputs(case, "fastnn", dtype, inputs, variant)
    ref = _outputs(case, "numpy", dtype, inputs, variant)
    assert len(fast) == len(ref) >= 1
    for i, (a, b) in enumerate(zip(fast, ref, strict=True)):
        assert a.shape == b.shape, f"output {i}"
        assert a.dtype == b.dtype, f"output {i}"
        if a.dtype.kind == "f":
            assert a.dtype == dtype, f"output {i}"
            np.testing.assert_allclose(a, b, **TOL[dtype], err_msg=f"output {i}")
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"output {i}")
    # a run must not write into the shared inputs, or later repeats (and other implementations) time other data
    for k, v in before.items():
        np.testing.assert_array_equal(inputs[k], v, err_msg=k)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.torch is not None])
def test_torch_is_the_same_operation(name, dtype):
    """The torch column times the same maths: its results match the NumPy reference's leading outputs."""
    pytest.importorskip("torch")
    case = CASES[name]
    if dtype.name not in case.dtypes:
        pytest.skip(f"{name} runs in {case.dtypes} only")
    inputs = case.inputs("tiny", dtype)
    before = _snapshot(inputs)
    ref = _outputs(case, "numpy", dtype, inputs)
    tor = _outputs(case, "torch", dtype, inputs)
    assert 1 <= len(tor) <= len(ref)
    for i, (a, b) in enumerate(zip(tor, ref[:len(tor)], strict=True)):
        assert a.shape == b.shape, f"output {i}"
        np.testing.assert_allclose(a, b, **TORCH_TOL[dtype], err_msg=f"output {i}")
    for k, v in before.items():
        np.testing.assert_array_equal(inputs[k], v, err_msg=k)
