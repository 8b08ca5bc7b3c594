"""Activation kernels against the NumPy reference: values, NaN/Inf, layouts, sizes, dtypes, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.kernels as K
import fastnn.reference as R
from tests.conftest import assert_close

FORWARD = ["relu_forward", "sigmoid_forward", "tanh_forward", "leaky_relu_forward"]
# backward name -> (forward it differentiates, whether its second argument is the forward input or output)
BACKWARD = {
    "relu_backward": ("relu_forward", "x"),
    "sigmoid_backward": ("sigmoid_forward", "out"),
    "tanh_backward": ("tanh_forward", "out"),
    "leaky_relu_backward": ("leaky_relu_forward", "x"),
}
SHAPES = [(), (0,), (3, 0, 2), (1,), (7,), (5, 13), (4, 3, 9, 11), (70_001,)]


def _x(shape, dtype, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 4).astype(dtype)


def _backward_args(name, shape, dtype, seed=0):
    fwd, second = BACKWARD[name]
    x = _x(shape, dtype, seed)
    dout = _x(shape, dtype, seed + 1)
    return dout, (x if second == "x" else getattr(R, fwd)(x).astype(dtype))


@pytest.mark.parametrize("name", FORWARD)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_matches_reference(name, shape, dtype, twin):
    x = _x(shape, dtype)
    x0 = x.copy()
    out = getattr(K, name)(x)
    assert out.shape == x.shape
    assert_close(out, getattr(R, name)(x), dtype)
    np.testing.assert_array_equal(x, x0)


@pytest.mark.parametrize("name", list(BACKWARD))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_backward_matches_reference(name, shape, dtype, twin):
    dout, a = _backward_args(name, shape, dtype)
    dout0, a0 = dout.copy(), a.copy()
    dx = getattr(K, name)(dout, a)
    assert dx.shape == a.shape
    assert_close(dx, getattr(R, name)(dout, a), dtype)
    np.testing.assert_array_equal(dout, dout0)
    np.testing.assert_array_equal(a, a0)


def test_sigmoid_backward_is_the_twins_formula_in_its_order(dtype, twin):
    """(dout * out) * (1 - out) as the twin writes it, bit for bit in either twin: compiled with reassociation, the
    serial twin computed this order and the parallel one dout * (out * (1 - out))."""
    rng = np.random.default_rng(0)
    dout = rng.standard_normal(300_001).astype(dtype)
    out = rng.random(300_001).astype(dtype)
    np.testing.assert_array_equal(K.sigmoid_backward(dout, out), R.sigmoid_backward(dout, out))


@pytest.mark.parametrize("alpha", [0.0, 0.2, -0.5, 3.0])
def test_leaky_relu_alpha(alpha, dtype, twin):
    x = _x((9, 8), dtype)
    d = _x((9, 8), dtype, 1)
    out = K.leaky_relu_forward(x, alpha)
    assert_close(out, R.leaky_relu_forward(x, alpha), dtype)
    assert_close(out, np.where(x > 0, x, alpha * x).astype(dtype), dtype)
    assert_close(K.leaky_relu_backward(d, x, alpha), R.leaky_relu_backward(d, x, alpha), dtype)


LAYOUTS = {
    "transposed": lambda a: a.T,
    "strided": lambda a: a[::2, 1::3],
    "negative-stride": lambda a: a[::-1],
    "fortran": np.asfortranarray,
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("name", FORWARD + list(BACKWARD))
def test_non_contiguous_inputs(name, layout, dtype, twin):
    view = LAYOUTS[layout]
    if name in BACKWARD:
        dout, a = _backward_args(name, (40, 30), dtype)
        args = (view(dout), view(a))
    else:
        args = (view(_x((40, 30), dtype)),)
    out = getattr(K, name)(*args)
    assert_close(out, getattr(R, name)(*(np.ascontiguousarray(a) for a in args)), dtype)


SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, 88.0, -88.0, 100.0, -100.0, 1e4, -1e4])


@pytest.mark.parametrize("name", FORWARD)
def test_forward_special_values(name, dtype, twin):
    x = SPECIAL.astype(dtype)
    with np.errstate(over="raise", divide="raise"):  # the reference must not overflow either (stable sigmoid)
        expected = getattr(R, name)(x)
    out = getattr(K, name)(x)
    assert_close(out, expected, dtype)
    assert np.isnan(out[0])  # nan propagates in every activation, relu included


def test_special_values_exact(dtype, twin):
    x = SPECIAL.astype(dtype)
    np.testing.assert_array_equal(K.relu_forward(x)[:4], np.array([np.nan, np.inf, 0, 0], dtype))
    s = K.sigmoid_forward(x)
    np.testing.assert_array_equal(s[1:3], [1, 0])
    np.testing.assert_array_equal(s[[11, 12]], [1, 0])  # +-1e4: exact ends, no overflow
    assert 0 <= s[10] < 1e-40  # sigmoid(-100) = 3.7e-44: tiny, never a nan from exp overflow
    np.testing.assert_array_equal(K.tanh_forward(x)[1:3], [1, -1])


@pytest.mark.parametrize("name", list(BACKWARD))
def test_backward_special_values(name, dtype, twin):
    a = SPECIAL.astype(dtype)
    dout = np.linspace(-2, 2, a.size).astype(dtype)
    if BACKWARD[name][1] == "out":
        a = getattr(R, BACKWARD[name][0])(a)
    with np.errstate(invalid="ignore"):
        assert_close(getattr(K, name)(dout, a), getattr(R, name)(dout, a), dtype)


def test_relu_backward_nan_convention(twin):
    """PyTorch passes the gradient where the ReLU input is nan and zeroes it where x <= 0 (even a nan dout)."""
    x = np.array([np.nan, -1.0, 0.0, 2.0])
    dout = np.array([5.0, np.nan, 7.0, 3.0])
    np.testing.assert_array_equal(K.relu_backward(dout, x), [5.0, 0.0, 0.0, 3.0])
    np.testing.assert_allclose(K.leaky_relu_backward(dout, x, 0.1), [0.5, np.nan, 0.7, 3.0], rtol=1e-15)


def test_nan_conventions_match_torch():
    torch = pytest.importorskip("torch")
    x = torch.tensor([np.nan, -1.0, 0.5, -np.inf, np.inf], dtype=torch.float64, requires_grad=True)
    dout = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0], dtype=torch.float64)
    for ours_f, ours_b, theirs in [
        (K.relu_forward, K.relu_backward, torch.relu),
        (lambda a: K.leaky_relu_forward(a, 0.1), lambda d, a: K.leaky_relu_backward(d, a, 0.1),
         lambda a: torch.nn.functional.leaky_relu(a, 0.1)),
    ]:
        y = theirs(x)
        (gx,) = torch.autograd.grad(y, x, dout)
        xn = x.detach().numpy()
        np.testing.assert_array_equal(ours_f(xn), y.detach().numpy())
        np.testing.assert_array_equal(ours_b(dout.numpy(), xn), gx.numpy())
    np.testing.assert_allclose(K.sigmoid_forward(x.detach().numpy()), torch.sigmoid(x).detach().numpy(),
                               rtol=1e-15)


@pytest.mark.parametrize("name", FORWARD)
def test_int_input_promotes_to_float64(name):
    out = getattr(K, name)(np.arange(-3, 4))
    assert out.dtype == np.float64
    assert_close(out, getattr(R, name)(np.arange(-3, 4)))


@pytest.mark.parametrize("name", list(BACKWARD))
def test_mixed_dtypes_promote(name):
    dout, a = _backward_args(name, (6,), np.float32)
    dx = getattr(K, name)(dout, a.astype(np.float64))
    assert dx.dtype == np.float64
    assert_close(dx, getattr(R, name)(dout.astype(np.float64), a.astype(np.float64)))


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize("name", FORWARD)
def test_forward_bad_input(mod, name):
    with pytest.raises(TypeError, match=rf"{name}: x must be"):
        getattr(mod, name)(np.ones(3, np.complex128))
    with pytest.raises(TypeError, match=rf"{name}: x must be"):
        getattr(mod, name)("abc")


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
@pytest.mark.parametrize("name", list(BACKWARD))
def test_backward_bad_input(mod, name):
    second = BACKWARD[name][1]
    with pytest.raises(ValueError, match=rf"{name}: dout must be of shape \(3, 4\) like {second}"):
        getattr(mod, name)(np.ones((4, 3)), np.ones((3, 4)))
    with pytest.raises(TypeError, match=rf"{name}: dout must be"):
        getattr(mod, name)(np.ones(3, np.complex64), np.ones(3))
    with pytest.raises(TypeError, match=rf"{name}: {second} must be"):
        getattr(mod, name)(np.ones(3), np.ones(3, np.complex64))


@pytest.mark.parametrize("mod", [K, R], ids=["kernels", "reference"])
def test_leaky_alpha_bad(mod):
    with pytest.raises(ValueError, match="leaky_relu_forward: alpha must be a finite number"):
        mod.leaky_relu_forward(np.ones(3), float("nan"))
    with pytest.raises(TypeError, match="leaky_relu_backward: alpha must be a real number"):
        mod.leaky_relu_backward(np.ones(3), np.ones(3), "0.1")


def test_exp_normal_is_exp_nonpos(dtype):
    """softmax's fast exp (normal results only) gives the general exp's numbers bit for bit on its whole range,
    its end included (its error bound is then test_exp_nonpos_accuracy's)."""
    from fastnn.kernels import _math as A

    ec, coefs = A.exp_nonpos_constants(dtype)
    x = np.concatenate([np.linspace(ec[9], 0, 200_001), -np.logspace(-30, 0, 301), [ec[9], -0.0]]).astype(dtype)
    fast, general = np.empty_like(x), np.empty_like(x)
    A._exp_normal_array(x, fast, ec, coefs)
    A._exp_nonpos_array(x, general, ec, coefs)
    np.testing.assert_array_equal(fast, general)
    assert fast.min() >= np.finfo(dtype).tiny  # the range's results are normal


def test_exp_nonpos_accuracy(dtype, twin):
    """The vectorised exp behind sigmoid and softmax: < 1 ulp (normal results) against float64/long-double exp."""
    from fastnn.kernels import _math as A

    x = np.concatenate([-np.linspace(0, 760, 400_001), -np.logspace(-30, 0, 1001)]).astype(dtype)
    out = np.empty_like(x)
    A._exp_nonpos_array.run(x.size, x, out, *A.exp_nonpos_constants(dtype))
    exact = np.exp(x.astype(np.longdouble))
    normal = exact >= np.finfo(dtype).tiny
    rel = np.abs(out[normal] - exact[normal]) / exact[normal]
    assert rel.max() < np.finfo(dtype).eps  # under 1 ulp (NumPy's own float32 exp reaches 1.7 ulp)
    # subnormal results: within one subnormal step; below the range: exactly 0
    assert np.abs(out[~normal] - exact[~normal]).max() <= np.finfo(dtype).smallest_subnormal
    special = np.array([np.nan, -np.inf, 0.0, -0.0, -1e30, -1e-45], dtype)
    res = np.empty_like(special)
    A._exp_nonpos_array.run(special.size, special, res, *A.exp_nonpos_constants(dtype))
    np.testing.assert_array_equal(res, [np.nan, 0, 1, 1, 0, 1])
    # positive x (attention's backward given an lse below a score): e^x to the same accuracy, inf past overflow
    top = np.log(np.finfo(dtype).max)
    pos = np.linspace(0, top * 0.999, 10_001).astype(dtype)
    got = np.empty_like(pos)
    A._exp_nonpos_array.run(pos.size, pos, got, *A.exp_nonpos_constants(dtype))
    exact = np.exp(pos.astype(np.longdouble))
    assert (np.abs(got - exact) / exact).max() < np.finfo(dtype).eps
    over = np.array([top * 1.001, 1e30, np.inf], dtype)
    A._exp_nonpos_array.run(over.size, over, res[:3], *A.exp_nonpos_constants(dtype))
    np.testing.assert_array_equal(res[:3], [np.inf] * 3)
