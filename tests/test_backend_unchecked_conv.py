"""Convolution and pooling layers check each input once: the kernels' bodies (``backend.unchecked``) recompute the
window geometry without validating it, the public kernels still check, and what a layer has not established (a
parameter rebound to another dtype, an attribute rebound since forward) goes through the check and its message.

The counts come from ``fastnn._checks.check_<op>`` replaced by a counting wrapper, as in
``tests/test_backend_unchecked.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from fastnn import backend
from fastnn.layers import AvgPooling, Convolution, Pooling

BACKENDS = ("kernels", "reference")
LAYER_CHECKS = {"check_conv2d_forward", "check_conv2d_backward", "check_pool2d", "check_pool2d_backward",
                "check_maxpool2d_backward", "check_im2col", "check_col2im"}


def _layers(dtype):
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((4, 3, 3, 3)).astype(dtype), rng.standard_normal(4).astype(dtype)
    first = Convolution(W, b, stride=1, pad=1)  # 3x3 stride 1: the Winograd path of the kernels
    first.need_dx = False
    return [("Convolution", Convolution(W, b, stride=2, pad=(1, 0))), ("Convolution, no dx", first),
            ("Convolution 1x1", Convolution(W[:, :, :1, :1].copy(), b)),
            ("Pooling", Pooling(2, 2)), ("Pooling 3x3", Pooling(3, 3, stride=(2, 1), pad=1)),
            ("AvgPooling", AvgPooling(3, 2, stride=1, pad=(1, 0)))]


def _run(layer, x):
    out = layer.forward(x)
    dout = np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
    return out, layer.backward(dout), getattr(layer, "dW", None), getattr(layer, "db", None)


@pytest.mark.parametrize("impl", BACKENDS)
@pytest.mark.parametrize("case", range(6), ids=[name for name, _ in _layers(np.float64)])
def test_a_layer_path_reaches_no_check_and_gives_the_checked_result(counts, impl, case, dtype):
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 6)).astype(dtype)
    with backend.using(impl):
        fast = _run(_layers(dtype)[case][1], x)
    # Pooling.backward keeps its check on purpose: arg_max is a public array the kernel scatters through
    expected = ({"check_maxpool2d_backward", "check_pool2d_backward"} if type(_layers(dtype)[case][1]) is Pooling
                else set())
    assert LAYER_CHECKS & set(counts) == expected, counts
    with pytest.MonkeyPatch.context() as mp, backend.using(impl):
        for fn in ("conv2d_forward", "conv2d_backward", "maxpool2d_forward", "maxpool2d_backward",
                   "avgpool2d_forward", "avgpool2d_backward"):
            mp.setattr(backend.unchecked, fn, getattr(backend.ops, fn))
        slow = _run(_layers(dtype)[case][1], x)
    assert counts, counts
    for a, b in zip(fast, slow, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype == dtype
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("impl", BACKENDS)
def test_the_public_kernels_still_check(counts, impl):
    module = K if impl == "kernels" else R
    rng = np.random.default_rng(3)
    x, W, b = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)), np.zeros(4)
    out = module.conv2d_forward(x, W, b, 2, 1)
    module.conv2d_backward(out, x, W, 2, 1)
    pooled, argmax = module.maxpool2d_forward(x, 2, 2)
    module.maxpool2d_backward(pooled, argmax, x.shape, 2, 2)
    module.avgpool2d_backward(module.avgpool2d_forward(x, 2, 2), x.shape, 2, 2)
    module.col2im(module.im2col(x, 3, 3), x.shape, 3, 3)
    assert {name: counts.get(name) for name in LAYER_CHECKS} == {
        "check_conv2d_forward": 1, "check_conv2d_backward": 1, "check_pool2d": 2, "check_pool2d_backward": 2,
        "check_maxpool2d_backward": 1, "check_im2col": 1, "check_col2im": 1}
    with pytest.raises(ValueError, match=r"maxpool2d_backward: argmax must be window indices in \[0, 4\)"):
        module.maxpool2d_backward(pooled, argmax + 4, x.shape, 2, 2)


@pytest.mark.parametrize("impl", BACKENDS)
def test_what_a_layer_has_not_established_is_checked(counts, impl):
    """W rebound to float64 on a float32 layer (the check promotes), a stride rebound between forward and backward
    (the check refuses dout), an argmax replaced by out-of-range indices: the checked function runs."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    conv = Convolution(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), np.zeros(4, np.float32), stride=2)
    with backend.using(impl):
        conv.W = conv.W.astype(np.float64)
        out = conv.forward(x)
        assert out.dtype == np.float64 and counts["check_conv2d_forward"] == 1
        conv.backward(np.ones_like(out))  # dout float64, x float32: checked again
        assert counts["check_conv2d_backward"] == 1
        conv.stride = 1
        with pytest.raises(ValueError, match=r"conv2d_backward: dout must be of shape \(2, 4, 4, 4\)"):
            conv.backward(np.ones_like(out))
        pool = Pooling(2, 2)
        out = pool.forward(x)
        pool.arg_max = pool.arg_max + 4
        with pytest.raises(ValueError, match=r"maxpool2d_backward: argmax must be window indices in \[0, 4\)"):
            pool.backward(np.ones_like(out))
        avg = AvgPooling(2, 2)
        out = avg.forward(x)
        avg.stride = 1
        with pytest.raises(ValueError, match=r"avgpool2d_backward: dout must be of shape \(2, 3, 5, 5\)"):
            avg.backward(np.ones_like(out))


def test_arrays_and_lists_edited_in_place_are_checked_again():
    """Memory safety: a public array (SoftmaxWithLoss.t, Pooling.arg_max) or a list stride edited in place between
    forward and backward is the same object, so an identity test alone would trust it; these paths check."""
    from fastnn.layers import SoftmaxWithLoss

    rng = np.random.default_rng(4)
    loss = SoftmaxWithLoss()
    loss.forward(rng.standard_normal((4, 5)), np.array([0, 1, 2, 3]))
    loss.t[0] = 99
    with pytest.raises(ValueError, match=r"softmax_cross_entropy_backward: t must be labels in \[0, 5\)"):
        loss.backward()
    pool = Pooling(2, 2)
    out = pool.forward(rng.standard_normal((1, 1, 4, 4)))
    pool.arg_max[...] = 200
    with pytest.raises(ValueError, match=r"maxpool2d_backward: argmax must be window indices in \[0, 4\)"):
        pool.backward(np.ones_like(out))
    stride = [1, 1]
    conv = Convolution(rng.standard_normal((2, 1, 3, 3)), np.zeros(2), stride=stride)
    out = conv.forward(rng.standard_normal((1, 1, 6, 6)))
    stride[0] = 2
    with pytest.raises(ValueError, match=r"conv2d_backward: dout must be of shape"):
        conv.backward(np.ones_like(out))


def test_a_rebound_input_of_another_shape_is_checked_again():
    """Convolution.x and Affine.x are public: rebound to another shape between forward and backward, the
    backward takes the checked path (its usual error), never an unchecked body with mismatched sizes."""
    from fastnn.layers import Affine

    rng = np.random.default_rng(5)
    conv = Convolution(rng.standard_normal((2, 1, 3, 3)), np.zeros(2))
    out = conv.forward(rng.standard_normal((1, 1, 6, 6)))
    conv.x = rng.standard_normal((1, 1, 9, 9))
    with pytest.raises(ValueError, match=r"conv2d_backward: dout must be of shape"):
        conv.backward(np.ones_like(out))
    affine = Affine(rng.standard_normal((4, 3)), np.zeros(3))
    out = affine.forward(rng.standard_normal((5, 4)))
    affine.x = rng.standard_normal((7, 4))
    with pytest.raises(ValueError, match=r"matmul"):
        affine.backward(np.ones_like(out))
