"""fastnn.compat.numpy_ml.DotProductAttention against numpy-ml 0.1.2's own layer (numbers, containers, API)."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn.compat.numpy_ml import DotProductAttention


@pytest.fixture(scope="module")
def upstream(nml):
    return nml.layers.DotProductAttention


@pytest.mark.parametrize("scale", [True, False])
def test_matches_numpy_ml_on_2d_inputs(upstream, scale):
    rng = np.random.default_rng(0)
    Q, K, V = rng.standard_normal((5, 4)), rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    ours, theirs = DotProductAttention(scale=scale), upstream(scale=scale)
    y = ours.forward(Q, K, V)
    np.testing.assert_allclose(y, theirs.forward(Q, K, V), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.derived_variables["attention_weights"][0],
                               theirs.derived_variables["attention_weights"][0], rtol=1e-12, atol=1e-14)
    dy = rng.standard_normal(y.shape)
    for a, b in zip(ours.backward(dy.copy()), theirs.backward(dy.copy()), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert ours.hyperparameters["scale"] == theirs.hyperparameters["scale"] == scale
    assert ours.parameters == theirs.parameters == {} and len(ours.X) == len(theirs.X) == 1


def test_4d_heads_forward_matches_and_backward_is_the_gradient(upstream):
    """(n_ex, heads, S, d): numpy-ml's forward agrees; its backward cannot run on such scores (its Softmax layer
    iterates 2-D rows), fastnn's is checked by central differences."""
    rng = np.random.default_rng(1)
    Q, K, V = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 3, 6, 2))
    ours = DotProductAttention()
    y = ours.forward(Q, K, V)
    np.testing.assert_allclose(y, upstream().forward(Q, K, V), rtol=1e-12, atol=1e-14)
    dy = rng.standard_normal(y.shape)
    dQ, dK, dV = ours.backward(dy)
    probe = DotProductAttention()
    for a, g in ((Q, dQ), (K, dK), (V, dV)):
        i = (1, 2, 3, 1)
        old = a[i]
        a[i] = old + 1e-6
        plus = np.sum(probe.forward(Q, K, V, retain_derived=False) * dy)
        a[i] = old - 1e-6
        minus = np.sum(probe.forward(Q, K, V, retain_derived=False) * dy)
        a[i] = old
        assert g[i] == pytest.approx((plus - minus) / 2e-6, rel=1e-6, abs=1e-9)


def test_lists_freeze_flush_and_dropout():
    rng = np.random.default_rng(2)
    layer = DotProductAttention(dropout_p=0.5)
    x = [rng.standard_normal((3, 4)) for _ in range(3)]
    np.random.seed(0)  # noqa: NPY002 -- the seed source, as numpy-ml's dropout
    a = layer.forward(*x)
    np.random.seed(0)  # noqa: NPY002
    np.testing.assert_array_equal(layer.forward(*x), a)
    grads = layer.backward([np.ones((3, 4)), np.ones((3, 4))])
    assert all(isinstance(g, list) and len(g) == 2 for g in grads)
    layer.freeze()
    np.testing.assert_allclose(layer.forward(*x, retain_derived=False),
                               DotProductAttention().forward(*x, retain_derived=False), rtol=1e-12)
    with pytest.raises(AssertionError, match="frozen"):
        layer.backward(np.ones((3, 4)))
    layer.unfreeze()
    layer.flush_gradients()
    assert layer.X == [] and layer.derived_variables["attention_weights"] == []
    with pytest.raises(ValueError, match="^DotProductAttention: dropout_p must be"):
        DotProductAttention(dropout_p=1.0)
