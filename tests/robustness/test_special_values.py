"""Special values, empty batches, dtypes and untouched inputs, across every public kernel.

* NaN, +Inf and -Inf go through every forward and backward as they do in PyTorch (compared with torch where it is
  importable; float32 and float64, both twins).
* Zero-size batches: the kernels follow ``docs/design.md`` ("elementwise, conv, pooling, im2col return empty
  arrays of the right shape; batchnorm train, losses raise ValueError N must be >= 1"), and the reference twin
  does exactly the same for every kernel.
* float32 in, float32 out for every kernel; ints and bools promote to float64 as NumPy does.
* No input array is modified, except the ones a kernel updates in place by contract.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from fastnn.bench_cases import CASES

from ..conftest import TOL
from .cases import CALLS, INPLACE, arrays_of, assert_unchanged, copies, outputs

try:  # torch is the oracle where importable (not a dependency); the dtype and empty-batch tests need none
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed (comparison only)")
# NumPy (the reference twins) warns on arithmetic with NaN and Inf, which is what these tests feed it
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning",
                                        "ignore:overflow encountered:RuntimeWarning")
F = torch.nn.functional if torch is not None else None

SPECIALS = (np.nan, np.inf, -np.inf)


def _with_specials(shape, dtype, rng, *, sparse_even=False):
    """Normal values with NaN, +Inf, -Inf sprinkled in (only at even (h, w) positions with ``sparse_even``)."""
    x = rng.standard_normal(shape)
    if sparse_even:
        mask = np.zeros(shape, bool)
        mask[..., ::2, ::2] = rng.random(mask[..., ::2, ::2].shape) < 0.3
    else:
        mask = rng.random(shape) < 0.15
    x[mask] = rng.choice(SPECIALS, mask.sum())
    return x.astype(dtype)


def _t(a, grad=False):
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.requires_grad_() if grad else t


def _close(actual, expected, dtype):
    actual = np.asarray(actual)
    expected = expected.detach().numpy() if hasattr(expected, "detach") else np.asarray(expected)
    assert actual.dtype == dtype, f"dtype {actual.dtype}"
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg="NaN positions differ")
    np.testing.assert_array_equal(np.isposinf(actual), np.isposinf(expected), err_msg="+inf positions differ")
    np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected), err_msg="-inf positions differ")
    np.testing.assert_allclose(actual, expected.astype(actual.dtype), **TOL[np.dtype(dtype)], equal_nan=True)


def _grad(out, inputs, dout):
    return torch.autograd.grad(out, inputs, _t(dout))


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def fdtype(request):
    return np.dtype(request.param)


@needs_torch
@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize("op", ["relu", "sigmoid", "tanh", "leaky_relu"])
def test_elementwise_specials_like_torch(op, impl, fdtype, twin):
    rng = np.random.default_rng(0)
    x = _with_specials((3, 7, 11), fdtype, rng)
    dout = _with_specials((3, 7, 11), fdtype, rng)
    x0, d0 = x.copy(), dout.copy()
    tx = _t(x, grad=True)
    if op == "leaky_relu":
        out = impl.leaky_relu_forward(x, 0.1)
        tout = F.leaky_relu(tx, 0.1)
        dx = impl.leaky_relu_backward(dout, x, 0.1)
    else:
        out = getattr(impl, f"{op}_forward")(x)
        tout = getattr(torch, op)(tx)
        dx = getattr(impl, f"{op}_backward")(dout, x if op == "relu" else out)
    _close(out, tout, fdtype)
    _close(dx, _grad(tout, tx, dout)[0], fdtype)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(dout, d0)


@needs_torch
@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
def test_softmax_cross_entropy_specials_like_torch(impl, fdtype, twin):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 5)).astype(fdtype)
    x[1, 2] = np.nan
    x[3, 0] = np.inf
    x[4, 4] = -np.inf  # a -inf score is a zero probability, not a NaN
    x[5, :] = -np.inf  # nothing finite in the row: NaN, as torch
    t = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    clean = [0, 2, 6, 7]
    tx = _t(x, grad=True)
    logp = F.log_softmax(tx, dim=1)
    _close(impl.softmax_forward(x), logp.exp(), fdtype)
    loss, probs = impl.softmax_cross_entropy_forward(x, t)
    tloss = F.nll_loss(logp, _t(t))
    assert np.isnan(loss) and torch.isnan(tloss)
    _close(probs, logp.exp(), fdtype)
    # row by row, so rows without special values get a finite loss and gradient to compare
    tclean = _t(x[clean], grad=True)
    tl = F.cross_entropy(tclean, _t(t[clean]))
    loss_c, probs_c = impl.softmax_cross_entropy_forward(x[clean], t[clean])
    _close(np.asarray(loss_c), tl, fdtype)
    _close(impl.softmax_cross_entropy_backward(probs_c, t[clean]), torch.autograd.grad(tl, tclean)[0], fdtype)
    dx = impl.softmax_cross_entropy_backward(probs, t)
    _close(dx, torch.autograd.grad(F.nll_loss(logp, _t(t)), tx)[0], fdtype)


@needs_torch
@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize(("pool", "stride", "pad"), [(2, 2, 0), (3, 2, 1)])
def test_pooling_specials_like_torch(impl, pool, stride, pad, fdtype, twin):
    rng = np.random.default_rng(2)
    x = _with_specials((2, 3, 8, 8), fdtype, rng, sparse_even=True)  # one special per window at most
    dout_shape = (2, 3, (8 + 2 * pad - pool) // stride + 1, (8 + 2 * pad - pool) // stride + 1)
    dout = rng.standard_normal(dout_shape).astype(fdtype)
    tx = _t(x, grad=True)
    tmax = F.max_pool2d(tx, pool, stride, pad)
    out, argmax = impl.maxpool2d_forward(x, pool, pool, stride, pad)
    _close(out, tmax, fdtype)
    _close(impl.maxpool2d_backward(dout, argmax, x.shape, pool, pool, stride, pad), _grad(tmax, tx, dout)[0],
           fdtype)
    tavg = F.avg_pool2d(tx, pool, stride, pad, count_include_pad=True)
    _close(impl.avgpool2d_forward(x, pool, pool, stride, pad), tavg, fdtype)
    _close(impl.avgpool2d_backward(dout, x.shape, pool, pool, stride, pad), _grad(tavg, tx, dout)[0], fdtype)


@needs_torch
@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
def test_conv_specials_like_torch(impl, fdtype, twin):
    rng = np.random.default_rng(3)
    x = _with_specials((2, 3, 7, 7), fdtype, rng)
    x[:, :, ::3] = rng.standard_normal(x[:, :, ::3].shape)  # finite rows too, so some outputs stay finite
    W = rng.standard_normal((4, 3, 3, 3)).astype(fdtype)
    b = rng.standard_normal(4).astype(fdtype)
    # torch in float64 for both dtypes: its float32 CPU convolution (oneDNN) skips padded positions in the weight
    # gradient, so inf * (padding zero), NaN in its float64 path and in NumPy, never forms there. fastnn follows
    # the float64 path (padding is a zero that multiplies), in both dtypes.
    tx, tW, tb = _t(x.astype(np.float64), True), _t(W.astype(np.float64), True), _t(b.astype(np.float64), True)
    tout = F.conv2d(tx, tW, tb, stride=2, padding=1)
    out = impl.conv2d_forward(x, W, b, 2, 1)
    _close(out, tout, fdtype)
    dout = _with_specials(out.shape, fdtype, rng)
    tdx, tdW, tdb = _grad(tout, (tx, tW, tb), dout.astype(np.float64))
    dx, dW, db = impl.conv2d_backward(dout, x, W, 2, 1)
    _close(dx, tdx, fdtype)
    _close(dW, tdW, fdtype)
    _close(db, tdb, fdtype)


@needs_torch
@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize("special", SPECIALS, ids=["nan", "inf", "-inf"])
def test_batchnorm_special_in_one_channel_like_torch(impl, special, fdtype, twin):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3, 4, 4)).astype(fdtype)
    x[2, 1, 3, 0] = special  # channel 1 only
    gamma, beta = (rng.random(3) + 0.5).astype(fdtype), rng.standard_normal(3).astype(fdtype)
    rm, rv = np.zeros(3, fdtype), np.ones(3, fdtype)
    trm, trv = _t(rm.copy()), _t(rv.copy())
    tx, tg, tb = _t(x, True), _t(gamma, True), _t(beta, True)
    tout = F.batch_norm(tx, trm, trv, tg, tb, training=True, momentum=0.1, eps=1e-5)
    out, mean, inv_std = impl.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.9, 1e-5)
    _close(out, tout, fdtype)
    _close(rm, trm, fdtype)
    # torch keeps the unbiased batch variance in running_var; the biased one is fastnn's contract (as DLFS)
    M = x.size // 3
    _close(rv, 0.9 + (trv - 0.9) * (M - 1) / M, fdtype)
    assert np.isnan(out[:, 1]).all() and np.isfinite(out[:, [0, 2]]).all()
    dout = rng.standard_normal(x.shape).astype(fdtype)
    tdx, tdg, tdb = _grad(tout, (tx, tg, tb), dout)
    dx, dg, db = impl.batchnorm_backward(dout, x, gamma, mean, inv_std)
    _close(dx, tdx, fdtype)
    _close(dg, tdg, fdtype)
    _close(db, tdb, fdtype)
    infer = impl.batchnorm_forward_infer(x, gamma, beta, np.zeros(3, fdtype), np.ones(3, fdtype), 1e-5)
    tinfer = F.batch_norm(_t(x), _t(np.zeros(3, fdtype)), _t(np.ones(3, fdtype)), _t(gamma), _t(beta),
                          training=False, eps=1e-5)
    _close(infer, tinfer, fdtype)


@pytest.mark.parametrize("special", [np.inf, -np.inf], ids=["inf", "-inf"])
def test_batchnorm_mean_of_a_channel_with_inf_is_inf(special, twin):
    """Found here (the shifted moments gave NaN), fixed in fastnn/kernels/normalization.py."""
    x = np.random.default_rng(4).standard_normal((6, 3, 4, 4))
    x[2, 1, 3, 0] = special
    rm, rv = np.zeros(3), np.ones(3)
    _, mean, _ = K.batchnorm_forward_train(x, np.ones(3), np.zeros(3), rm, rv, 0.9, 1e-5)
    assert mean[1] == special and rm[1] == special


@needs_torch
@pytest.mark.parametrize("impl", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize("special", SPECIALS, ids=["nan", "inf", "-inf"])
def test_layernorm_special_in_one_sample_like_torch(impl, special, fdtype, twin):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 3, 4)).astype(fdtype)
    x[3, 1, 2] = special
    gamma, beta = (rng.random((3, 4)) + 0.5).astype(fdtype), rng.standard_normal((3, 4)).astype(fdtype)
    tx, tg, tb = _t(x, True), _t(gamma, True), _t(beta, True)
    tout = F.layer_norm(tx, (3, 4), tg, tb, eps=1e-5)
    out, mean, inv_std = impl.layernorm_forward(x, gamma, beta, 1e-5)
    _close(out, tout, fdtype)
    assert np.isnan(out[3]).all() and np.isfinite(out[[0, 1, 2, 4]]).all()
    dout = rng.standard_normal(x.shape).astype(fdtype)
    tdx, tdg, tdb = _grad(tout, (tx, tg, tb), dout)
    dx, dg, db = impl.layernorm_backward(dout, x, gamma, mean, inv_std)
    _close(dx, tdx, fdtype)
    _close(dg, tdg, fdtype)
    _close(db, tdb, fdtype)


# ---------------------------------------------------------------------------------------------------------------
# Zero-size batches

#: Kernels that raise "N must be >= 1" for N = 0 (a mean over the batch: docs/design.md).
RAISES_N = {"softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "svm_loss", "batchnorm_forward_train",
            "batchnorm_backward", "time_softmax_cross_entropy_forward", "time_softmax_cross_entropy_backward",
            "batchrenorm_forward_train", "batchrenorm_backward"}
#: Optimizer steps and gradient clipping act on parameters and their gradients, which have no batch axis (a 0-size
#: parameter is a no-op); so do the weight reparametrizations (weight and spectral normalization of a layer's
#: weight).
NO_BATCH = {name for name in K.__all__
            if {"param", "grads"} & set(CASES[name].args)
            or (name.startswith(("weightnorm", "spectralnorm")) and "affine" not in name)}
#: Every other kernel returns empty results for N = 0 (docs/design.md lists elementwise, conv, pooling, im2col;
#: the others follow the same rule, and so must a new kernel unless it is listed above).
EMPTY_OK = set(K.__all__) - RAISES_N - NO_BATCH

#: Arguments with a batch axis first, per kernel.
_BATCHED = {"x", "dout", "out", "probs", "t", "y", "argmax", "mask", "mean", "inv_std", "a",  # a: matmul's rows
            "q", "k", "v", "lse",  # attention
            "idx", "h"}  # the embedding's token ids, embedding_dot's hidden vectors
_BATCHED |= {"h0", "c0", "dc_last", "dhs", "hs", "cs", "acts"}  # the recurrent kernels
#: Kernels whose argument names mean something else than in the table above (weight normalization's v is a weight).
_BATCHED_OWN = {"weightnorm_affine_forward": {"x"}, "weightnorm_affine_backward": {"dout", "x", "t"},
                "add_into": {"a", "b"}}
#: Results computed from the weights alone, the same with any batch (the column norms of v), by output position.
_UNBATCHED_OUT = {"weightnorm_affine_forward": {2}}


def _empty_batch(name, kw):
    kw = dict(kw)
    batched = _BATCHED_OWN.get(name, _BATCHED)
    for k, v in kw.items():
        if isinstance(v, np.ndarray) and k in batched:
            kw[k] = v[:0]
    for k in ("input_shape", "shape"):  # col2im, the pooling backwards; dropout_mask
        if k in kw:
            kw[k] = (0, *kw[k][1:])
    if "col" in kw:  # col2im: N*OH*OW rows
        kw["col"] = kw["col"][:0]
    return kw


def test_zero_size_tables_cover_every_kernel():
    assert EMPTY_OK | RAISES_N | NO_BATCH == set(K.__all__)
    assert RAISES_N <= set(K.__all__)
    assert not (RAISES_N & NO_BATCH)
    assert NO_BATCH == {"sgd_step", "momentum_step", "nesterov_step", "adagrad_step", "rmsprop_step", "adam_step",
                        "adamw_step", "adabound_step", "clip_grads", "swats_adam_step", "swats_sgd_step",
                        "weightnorm_forward", "weightnorm_backward", "spectralnorm_forward", "spectralnorm_backward"}


@pytest.mark.parametrize("name", sorted(EMPTY_OK | RAISES_N))
def test_zero_size_batch(name, twin):
    results = []
    for impl in (K, R):
        kw = _empty_batch(name, CALLS[name](np.dtype(np.float32), np.random.default_rng(0)))
        if name in RAISES_N:
            with pytest.raises(ValueError, match=rf"^{name}: N must be >= 1"):
                getattr(impl, name)(**kw)
            continue
        outs = outputs(getattr(impl, name)(**kw))
        full = outputs(getattr(impl, name)(**CALLS[name](np.dtype(np.float32), np.random.default_rng(0))))
        assert len(outs) == len(full)
        for i, (o, f) in enumerate(zip(outs, full, strict=True)):
            assert o.dtype == f.dtype
            # batch-sized results lose their batch axis; per-channel ones (dgamma, ...) keep their shape, as zeros
            if o.ndim and o.shape[1:] == f.shape[1:] and o.shape[0] == 0:
                continue
            if i in _UNBATCHED_OUT.get(name, ()):
                np.testing.assert_array_equal(o, f)
                continue
            assert o.shape == f.shape, (o.shape, f.shape)
            np.testing.assert_array_equal(o, 0)
        results.append([o.shape for o in outs])
    if results:
        assert results[0] == results[1]


# ---------------------------------------------------------------------------------------------------------------
# dtypes and untouched inputs, all kernels


@pytest.mark.parametrize("name", sorted(K.__all__))
def test_float32_in_float32_out_and_inputs_untouched(name, twin):
    kw = CALLS[name](np.dtype(np.float32), np.random.default_rng(0))
    before = copies(kw)
    result = getattr(K, name)(**kw)
    for o in outputs(result):
        if o.dtype.kind == "f":
            assert o.dtype == np.float32, o.dtype
    for k in INPLACE.get(name, ()):
        for a in kw[k] if isinstance(kw[k], list) else [kw[k]]:  # clip_grads updates a list of arrays
            assert a.dtype == np.float32
    assert_unchanged(kw, before, skip=INPLACE.get(name, ()))


#: Arguments that are updated in place (must stay float) or are not float data.
_NOT_PROMOTED = {"t", "y", "argmax", "mask", "idx"}


@pytest.mark.parametrize("kind", ["int64", "bool", "int8", "uint16"])
@pytest.mark.parametrize("name", sorted(set(K.__all__) - NO_BATCH - {"dropout_mask"}))
def test_int_and_bool_inputs_promote_as_numpy(name, kind, twin):
    kw = CALLS[name](np.dtype(np.float64), np.random.default_rng(0))
    inplace = INPLACE.get(name, ())
    ints = dict(kw)
    for k, v in arrays_of(kw).items():
        if k in _NOT_PROMOTED or k in inplace:
            continue
        ints[k] = (v > 0) if kind == "bool" else np.clip(np.round(v * 3), 0 if kind == "uint16" else -100, 100) \
            .astype(kind)
    if name in ("batchnorm_forward_infer",):
        ints["running_var"] = np.abs(ints["running_var"]) + 1
    if name.startswith(("batchnorm", "layernorm", "groupnorm", "instancenorm")) and "inv_std" in ints:
        ints["inv_std"] = np.abs(ints["inv_std"]) + 1
    if name == "attention_backward":  # the backward's exp(s - lse) needs the forward's lse (s <= lse)
        ints["out"], ints["lse"] = R.attention_forward(ints["q"], ints["k"], ints["v"])
    floats = {k: (v.astype(np.float64) if isinstance(v, np.ndarray) and k not in _NOT_PROMOTED else v)
              for k, v in ints.items()}
    before = copies(ints)
    got = outputs(getattr(K, name)(**ints))
    want = outputs(getattr(R, name)(**floats))
    for g, w in zip(got, want, strict=True):
        if w.dtype.kind == "f":
            assert g.dtype == np.float64, f"{g.dtype} from {kind} input"
            np.testing.assert_allclose(g, w, **TOL[np.dtype(np.float64)], equal_nan=True)
        else:
            np.testing.assert_array_equal(g, w)
    assert_unchanged(ints, before, skip=inplace)


@pytest.mark.parametrize("name", ["relu_forward", "relu_backward", "conv2d_forward", "conv2d_backward",
                                  "maxpool2d_forward", "layernorm_forward", "layernorm_backward",
                                  "softmax_cross_entropy_forward", "batchnorm_forward_infer", "im2col", "col2im"])
def test_mixed_float32_float64_gives_float64_and_float16_gives_float32(name):
    kw = CALLS[name](np.dtype(np.float32), np.random.default_rng(0))
    arrays = [k for k, v in arrays_of(kw).items() if v.dtype == np.float32]
    if len(arrays) > 1:
        mixed = dict(kw)
        mixed[arrays[-1]] = kw[arrays[-1]].astype(np.float64)
        for o in outputs(getattr(K, name)(**mixed)):
            if o.dtype.kind == "f":
                assert o.dtype == np.float64
    half = {k: (v.astype(np.float16) if k in arrays else v) for k, v in kw.items()}
    for o in outputs(getattr(K, name)(**half)):
        if o.dtype.kind == "f":
            assert o.dtype == np.float32


@pytest.mark.parametrize("name", ["batchnorm_forward_infer", "batchnorm_forward_train", "layernorm_forward",
                                  "groupnorm_forward", "instancenorm_forward"])
def test_infinite_gamma_like_reference(name, fdtype, twin):
    """An infinite gamma gives +-inf in its channel, as the unfolded formula does (batch norm folds gamma into one
    scale and shift per channel: the fold must not turn inf into NaN)."""
    kw = CALLS[name](np.dtype(fdtype), np.random.default_rng(0))
    kw["gamma"] = kw["gamma"].copy()
    kw["gamma"].flat[0] = np.inf
    ref_kw = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    with np.errstate(invalid="ignore"):
        got = outputs(getattr(K, name)(**kw))[0]
        want = outputs(getattr(R, name)(**ref_kw))[0]
    assert np.isinf(want).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, **TOL[np.dtype(fdtype)])
