"""fastnn.compat.cs231n's rnn_layers functions: the assignment notebooks' own check values (RNN_Captioning,
LSTM_Captioning), gradients by central differences, caches handed back unchanged, float dtypes kept."""

from __future__ import annotations

import numpy as np
import pytest

from fastnn.compat import cs231n as C

from ..reference._numeric import central_differences


def _lin(lo, hi, *shape):
    return np.linspace(lo, hi, num=int(np.prod(shape))).reshape(shape)


def test_rnn_step_forward_notebook_values():
    N, D, H = 3, 10, 4
    next_h, _ = C.rnn_step_forward(_lin(-0.4, 0.7, N, D), _lin(-0.2, 0.5, N, H), _lin(-0.1, 0.9, D, H),
                                   _lin(-0.3, 0.7, H, H), _lin(-0.2, 0.4, H))
    expected = [[-0.58172089, -0.50182032, -0.41232771, -0.31410098],
                [0.66854692, 0.79562378, 0.87755553, 0.92795967],
                [0.97934501, 0.99144213, 0.99646691, 0.99854353]]
    np.testing.assert_allclose(next_h, expected, rtol=1e-7, atol=1e-8)


def test_rnn_forward_notebook_values():
    N, T, D, H = 2, 3, 4, 5
    h, _ = C.rnn_forward(_lin(-0.1, 0.3, N, T, D), _lin(-0.3, 0.1, N, H), _lin(-0.2, 0.4, D, H),
                         _lin(-0.4, 0.1, H, H), _lin(-0.7, 0.1, H))
    expected = [[[-0.42070749, -0.27279261, -0.11074945, 0.05740409, 0.22236251],
                 [-0.39525808, -0.22554661, -0.0409454, 0.14649412, 0.32397316],
                 [-0.42305111, -0.24223728, -0.04287027, 0.15997045, 0.35014525]],
                [[-0.55857474, -0.39065825, -0.19198182, 0.02378408, 0.23735671],
                 [-0.27150199, -0.07088804, 0.13562939, 0.33099728, 0.50158768],
                 [-0.51014825, -0.30524429, -0.06755202, 0.17806392, 0.40333043]]]
    np.testing.assert_allclose(h, expected, rtol=1e-7, atol=1e-8)


def test_lstm_step_forward_notebook_values():
    N, D, H = 3, 4, 5
    next_h, next_c, _ = C.lstm_step_forward(_lin(-0.4, 1.2, N, D), _lin(-0.3, 0.7, N, H), _lin(-0.4, 0.9, N, H),
                                            _lin(-2.1, 1.3, D, 4 * H), _lin(-0.7, 2.2, H, 4 * H),
                                            _lin(0.3, 0.7, 4 * H))
    np.testing.assert_allclose(next_h, [[0.24635157, 0.28610883, 0.32240467, 0.35525807, 0.38474904],
                                        [0.49223563, 0.55611431, 0.61507696, 0.66844003, 0.7159181],
                                        [0.56735664, 0.66310127, 0.74419266, 0.80889665, 0.858299]],
                               rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(next_c, [[0.32986176, 0.39145139, 0.451556, 0.51014116, 0.56717407],
                                        [0.66382255, 0.76674007, 0.87195994, 0.97902709, 1.08751345],
                                        [0.74192008, 0.90592151, 1.07717006, 1.25120233, 1.42395676]],
                               rtol=1e-7, atol=1e-8)


def test_lstm_forward_notebook_values():
    N, D, H, T = 2, 5, 4, 3
    h, _ = C.lstm_forward(_lin(-0.4, 0.6, N, T, D), _lin(-0.4, 0.8, N, H), _lin(-0.2, 0.9, D, 4 * H),
                          _lin(-0.3, 0.6, H, 4 * H), _lin(0.2, 0.7, 4 * H))
    expected = [[[0.01764008, 0.01823233, 0.01882671, 0.0194232],
                 [0.11287491, 0.12146228, 0.13018446, 0.13902939],
                 [0.31358768, 0.33338627, 0.35304453, 0.37250975]],
                [[0.45767879, 0.4761092, 0.4936887, 0.51041945],
                 [0.6704845, 0.69350089, 0.71486014, 0.7346449],
                 [0.81733511, 0.83677871, 0.85403753, 0.86935314]]]
    np.testing.assert_allclose(h, expected, rtol=1e-7, atol=1e-8)


def _setup(G, N=2, T=3, D=4, H=3, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((N, T, D)), "h0": rng.standard_normal((N, H)), "c0": rng.standard_normal((N, H)),
            "Wx": rng.standard_normal((D, G * H)) * 0.5, "Wh": rng.standard_normal((H, G * H)) * 0.5,
            "b": rng.standard_normal(G * H) * 0.3, "dh": rng.standard_normal((N, T, H)),
            "dc": rng.standard_normal((N, H))}


def _check(loss, d, names, grads):
    for name, g in zip(names, grads, strict=True):
        np.testing.assert_allclose(g, central_differences(loss, d[name]), rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_sequence_gradients(cell):
    d = _setup(1 if cell == "rnn" else 4)
    fwd, bwd = getattr(C, f"{cell}_forward"), getattr(C, f"{cell}_backward")
    args = lambda: (d["x"], d["h0"], d["Wx"], d["Wh"], d["b"])  # noqa: E731
    h, cache = fwd(*args())
    grads = bwd(d["dh"], cache)
    _check(lambda: (fwd(*args())[0] * d["dh"]).sum(), d, ("x", "h0", "Wx", "Wh", "b"), grads)


def test_rnn_step_gradients():
    d = _setup(1)
    d["x1"] = d["x"][:, 0].copy()
    d["dn"] = d["dh"][:, 0].copy()
    args = lambda: (d["x1"], d["h0"], d["Wx"], d["Wh"], d["b"])  # noqa: E731
    _, cache = C.rnn_step_forward(*args())
    grads = C.rnn_step_backward(d["dn"], cache)
    _check(lambda: (C.rnn_step_forward(*args())[0] * d["dn"]).sum(), d, ("x1", "h0", "Wx", "Wh", "b"), grads)


def test_lstm_step_gradients_and_dnext_c_untouched():
    d = _setup(4)
    d["x1"] = d["x"][:, 0].copy()
    d["dn"] = d["dh"][:, 0].copy()
    args = lambda: (d["x1"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])  # noqa: E731
    _, _, cache = C.lstm_step_forward(*args())
    dc = d["dc"].copy()
    grads = C.lstm_step_backward(d["dn"], dc, cache)
    np.testing.assert_array_equal(dc, d["dc"])  # fastnn does not add into the caller's dnext_c

    def loss():
        h, c, _ = C.lstm_step_forward(*args())
        return (h * d["dn"]).sum() + (c * d["dc"]).sum()

    _check(loss, d, ("x1", "h0", "c0", "Wx", "Wh", "b"), grads)


def test_sequence_is_its_steps():
    """lstm_forward is lstm_step_forward from (h0, zeros) step by step: cs231n's definition of it."""
    d = _setup(4, T=4)
    h, _ = C.lstm_forward(d["x"], d["h0"], d["Wx"], d["Wh"], d["b"])
    prev_h, prev_c = d["h0"], np.zeros_like(d["h0"])
    for t in range(4):
        prev_h, prev_c, _ = C.lstm_step_forward(d["x"][:, t], prev_h, prev_c, d["Wx"], d["Wh"], d["b"])
        np.testing.assert_allclose(h[:, t], prev_h, rtol=1e-13, atol=1e-14)


def test_dtypes_and_bad_cache():
    d = _setup(4)
    f32 = {k: v.astype(np.float32) for k, v in d.items()}
    h, cache = C.lstm_forward(f32["x"], f32["h0"], f32["Wx"], f32["Wh"], f32["b"])
    assert h.dtype == np.float32
    assert all(g.dtype == np.float32 for g in C.lstm_backward(f32["dh"], cache))
    h64, _ = C.rnn_forward(d["x"], d["h0"], d["Wx"][:, :3], d["Wh"][:, :3], d["b"][:3])
    assert h64.dtype == np.float64
    with pytest.raises(TypeError, match=r"lstm_backward: cache must be the cache tuple"):
        C.lstm_backward(d["dh"], cache[:3])
    with pytest.raises(ValueError, match=r"lstm_step_forward: x must be 2-D"):
        C.lstm_step_forward(d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])
