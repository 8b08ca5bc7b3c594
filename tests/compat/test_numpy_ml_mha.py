"""fastnn.compat.numpy_ml.MultiHeadedAttentionModule against numpy-ml 0.1.2's own module (numbers, draws,
containers), and on sequences (which numpy-ml cannot run) against the formula."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn.compat.numpy_ml import MultiHeadedAttentionModule


@pytest.fixture(scope="module")
def upstream(nml):
    return nml.modules.MultiHeadedAttentionModule


def _pair(upstream, n_heads, seed=3):
    np.random.seed(seed)  # noqa: NPY002 -- both draw their weights (and numpy-ml's masks) from the global state
    theirs = upstream(n_heads=n_heads)
    ours = MultiHeadedAttentionModule(n_heads=n_heads)
    return ours, theirs


def _run(module, Q, K, V, seed=3):
    np.random.seed(seed)  # noqa: NPY002
    y = module.forward(Q, K, V)
    return y, np.random.rand()  # noqa: NPY002 -- where the global stream stands afterwards


@pytest.mark.parametrize("n_heads, d", [(8, 16), (2, 6), (1, 3)])
def test_matches_numpy_ml_forward_backward_and_update(upstream, n_heads, d):
    rng = np.random.default_rng(n_heads)
    Q, K, V = (rng.standard_normal((5, d)) for _ in range(3))
    ours, theirs = _pair(upstream, n_heads)
    (y, after), (y_up, after_up) = _run(ours, Q, K, V), _run(theirs, Q, K, V)
    assert y.shape == y_up.shape == (5, 1, d) and y.dtype == y_up.dtype == np.float64
    assert after == after_up  # the same draws in the same order: numpy-ml's weights and its (p = 0) masks
    for k in "QKVO":
        for p in "Wb":
            np.testing.assert_array_equal(ours.parameters["components"][k][p],
                                          theirs.parameters["components"][k][p])
    np.testing.assert_allclose(y, y_up, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(ours.derived_variables["attention_weights"][0],
                               theirs.derived_variables["attention_weights"][0], rtol=1e-15)
    dy = rng.standard_normal(y.shape)
    dy_copy = dy.copy()
    grads, grads_up = ours.backward(dy), theirs.backward(dy.copy())
    np.testing.assert_array_equal(dy, dy_copy)
    for g, w in zip(grads, grads_up, strict=True):
        assert g.shape == w.shape == (5, d)
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)  # dQ, dK: 0 (one position: weights are 1)
    for k in "QKVO":
        for p in "Wb":
            np.testing.assert_allclose(ours.gradients["components"][k][p], theirs.gradients["components"][k][p],
                                       rtol=1e-12, atol=1e-14)
    assert np.abs(ours.gradients["components"]["V"]["W"]).max() > 0.1  # something was compared
    # numpy-ml's update cannot run (its __init__ never sets ``trainable``; were it set, its components would be
    # the attention alone and no projection would move): fastnn's takes each projection's SGD(lr=0.01) step
    with pytest.raises(AttributeError, match="trainable"):
        theirs.update()
    expected = {k: {p: ours.parameters["components"][k][p] - 0.01 * ours.gradients["components"][k][p]
                    for p in "Wb"} for k in "QKVO"}
    ours.update()
    for k in "QKVO":
        for p in "Wb":
            np.testing.assert_allclose(ours.parameters["components"][k][p], expected[k][p], rtol=1e-15)
            assert not ours.gradients["components"][k][p].any()  # flushed
    assert not np.allclose(_run(ours, Q, K, V)[0], y)
    hp, hp_up = ours.hyperparameters, theirs.hyperparameters
    for key in ("layer", "init", "kqv_dim", "latent_dim", "n_heads", "dropout_p", "component_ids"):
        assert hp[key] == hp_up[key], key


def _reference(module, Q, K, V):
    """The formula on sequences: per example and head, softmax(q k^T / sqrt(latent)) v, then W^O."""
    P = {k: module.parameters["components"][k] for k in "QKVO"}
    n_ex, S, d = Q.shape
    h = module.n_heads
    lat = d // h

    def proj(x, k):
        return (x @ P[k]["W"] + P[k]["b"]).reshape(n_ex, -1, h, lat).transpose(0, 2, 1, 3)

    q, k, v = proj(Q, "Q"), proj(K, "K"), proj(V, "V")
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(lat)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    o = (a @ v).transpose(0, 2, 1, 3).reshape(n_ex * S, d)
    return (o @ P["O"]["W"] + P["O"]["b"]).reshape(n_ex, S, d)


def test_sequences_follow_the_formula_and_its_gradient():
    """numpy-ml raises on (n_ex, length, d); fastnn attends over the positions (documented extension)."""
    rng = np.random.default_rng(7)
    Q, K, V = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4)), rng.standard_normal((2, 5, 4))
    np.random.seed(0)  # noqa: NPY002
    m = MultiHeadedAttentionModule(n_heads=2)
    y = m.forward(Q, K, V)
    assert y.shape == (2, 3, 4)
    np.testing.assert_allclose(y, _reference(m, Q, K, V), rtol=1e-12, atol=1e-13)
    dy = rng.standard_normal(y.shape)
    grads = m.backward(dy)
    for x, g in zip((Q, K, V), grads, strict=True):
        assert g.shape == x.shape
        i = (1, 2, 3)
        old = x[i]
        x[i] = old + 1e-6
        plus = np.sum(_reference(m, Q, K, V) * dy)
        x[i] = old - 1e-6
        minus = np.sum(_reference(m, Q, K, V) * dy)
        x[i] = old
        assert g[i] == pytest.approx((plus - minus) / 2e-6, rel=1e-6, abs=1e-9)
    assert np.abs(grads[0]).max() > 1e-3  # queries matter when there are several keys


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="MultiHeadedAttentionModule: dropout_p"):
        MultiHeadedAttentionModule(dropout_p=1.0)
    with pytest.raises((TypeError, ValueError), match="MultiHeadedAttentionModule: n_heads"):
        MultiHeadedAttentionModule(n_heads=0)
    m = MultiHeadedAttentionModule(n_heads=3)
    with pytest.raises(ValueError, match="MultiHeadedAttentionModule.forward: Q .*divisible by n_heads = 3"):
        m.forward(np.ones((2, 4)), np.ones((2, 4)), np.ones((2, 4)))
    m = MultiHeadedAttentionModule(n_heads=2)
    with pytest.raises(ValueError, match="MultiHeadedAttentionModule.forward: K"):
        m.forward(np.ones((2, 4)), np.ones((2, 6)), np.ones((2, 4)))
    assert not m.is_initialized and m.projections == {}  # nothing drawn, nothing built
