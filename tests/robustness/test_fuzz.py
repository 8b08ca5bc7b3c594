"""Hypothesis fuzzing of the kernel families against their reference twins: window (convolution, im2col, pooling,
and the convolutions fused with ReLU and max pooling), element-wise (dropout masks too), losses (softmax's backward
too), normalization (batch renormalization too), optimizers, recurrent, sequence (embedding, time-step loss,
clipping), attention and its Transformer helpers, matrix products, weight and spectral normalization.

Each example draws shapes, window geometry (strides and pads as ints or pairs, windows that may not fit), dtypes
(float32, float64, int64, int8, bool), memory layouts (C order, Fortran order, negative strides, strided slices of a
larger array, read-only arrays) and the twin (serial or parallel). A valid combination must give the reference
twin's result (within ``TOL`` of the output dtype, output dtype as NumPy promotes) and leave its inputs as they
were; an invalid one must raise ``ValueError``/``TypeError`` with fastnn's message, the same from both twins --
never crash, never return garbage. In-place optimizer updates are checked on non-contiguous views of the
caller's arrays.

Examples per test: the ``ci`` profile of ``tests/conftest.py`` (``FASTNN_FUZZ_EXAMPLES``, default 60). Long run::

    FASTNN_FUZZ_EXAMPLES=2000 python -m pytest tests/robustness/test_fuzz.py -q
"""

from __future__ import annotations

import contextlib
import os
import re

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import fastnn.kernels as K
import fastnn.reference as R

from ..conftest import TOL

DTYPES = [np.float32, np.float64, np.int64, np.int8, np.bool_]
_FLOATS = [np.float32, np.float64]
LAYOUTS = ["C", "F", "negative", "slice", "readonly"]
_MESSAGE = r"{where}: .+ must be .+, got .+"


@contextlib.contextmanager
def _twin(which: str):
    """Run kernels on the serial or the parallel twin (the ``twin`` fixture cannot be used with @given)."""
    old = os.environ.get("FASTNN_PARALLEL_MIN_WORK")
    os.environ["FASTNN_PARALLEL_MIN_WORK"] = "1000000000000" if which == "serial" else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ["FASTNN_PARALLEL_MIN_WORK"]
        else:
            os.environ["FASTNN_PARALLEL_MIN_WORK"] = old


def _values(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    v = np.asarray(rng.standard_normal(shape) * 3)
    if np.dtype(dtype) == np.bool_:
        return v > 0
    if np.dtype(dtype).kind == "i":
        return np.clip(np.round(v), -100, 100).astype(dtype)
    return v.astype(dtype)


def relayout(a: np.ndarray, layout: str) -> np.ndarray:
    """``a``'s values in another memory layout (a view with other strides, or a read-only copy)."""
    a = np.asarray(a)
    if layout == "C" or (a.ndim == 0 and layout != "readonly"):
        out = np.array(a, order="C")  # not ascontiguousarray: it turns 0-d into 1-d
    elif layout == "F":
        out = np.asfortranarray(a)
    elif layout == "negative":
        flip = tuple(slice(None, None, -1) for _ in range(a.ndim))
        out = a[flip].copy()[flip]
    elif layout == "slice":
        big = np.zeros(tuple(2 * s + 1 for s in a.shape), a.dtype)
        view = big[tuple(slice(1, None, 2) for _ in range(a.ndim))]
        view[...] = a
        out = view
    else:
        out = a.copy()
        out.flags.writeable = False
    np.testing.assert_array_equal(out, a)
    return out


@st.composite
def arrays(draw, shape, dtypes=DTYPES, layouts=LAYOUTS):
    dtype = draw(st.sampled_from(dtypes))
    layout = draw(st.sampled_from(layouts))
    seed = draw(st.integers(0, 2**32 - 1))
    return relayout(_values(np.random.default_rng(seed), shape, dtype), layout)


def int_or_pair(lo, hi):
    return st.one_of(st.integers(lo, hi), st.tuples(st.integers(lo, hi), st.integers(lo, hi)))


def _pair(v):
    return (v, v) if isinstance(v, int) else v


def _result_dtype(*arrays) -> np.dtype:
    """The float dtype NumPy computes in: float32 only if every input is float32 or smaller."""
    dts = [np.float64 if a.dtype.kind in "biu" else a.dtype for a in arrays]
    return np.result_type(*dts)


def _up(a):
    """float32 arrays as float64 (the exact values), anything else as is."""
    return a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32 else a


def _call_both(name: str, valid: bool, *args, extra_atol: float | tuple[float, ...] = 0.0, oracle64: bool = False,
               **kw):
    """Call kernel and reference; compare results and check inputs are unchanged. Returns the kernel's outputs
    (None for an invalid call). ``extra_atol`` widens the absolute tolerance of the first output, or of each
    output when a tuple (a result that is a difference of much larger terms). ``oracle64``: compare float32
    results with the reference computed in float64 on the same values -- for normalizations, whose float32
    reference (float32 mean, then x - mean amplified by up to 1/sqrt(eps)) is less accurate than the kernels'
    float64 statistics."""
    copies = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    got = want = None
    errors = []
    for impl in (K, R):
        try:
            res = getattr(impl, name)(*args, **kw)
        except (ValueError, TypeError) as e:
            errors.append((type(e), str(e)))
            continue
        if impl is K:
            got = res
        else:
            want = res
    for a, c in zip(args, copies, strict=True):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, c, err_msg=f"{name} modified an input")
    if not valid:
        assert len(errors) == 2, f"{name} accepted an invalid call: {args!r:.300} {kw}"
        assert errors[0] == errors[1], errors
        assert errors[0][0] is ValueError or errors[0][0] is TypeError
        assert re.fullmatch(_MESSAGE.format(where=re.escape(name)), errors[0][1], re.S), errors[0][1]
        return None
    assert not errors, f"{name} refused a valid call: {errors}"
    got_l = list(got) if isinstance(got, tuple) else [got]
    want_l = list(want) if isinstance(want, tuple) else [want]
    exact = getattr(R, name)(*map(_up, args), **kw) if oracle64 else want
    exact_l = list(exact) if isinstance(exact, tuple) else [exact]
    for i, (g, w, e) in enumerate(zip(got_l, want_l, exact_l, strict=True)):
        g, w = np.asarray(g), np.asarray(w)
        assert g.dtype == w.dtype and g.shape == w.shape, (name, g.dtype, w.dtype, g.shape, w.shape)
        w = np.asarray(e)
        if g.dtype.kind == "f":
            tol = dict(TOL[g.dtype])
            tol["atol"] += extra_atol[i] if isinstance(extra_atol, tuple) else extra_atol if i == 0 else 0.0
            # reordered sums: an element may be the small difference of large terms (conv dW in float32 measured
            # 5e-6 off at 0.11 among values of 29), so the absolute tolerance follows the largest value
            finite = np.abs(w[np.isfinite(w)])
            tol["atol"] += tol["rtol"] * (float(finite.max()) if finite.size else 0.0)
            np.testing.assert_allclose(g, w, **tol, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(g, w, err_msg=name)
    return got_l


# ---------------------------------------------------------------------------------------------------------------
# Window family: convolution, im2col/col2im, max and average pooling


@st.composite
def window_case(draw):
    n, c = draw(st.integers(0, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    fh, fw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    stride = draw(st.one_of(int_or_pair(1, 3), st.sampled_from([0, (1, 0), -1])))
    pad = draw(st.one_of(int_or_pair(0, 2), st.sampled_from([-1, (0, -2)])))
    return n, c, h, w, fh, fw, stride, pad


def _geometry_ok(h, w, fh, fw, stride, pad):
    (sh, sw), (ph, pw) = _pair(stride), _pair(pad)
    ok = min(sh, sw) >= 1 and min(ph, pw) >= 0 and fh <= h + 2 * ph and fw <= w + 2 * pw
    return ok, ((h + 2 * ph - fh) // sh + 1 if ok else 0), ((w + 2 * pw - fw) // sw + 1 if ok else 0)


@given(case=window_case(), fn=st.integers(1, 4), data=st.data(), twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_convolution(case, fn, data, twin):
    n, c, h, w, fh, fw, stride, pad = case
    ok, oh, ow = _geometry_ok(h, w, fh, fw, stride, pad)
    x = data.draw(arrays((n, c, h, w)))
    W = data.draw(arrays((fn, c, fh, fw), dtypes=_FLOATS))
    b = data.draw(arrays((fn,), dtypes=_FLOATS))
    pooled_ok = ok and oh >= 2 and ow >= 2  # the fused 2x2 max pool's least input
    with _twin(twin):
        out = _call_both("conv2d_forward", ok, x, W, b, stride, pad)
        relu = _call_both("conv2d_relu_forward", ok, x, W, b, stride, pad)
        pooled = _call_both("conv2d_relu_maxpool_forward", pooled_ok, x, W, b, stride, pad)
        if ok:
            assert out[0].dtype == _result_dtype(x, W, b) and out[0].shape == (n, fn, oh, ow)
            dout = data.draw(arrays((n, fn, oh, ow), dtypes=_FLOATS))
            _call_both("conv2d_backward", True, dout, x, W, stride, pad)
            saved = relayout(relu[0], data.draw(st.sampled_from(LAYOUTS)))
            _call_both("conv2d_relu_backward", True, dout, saved, x, W, stride, pad)
        if pooled_ok:
            pdout = data.draw(arrays(pooled[0].shape, dtypes=_FLOATS))
            _call_both("conv2d_relu_maxpool_backward", True, pdout, *pooled, x, W, stride, pad)


@given(case=window_case(), data=st.data(), twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_im2col_col2im(case, data, twin):
    n, c, h, w, fh, fw, stride, pad = case
    ok, oh, ow = _geometry_ok(h, w, fh, fw, stride, pad)
    x = data.draw(arrays((n, c, h, w)))
    with _twin(twin):
        col = _call_both("im2col", ok, x, fh, fw, stride, pad)
        if ok:
            assert col[0].shape == (n * oh * ow, c * fh * fw)
            col = data.draw(arrays(col[0].shape, dtypes=_FLOATS))
            _call_both("col2im", True, col, (n, c, h, w), fh, fw, stride, pad)


@given(case=window_case(), default_stride=st.booleans(), data=st.data(), twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_pooling(case, default_stride, data, twin):
    n, c, h, w, fh, fw, stride, pad = case
    if default_stride:
        stride = None
    ok, oh, ow = _geometry_ok(h, w, fh, fw, (fh, fw) if stride is None else stride, pad)
    ph, pw = _pair(pad)
    ok = ok and ph <= fh // 2 and pw <= fw // 2
    x = data.draw(arrays((n, c, h, w)))
    with _twin(twin):
        res = _call_both("maxpool2d_forward", ok, x, fh, fw, stride, pad)
        _call_both("avgpool2d_forward", ok, x, fh, fw, stride, pad)
        if ok:
            out, argmax = res
            assert out.shape == (n, c, oh, ow) and argmax.max(initial=0) < fh * fw
            dout = data.draw(arrays(out.shape, dtypes=_FLOATS))
            _call_both("maxpool2d_backward", True, dout, relayout(argmax, data.draw(st.sampled_from(LAYOUTS))),
                       x.shape, fh, fw, stride, pad)
            _call_both("avgpool2d_backward", True, dout, x.shape, fh, fw, stride, pad)


# ---------------------------------------------------------------------------------------------------------------
# Element-wise: activations and dropout

shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)


@given(shape=shapes, data=st.data(), alpha=st.floats(-2, 2), twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_elementwise(shape, data, alpha, twin):
    x, dout = data.draw(arrays(shape)), data.draw(arrays(shape))
    mask = data.draw(arrays(shape, dtypes=[np.bool_]))
    with _twin(twin):
        for name in ("relu", "sigmoid", "tanh"):
            out = _call_both(f"{name}_forward", True, x)[0]
            assert out.dtype == _result_dtype(x)
            _call_both(f"{name}_backward", True, dout, x if name == "relu" else out)
        _call_both("leaky_relu_forward", True, x, alpha)
        _call_both("leaky_relu_backward", True, dout, x, alpha)
        _call_both("dropout_forward", True, x, mask, 2.0)
        _call_both("dropout_backward", True, dout, mask, 0.5)
        if shape:  # a mismatched shape must be refused
            bad = data.draw(arrays(shape[:-1] + (shape[-1] + 1,)))
            _call_both("relu_backward", False, bad, x)
            _call_both("dropout_forward", False, x, relayout(np.ones(bad.shape, bool), "C"), 1.0)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


_DIMS = st.one_of(st.integers(0, 5), st.integers(-3, -1), st.sampled_from([2.0, True, np.int8(3), np.uint64(2)]))


@given(shape=st.one_of(_DIMS, st.lists(_DIMS, max_size=3).map(tuple)), as_list=st.booleans(),
       drop_ratio=st.one_of(st.floats(0, 1), st.sampled_from([0.0, 1.0, 1, -0.1, 1.5, np.nan, np.inf,
                                                              np.float32(0.25), True, "0.5"])),
       seed=st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([-1, 2**64, 1.0, np.uint64(2**64 - 1), True])),
       twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_dropout_mask(shape, as_list, drop_ratio, seed, twin):
    dims = shape if isinstance(shape, tuple) else (shape,)
    ok = (all(_is_int(v) and v >= 0 for v in dims)
          and isinstance(drop_ratio, (int, float, np.floating)) and not isinstance(drop_ratio, bool)
          and 0 <= drop_ratio <= 1 and _is_int(seed) and 0 <= seed < 2**64)
    with _twin(twin):
        got = _call_both("dropout_mask", ok, list(shape) if as_list and isinstance(shape, tuple) else shape,
                         drop_ratio, seed)
    if ok:
        mask = got[0]
        assert mask.dtype == np.bool_ and mask.shape == tuple(int(v) for v in dims)
        if drop_ratio == 0:
            assert mask.all()
        if drop_ratio == 1:
            assert not mask.any()


# ---------------------------------------------------------------------------------------------------------------
# Losses


@given(n=st.integers(0, 6), k=st.integers(0, 6), one_hot=st.booleans(), bad_label=st.booleans(), data=st.data(),
       twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_losses(n, k, one_hot, bad_label, data, twin):
    x = data.draw(arrays((n, k)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    labels = rng.integers(0, max(k, 1), n)
    if bad_label and n:
        labels[rng.integers(n)] = data.draw(st.sampled_from([-1, k, k + 5]))
    labels_ok = not (bad_label and n)
    t = np.eye(max(k, 1), dtype=np.float64)[np.clip(labels, 0, max(k, 1) - 1)][:, :k] if one_hot else labels
    if one_hot and bad_label and n:
        t = t.copy()
        t[0] = 1.0  # a row that is not one-hot ...
        labels_ok = k == 1  # ... unless there is a single class
    ok = n >= 1 and k >= 1 and labels_ok
    t = relayout(np.asarray(t), data.draw(st.sampled_from(LAYOUTS)))
    dout = data.draw(arrays((n, k)))
    with _twin(twin):
        probs = _call_both("softmax_forward", True, x)[0]
        # dx = p * (dout - sum(p * dout)): the row sum is rounded in another order, by ~k ulps of max |dout|
        eps = float(np.finfo(_result_dtype(dout, probs)).eps)
        _call_both("softmax_backward", True, dout, relayout(probs, data.draw(st.sampled_from(LAYOUTS))),
                   extra_atol=4 * k * eps * _m(dout))
        _call_both("softmax_backward", False, data.draw(arrays((n, k + 1))), probs)
        _call_both("softmax_backward", False, dout, probs.reshape(-1))
        res = _call_both("softmax_cross_entropy_forward", ok, x, t)
        _call_both("svm_loss", ok, x, t)
        if ok:
            loss, probs = res
            assert loss.shape == () and loss.dtype == _result_dtype(x)
            _call_both("softmax_cross_entropy_backward", True, relayout(probs, data.draw(st.sampled_from(LAYOUTS))),
                       t, data.draw(st.floats(-3, 3)))


# ---------------------------------------------------------------------------------------------------------------
# Normalization


def _m(a) -> float:
    """The largest magnitude in ``a`` (0 for an empty array)."""
    return float(np.max(np.abs(a), initial=0.0))


def _norm_atol(dout, x, gamma, mean, inv_std) -> float:
    """Rounding allowance for a normalization's dx: a sum of terms of size |dout*gamma*inv_std|*(1 + xhat**2),
    which cancel to ~0 for one-element statistics (inv_std = 1/sqrt(eps), terms ~1e3)."""
    xhat = (_m(x) + _m(mean)) * _m(inv_std)
    dtype = np.result_type(dout.dtype, gamma.dtype, np.float32 if x.dtype == np.float32 else np.float64)
    return 16 * float(np.finfo(dtype).eps) * _m(dout) * _m(gamma) * _m(inv_std) * (1 + xhat * xhat)



def _fuzz_batchrenorm(x, dout, gamma, beta, running_std, momentum, rmax, dmax):
    """Batch renormalization as batch norm above: the running statistics updated in place (nothing written when
    refused), every output against the float64 twin, the backward with r and d as constants."""
    c = gamma.shape[0]
    rm_k, rs_k = np.full(c, 0.25, gamma.dtype), running_std.astype(gamma.dtype)
    rm_r, rs_r = rm_k.copy(), rs_k.copy()
    try:
        res = K.batchrenorm_forward_train(x, gamma, beta, rm_k, rs_k, rmax, dmax, momentum)
    except ValueError as e:
        assert x.shape[0] == 0 and str(e).startswith("batchrenorm_forward_train: N must be >= 1"), e
        np.testing.assert_array_equal(rm_k, rm_r)  # nothing written
        np.testing.assert_array_equal(rs_k, rs_r)
        return
    ref = R.batchrenorm_forward_train(x, gamma, beta, rm_r, rs_r, rmax, dmax, momentum)
    rm64, rs64 = np.full(c, 0.25), running_std.astype(gamma.dtype).astype(np.float64)
    exact = R.batchrenorm_forward_train(_up(x), _up(gamma), _up(beta), rm64, rs64, rmax, dmax, momentum)
    for g, w, e in zip((*res, rm_k, rs_k), (*ref, rm_r, rs_r), (*exact, rm64, rs64), strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_allclose(g, e, **TOL[g.dtype])
    _, mean, inv_std, r, d = res
    _call_both("batchrenorm_backward", True, dout, x, gamma, mean, inv_std, r, d,
               extra_atol=_norm_atol(dout, x, gamma * r, mean, inv_std))
    _call_both("batchrenorm_forward_infer", True, x, gamma, beta, rm_k.copy(), rs_k.copy(), oracle64=True)


@given(n=st.integers(0, 5), c=st.integers(1, 4),
       hw=st.one_of(st.none(), st.tuples(st.integers(1, 6), st.integers(1, 6))), groups=st.integers(1, 5),
       data=st.data(), twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_normalization(n, c, hw, groups, data, twin):
    shape = (n, c) if hw is None else (n, c, *hw)
    x, dout = data.draw(arrays(shape)), data.draw(arrays(shape, dtypes=_FLOATS))
    gamma, beta = data.draw(arrays((c,), dtypes=_FLOATS)), data.draw(arrays((c,), dtypes=_FLOATS))
    rv = np.abs(data.draw(arrays((c,), dtypes=_FLOATS))) + 0.5
    momentum = data.draw(st.floats(0, 1))
    with _twin(twin):
        rm_k, rv_k = np.zeros(c, gamma.dtype), rv.astype(gamma.dtype)
        rm_r, rv_r = rm_k.copy(), rv_k.copy()
        ok = n >= 1
        try:
            res = K.batchnorm_forward_train(x, gamma, beta, rm_k, rv_k, momentum)
        except ValueError as e:
            assert not ok and str(e).startswith("batchnorm_forward_train: N must be >= 1"), e
            np.testing.assert_array_equal(rm_k, rm_r)  # nothing written
        else:
            assert ok
            ref = R.batchnorm_forward_train(x, gamma, beta, rm_r, rv_r, momentum)
            rm64, rv64 = np.zeros(c), rv.astype(gamma.dtype).astype(np.float64)
            exact = R.batchnorm_forward_train(_up(x), _up(gamma), _up(beta), rm64, rv64, momentum)
            for g, w, e in zip((*res, rm_k, rv_k), (*ref, rm_r, rv_r), (*exact, rm64, rv64), strict=True):
                assert g.dtype == w.dtype
                np.testing.assert_allclose(g, e, **TOL[g.dtype])
            _call_both("batchnorm_backward", True, dout, x, gamma, res[1], res[2],
                       extra_atol=_norm_atol(dout, x, gamma, res[1], res[2]))
        _call_both("batchnorm_forward_infer", True, x, gamma, beta, rm_k.copy(), rv_k.copy(), oracle64=True)
        _fuzz_batchrenorm(x, dout, gamma, beta, np.sqrt(rv), momentum, data.draw(st.floats(1, 4)),
                          data.draw(st.floats(0, 3)))
        lg = data.draw(arrays(shape[1:], dtypes=_FLOATS))
        ln = _call_both("layernorm_forward", True, x, lg, lg * 0.5, oracle64=True)
        _call_both("layernorm_backward", True, dout, x, lg, ln[1], ln[2],
                   extra_atol=_norm_atol(dout, x, lg, ln[1], ln[2]))
        if hw is not None:
            gn = _call_both("groupnorm_forward", c % groups == 0, x, gamma, beta, groups, oracle64=True)
            if gn is not None:
                _call_both("groupnorm_backward", True, dout, x, gamma, groups, gn[1], gn[2],
                           extra_atol=_norm_atol(dout, x, gamma, gn[1], gn[2]))
            inn = _call_both("instancenorm_forward", True, x, gamma, beta, oracle64=True)
            _call_both("instancenorm_backward", True, dout, x, gamma, inn[1], inn[2],
                       extra_atol=_norm_atol(dout, x, gamma, inn[1], inn[2]))


# ---------------------------------------------------------------------------------------------------------------
# Optimizers: in place on views of the caller's arrays

_WRITEABLE = ["C", "F", "negative", "slice"]
_STEPS = {
    "sgd_step": ((), {"lr": 0.1, "weight_decay": 0.01}),
    "momentum_step": (("velocity",), {"lr": 0.1, "momentum": 0.9}),
    "nesterov_step": (("buf",), {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.1}),
    "adagrad_step": (("h",), {"lr": 0.1}),
    "rmsprop_step": (("sq",), {"lr": 0.01}),
    "adam_step": (("m", "v"), {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "bias_correction1": 0.1,
                               "bias_correction2": 0.01}),
    "adamw_step": (("m", "v"), {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "bias_correction1": 0.1,
                                "bias_correction2": 0.01, "weight_decay": 0.1}),
    "adabound_step": (("m", "v"), {"lr": 0.01, "final_lr": 0.1, "gamma": 0.001, "beta1": 0.9, "beta2": 0.99,
                                   "eps": 1e-8, "step": 2}),
    "swats_adam_step": (("m", "v"), {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8, "step": 3,
                                     "weight_decay": 0.1}),
    "swats_sgd_step": (("buf",), {"lr": 0.1, "beta1": 0.9, "weight_decay": 0.01}),
}


@given(name=st.sampled_from(sorted(_STEPS)), shape=shapes, dtype=st.sampled_from(_FLOATS),
       layout=st.sampled_from(LAYOUTS), data=st.data(), twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_optimizer_steps_in_place(name, shape, dtype, layout, data, twin):
    states, hyper = _STEPS[name]
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    base = {"param": np.array(rng.standard_normal(shape), dtype)}  # np.array: 0-d stays an array
    for s in states:
        base[s] = np.array(np.abs(rng.standard_normal(shape)), dtype)
    grad = data.draw(arrays(shape))
    kernel_arrays = {k: relayout(v, layout) for k, v in base.items()}
    ref_arrays = {k: v.copy() for k, v in base.items()}
    ok = layout != "readonly"
    with _twin(twin):
        try:
            getattr(K, name)(kernel_arrays["param"], grad, *(kernel_arrays[s] for s in states), **hyper)
        except ValueError as e:
            assert not ok and re.fullmatch(rf"{name}: param must be writeable.*", str(e)), e
            for k, v in kernel_arrays.items():
                np.testing.assert_array_equal(v, base[k])
            return
        assert ok
        getattr(R, name)(ref_arrays["param"], grad.astype(dtype), *(ref_arrays[s] for s in states), **hyper)
    for k, v in kernel_arrays.items():
        assert v.dtype == dtype
        np.testing.assert_allclose(v, ref_arrays[k], **TOL[np.dtype(dtype)], err_msg=k)


# ---------------------------------------------------------------------------------------------------------------
# Recurrent: the RNN's, LSTM's and GRU's forward and backward passes

_GATES = {"rnn": 1, "lstm": 4, "gru": 3}
#: One argument given a wrong size (the kernel and its twin must refuse it alike, naming it), or none.
_MISSIZED = [None, "h0", "Wx", "Wh", "b", "x_steps"]


def _missize(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """``a`` with one more element along ``axis``."""
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, 1)
    return np.pad(a, pad)


@given(cell=st.sampled_from(sorted(_GATES)), n=st.integers(0, 17), t=st.integers(1, 3), d=st.integers(1, 4),
       h=st.integers(1, 9), missized=st.sampled_from(_MISSIZED), variant=st.integers(0, 3), data=st.data(),
       twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_recurrent(cell, n, t, d, h, missized, variant, data, twin):
    """Any dtypes and memory layouts, batches up to 17 (16 and up: the LSTM's batch cut into row parts), every
    LSTM gate layout, both GRU forms; the backward pass on the forward's results in new layouts."""
    g = _GATES[cell] * h
    x = data.draw(arrays((n, t, d)))
    h0, c0 = data.draw(arrays((n, h))), data.draw(arrays((n, h)))
    Wx, Wh, b = data.draw(arrays((d, g))), data.draw(arrays((h, g))), data.draw(arrays((g,)))
    if cell == "lstm":
        kw = {"layout": ("ifgo", "ifog", "fgio", "oigf")[variant]}
    elif cell == "gru":
        kw = {"form": "torch" if variant % 2 else "dlfs2"}
    else:
        kw = {}
    torch_gru = kw.get("form") == "torch"
    bh = data.draw(arrays((g,))) if torch_gru else None
    if missized == "x_steps":
        x = x[:, :0]  # T = 0
    elif missized is not None:
        bad = {"h0": h0, "Wx": Wx, "Wh": Wh, "b": b}[missized]
        bad = _missize(bad, 0 if missized == "Wh" else -1)  # Wh gains a row: no longer (H, gates*H)
        h0, Wx, Wh, b = (bad if k == missized else v for k, v in (("h0", h0), ("Wx", Wx), ("Wh", Wh), ("b", b)))
    ok = missized is None
    state = (h0, c0) if cell == "lstm" else (h0,)
    bias = (b, bh) if torch_gru else (b,)
    with _twin(twin):
        fwd = _call_both(f"{cell}_forward", ok, x, *state, Wx, Wh, *bias, **kw)
        if not ok:
            return
        out_dtype = _result_dtype(x, *state, Wx, Wh, *bias)
        assert all(o.dtype == out_dtype for o in fwd)
        assert fwd[0].shape == (n, t, h)
        dhs = data.draw(arrays((n, t, h), dtypes=_FLOATS))
        saved = [relayout(o, data.draw(st.sampled_from(LAYOUTS))) for o in fwd]
        if cell == "lstm":
            dc_last = data.draw(st.one_of(st.none(), arrays((n, h), dtypes=_FLOATS)))
            grads = _call_both("lstm_backward", True, dhs, dc_last, x, h0, c0, Wx, Wh, *saved, **kw)
        else:
            grads = _call_both(f"{cell}_backward", True, dhs, x, h0, Wx, Wh, *saved, **kw)
    want = [x.shape, h0.shape, *((c0.shape,) if cell == "lstm" else ()), Wx.shape, Wh.shape, b.shape,
            *((bh.shape,) if torch_gru else ())]
    assert [gr.shape for gr in grads] == want


# ---------------------------------------------------------------------------------------------------------------
# Sequences: embedding, embedding dot, time-step softmax cross-entropy, global-norm gradient clipping

_IDS = [np.int64, np.int32, np.uint8, np.int8, np.float64, np.bool_]


@given(v=st.integers(1, 6), dim=st.integers(1, 4), ids_shape=st.lists(st.integers(0, 4), max_size=2).map(tuple),
       ids_dtype=st.sampled_from(_IDS), bad_id=st.booleans(), data=st.data(),
       twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_embedding(v, dim, ids_shape, ids_dtype, bad_id, data, twin):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ids = rng.integers(0, v, ids_shape)
    if bad_id and ids.size:
        ids.flat[rng.integers(ids.size)] = data.draw(st.sampled_from([-1, v, v + 7]))
    ids = ids.astype(ids_dtype)  # -1 as uint8 is 255: out of range still
    ok = np.dtype(ids_dtype).kind in "iu" and bool(np.all((ids >= 0) & (ids < v)))
    ids = relayout(ids, data.draw(st.sampled_from(LAYOUTS)))
    W = data.draw(arrays((v, dim)))
    dout = data.draw(arrays(ids_shape + (dim,), dtypes=_FLOATS))
    with _twin(twin):
        out = _call_both("embedding_forward", ok, W, ids)
        _call_both("embedding_backward", ok, dout, ids, v)
        if ok:
            assert out[0].shape == ids_shape + (dim,) and out[0].dtype == _result_dtype(W)
        if ok and len(ids_shape) == 1:  # embedding_dot: one id per row of h
            h = data.draw(arrays((ids_shape[0], dim)))
            _call_both("embedding_dot_forward", True, W, ids, h)
            _call_both("embedding_dot_backward", True, data.draw(arrays(ids_shape, dtypes=_FLOATS)), W, ids, h)
            _call_both("embedding_dot_forward", False, W, ids, _missize(h))


@given(n=st.integers(0, 4), t=st.integers(1, 4), v=st.integers(1, 6), one_hot=st.booleans(),
       ignored=st.floats(0, 1), average=st.sampled_from(["valid", "batch"]), data=st.data(),
       twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_time_softmax_cross_entropy(n, t, v, one_hot, ignored, average, data, twin):
    x = data.draw(arrays((n, t, v)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    labels = rng.integers(0, v, (n, t))
    skip = rng.random((n, t)) < ignored
    labels[skip] = -1
    counted = int((~skip).sum())
    if one_hot:  # one-hot labels have no ignored position
        labels, counted = np.where(skip, 0, labels), n * t
        t_arg = np.eye(v)[labels]
    else:
        t_arg = labels
    t_arg = relayout(t_arg, data.draw(st.sampled_from(LAYOUTS)))
    ok = n >= 1 and (counted >= 1 or average == "batch")
    with _twin(twin):
        res = _call_both("time_softmax_cross_entropy_forward", ok, x, t_arg, average=average)
        if ok:
            loss, probs = res
            assert loss.shape == () and loss.dtype == _result_dtype(x)
            probs = relayout(probs, data.draw(st.sampled_from(LAYOUTS)))
            _call_both("time_softmax_cross_entropy_backward", True, probs, t_arg, -1, data.draw(st.floats(-3, 3)),
                       average=average)


@given(shapes=st.lists(shapes, min_size=0, max_size=3), dtype=st.sampled_from(_FLOATS),
       layouts=st.lists(st.sampled_from(LAYOUTS), min_size=3, max_size=3), max_norm=st.floats(0, 20),
       data=st.data(), twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_clip_grads_in_place(shapes, dtype, layouts, max_norm, data, twin):
    """Scaled in place on views of the caller's arrays; a read-only one refuses the call before any is scaled."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    base = [np.array(rng.standard_normal(s) * 3, dtype) for s in shapes]
    grads = [relayout(g, lay) for g, lay in zip(base, layouts, strict=False)]
    ref = [g.copy() for g in base]
    readonly = [i for i, g in enumerate(grads) if not g.flags.writeable]
    with _twin(twin):
        try:
            norm = K.clip_grads(grads, max_norm)
        except ValueError as e:
            assert readonly and re.fullmatch(rf"clip_grads: grads\[{readonly[0]}\] must be writeable.*", str(e)), e
            for g, b in zip(grads, base, strict=True):
                np.testing.assert_array_equal(g, b)  # nothing scaled
            return
        assert not readonly
        want = R.clip_grads(ref, max_norm)
    np.testing.assert_allclose(norm, want, **TOL[np.dtype(dtype)])
    for g, r in zip(grads, ref, strict=True):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, r, **TOL[np.dtype(dtype)])


# ---------------------------------------------------------------------------------------------------------------
# Attention, and the row softmax, GELU and positional encoding of a Transformer

#: Query and key lengths: short ones, and ones past a 64-long block of the kernel (a tail block).
_LENGTHS = [1, 2, 3, 5, 9, 65, 70]


@st.composite
def attention_mask(draw, shape, fits=True):
    """None, a bool mask or an additive float mask (some -inf) of a shape broadcastable to ``shape`` (N, H, S, T),
    or with ``fits`` False one that is not."""
    kind = draw(st.sampled_from(["bool", "additive"] if not fits else [None, "bool", "additive"]))
    if kind is None:
        return None
    dims = [draw(st.sampled_from([1, n])) for n in shape]
    dims = dims[draw(st.integers(0, 2)):]  # fewer axes broadcast too
    if not fits:
        dims = [*dims[:-1], shape[-1] + 1]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "bool":
        mask = rng.random(dims) < 0.8
    else:
        mask = rng.standard_normal(dims)
        mask[rng.random(dims) < 0.2] = -np.inf
    return relayout(mask.astype(draw(st.sampled_from(_FLOATS))) if kind == "additive" else mask,
                    draw(st.sampled_from(LAYOUTS)))


def _attention_atol(dout, q, k, v, out, lse, mask, causal, scale, dropout_p, seed) -> tuple[float, ...]:
    """Rounding allowance for attention's dq, dk and dv. dq and dk sum dS = P (dP - delta) times k or q, and dS
    cancels to ~0 from terms of size P (|dP| + |delta|) (exactly 0 where a row attends one key: P = 1, dP =
    delta; measured 3.0e-6 off 1.8e-8 in a float32 dk); P itself is off by ~eps (|s| + |lse|) relative. Those
    magnitudes in float64, with the twin's own helpers for P and the dropout factors."""
    swap = lambda a: np.swapaxes(a, -1, -2)  # noqa: E731
    eps = float(np.finfo(_result_dtype(dout, q, k, v)).eps)
    q, k, v, dout, out, lse = (np.asarray(a, np.float64) for a in (q, k, v, dout, out, lse))
    scale = 1 / np.sqrt(q.shape[-1]) if scale is None else scale
    additive = mask is not None and mask.dtype != np.bool_
    mask = mask.astype(np.float64) if additive else mask
    p = R.attention._weights(R.attention._scores(q, k, mask, causal, scale), lse)
    z = R.attention._keep(p.shape, dropout_p, seed, np.dtype(np.float64))
    z = np.ones_like(p) if z is None else z
    dp, dp_abs = (dout @ swap(v)) * z, (np.abs(dout) @ swap(np.abs(v))) * z
    delta, delta_abs = (dout * out).sum(-1, keepdims=True), (np.abs(dout * out)).sum(-1, keepdims=True)
    s_abs = scale * (np.abs(q) @ swap(np.abs(k))) + np.where(np.isfinite(lse), np.abs(lse), 0)[..., None]
    if additive:
        s_abs = s_abs + np.where(np.isfinite(mask), np.abs(mask), 0)
    terms = p * (dp_abs + delta_abs + np.abs(dp - delta) * s_abs)
    bounds = (scale * (terms @ np.abs(k)), scale * (swap(terms) @ np.abs(q)), swap(p * z * (1 + s_abs)) @ np.abs(dout))
    return tuple(16 * eps * _m(b) for b in bounds)


@given(n=st.integers(1, 2), h=st.integers(1, 2), s=st.sampled_from(_LENGTHS), t=st.sampled_from(_LENGTHS),
       d=st.integers(1, 5), dv=st.integers(1, 5), causal=st.booleans(), scale=st.sampled_from([None, 0.02, 0.7]),
       dropout=st.sampled_from([0.0, 0.3]), missized=st.sampled_from([None, None, None, "k", "v", "mask"]),
       data=st.data(), twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_attention(n, h, s, t, d, dv, causal, scale, dropout, missized, data, twin):
    """Masks of every kind and broadcast shape (rows that attend nothing give zeros, lse -inf), causal, any
    dtypes and layouts, the backward on the forward's results; a k or v of another size, or a mask that does not
    broadcast, is refused alike by the kernel and its twin. The values are of size ~3: the small scale keeps some
    softmaxes unsaturated, whose gradients are not ~0."""
    q = data.draw(arrays((n, h, s, d)))
    k = data.draw(arrays((n, h, t, d + (missized == "k"))))
    v = data.draw(arrays((n, h, t + (missized == "v"), dv)))
    mask = data.draw(attention_mask((n, h, s, t), fits=missized != "mask"))
    kw = {"mask": mask, "causal": causal, "scale": scale, "dropout_p": dropout,
          "seed": data.draw(st.integers(0, 2**64 - 1))}
    ok = missized is None
    with _twin(twin):
        res = _call_both("attention_forward", ok, q, k, v, **kw)
        if not ok:
            return
        out, lse = res
        assert out.shape == (n, h, s, dv) and lse.shape == (n, h, s) and out.dtype == _result_dtype(q, k, v)
        dout = data.draw(arrays(out.shape, dtypes=_FLOATS))
        saved = [relayout(a, data.draw(st.sampled_from(LAYOUTS))) for a in (out, lse)]
        grads = _call_both("attention_backward", True, dout, q, k, v, *saved, **kw,
                           extra_atol=_attention_atol(dout, q, k, v, out, lse, **kw))
    assert [g.shape for g in grads] == [q.shape, k.shape, v.shape]


@given(shape=st.lists(st.integers(1, 20), min_size=1, max_size=3).map(tuple), approximate=st.sampled_from(
    ["none", "tanh"]), data=st.data(), twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_transformer_elementwise(shape, approximate, data, twin):
    x, dout = data.draw(arrays(shape)), data.draw(arrays(shape, dtypes=_FLOATS))
    with _twin(twin):
        _call_both("gelu_forward", True, x, approximate)
        _call_both("gelu_backward", True, dout, x, approximate)
        out = _call_both("softmax_lastaxis_forward", True, x)[0]
        _call_both("softmax_lastaxis_backward", True, dout, relayout(out, data.draw(st.sampled_from(LAYOUTS))))
        _call_both("gelu_forward", False, x, "exact")
        if len(shape) == 3:
            _call_both("positional_encoding", True, x)


# ---------------------------------------------------------------------------------------------------------------
# Matrix products and the affine layer's helpers


@given(m=st.integers(0, 70), k=st.integers(0, 70), n=st.integers(0, 70), missized=st.booleans(),
       layout=st.sampled_from(_WRITEABLE), data=st.data(), twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_linalg(m, k, n, missized, layout, data, twin):
    """Products of any sizes (empty ones too), dtypes and layouts, with a bias, column sums, and add_into on a view
    of the caller's array."""
    a = data.draw(arrays((m, k)))
    b = data.draw(arrays((k + missized, n)))
    bias = data.draw(arrays((n,)))
    ok = not missized
    with _twin(twin):
        _call_both("matmul", ok, a, b)
        _call_both("matmul_bias", ok, a, b, bias)
        _call_both("column_sum", True, a)
        dtype = data.draw(st.sampled_from(_FLOATS))
        base = np.random.default_rng(m * 71 + n).standard_normal((m, n)).astype(dtype)
        into, ref = relayout(base, layout), base.copy()
        other = data.draw(arrays((m, n)))
        assert K.add_into(into, other) is into
        R.add_into(ref, other)
    np.testing.assert_allclose(into, ref, **TOL[np.dtype(dtype)])


# ---------------------------------------------------------------------------------------------------------------
# The normalization zoo's reparametrizations: weight and spectral normalization


def _cancel_atol(dtype, dw, scale) -> float:
    """Rounding allowance for a gradient that is ``dw`` less its projection, times ``scale``: terms of size
    |dw| * |scale| that cancel to ~0 where a unit has a single weight (measured 6e-6 off 0 in float32)."""
    return 16 * float(np.finfo(np.result_type(dtype, np.float32)).eps) * _m(dw) * _m(scale)


@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), dim=st.integers(-4, 3),
       missized=st.booleans(), data=st.data(), twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_weightnorm(shape, dim, missized, data, twin):
    """w = g v / ||v|| over every axis but ``dim`` (out of range: refused), any dtypes and layouts; the affine
    form's product and gradients; a g of another length is refused alike."""
    v = data.draw(arrays(shape))
    ok_dim = -len(shape) <= dim < len(shape)
    units = shape[dim] if ok_dim else 1
    g = data.draw(arrays((units + missized,)))
    ok = ok_dim and not missized and len(shape) >= 2  # a layer's weight
    with _twin(twin):
        res = _call_both("weightnorm_forward", ok, v, g, dim)
        if ok:
            w, norm = res
            assert w.shape == shape and norm.shape == (units,)
            dw = data.draw(arrays(shape, dtypes=_FLOATS))
            _call_both("weightnorm_backward", True, dw, v, g, relayout(norm, data.draw(st.sampled_from(LAYOUTS))),
                       dim, extra_atol=_cancel_atol(w.dtype, dw, g / np.where(norm == 0, 1, norm)))
        if len(shape) == 2 and not missized:  # v as an affine weight (in, out), x (N, in)
            x = data.draw(arrays((data.draw(st.integers(0, 4)), shape[0])))
            b = data.draw(arrays((shape[1],)))
            gg = data.draw(arrays((shape[1],)))
            out, t, norm = _call_both("weightnorm_affine_forward", True, x, v, gg, b)
            dout = data.draw(arrays(out.shape, dtypes=_FLOATS))
            dV = np.asarray(x, np.float64).T @ np.asarray(dout, np.float64)  # dv is dV less its projection
            _call_both("weightnorm_affine_backward", True, dout, x, v, gg, norm, t,
                       extra_atol=(0.0, _cancel_atol(out.dtype, dV, gg / np.where(norm == 0, 1, norm)), 0.0, 0.0))
            _call_both("weightnorm_affine_forward", False, x, v, gg, _missize(b))


@given(shape=st.lists(st.integers(1, 5), min_size=2, max_size=3).map(tuple), dim=st.integers(0, 2),
       dtype=st.sampled_from(_FLOATS), iterations=st.integers(1, 3), training=st.booleans(),
       layouts=st.lists(st.sampled_from(LAYOUTS), min_size=2, max_size=2), data=st.data(),
       twin=st.sampled_from(["serial", "parallel"]))
def test_fuzz_spectralnorm(shape, dim, dtype, iterations, training, layouts, data, twin):
    """The power iterations update u and v in place (views of the caller's arrays); a read-only one is refused
    before anything is written; the backward on the forward's sigma."""
    dim = min(dim, len(shape) - 1)
    w = data.draw(arrays(shape, dtypes=_FLOATS))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    units = shape[dim]
    base = {"u": rng.standard_normal(units).astype(w.dtype), "v": rng.standard_normal(w.size // units).astype(w.dtype)}
    mine = {k: relayout(a, lay) for (k, a), lay in zip(base.items(), layouts, strict=True)}
    ref = {k: a.copy() for k, a in base.items()}
    readonly = [k for k, a in mine.items() if not a.flags.writeable]
    with _twin(twin):
        try:
            w_sn, sigma = K.spectralnorm_forward(w, mine["u"], mine["v"], dim, iterations, 1e-12, training)
        except ValueError as e:
            assert readonly and re.fullmatch(rf"spectralnorm_forward: {readonly[0]} must be writeable.*", str(e)), e
            for k, a in mine.items():
                np.testing.assert_array_equal(a, base[k])  # nothing written
            return
        assert not readonly
        want_sn, want_sigma = R.spectralnorm_forward(w, ref["u"], ref["v"], dim, iterations, 1e-12, training)
        tol = TOL[w.dtype]
        scale = float(np.max(np.abs(want_sn), initial=0.0))
        np.testing.assert_allclose(w_sn, want_sn, rtol=tol["rtol"] * 10, atol=tol["atol"] + tol["rtol"] * 10 * scale)
        np.testing.assert_allclose(sigma, want_sigma, rtol=tol["rtol"] * 10)
        for k in ("u", "v"):
            np.testing.assert_allclose(mine[k], ref[k], rtol=tol["rtol"] * 10, atol=tol["atol"], err_msg=k)
        dw = data.draw(arrays(shape, dtypes=_FLOATS))
        # sigma > 0 or refused (an evaluation's u and v are arbitrary, so u^T W v may be 0 or negative); against
        # the float64 twin: dw less its projection cancels (a 1x1 weight's gradient is ~0, the float32 twin's
        # rounding 4e-6 of 1)
        sig = max(abs(float(want_sigma)), 1e-30)
        extra = _cancel_atol(w.dtype, dw, (1 + _m(ref["u"]) * _m(ref["v"]) * _m(w) / sig) / sig)
        _call_both("spectralnorm_backward", float(want_sigma) > 0, dw, w, ref["u"], ref["v"], float(want_sigma), dim,
                   oracle64=True, extra_atol=extra)
