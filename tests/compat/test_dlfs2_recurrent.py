"""fastnn.compat.dlfs2's recurrent layers against Deep Learning from Scratch 2's formulas and contract.

The expected numbers come from the book's per-step formulas (``common/time_layers.py``: the LSTM's gate blocks f, g,
i, o; the GRU's z, r, h with r applied before the candidate's product), written out below step by step; the
gradients from central differences of those formulas. The classes' contract: the arrays passed in are kept,
gradients land in the existing ``grads`` arrays, ``stateful``/``set_state``/``reset_state``/``h``/``c``/``dh``.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastnn import backend
from fastnn.compat.dlfs2._recurrent import GRU, LSTM, RNN, TimeBiLSTM, TimeGRU, TimeLSTM, TimeRNN

from ..reference._numeric import central_differences

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _sig(v):
    return 1 / (1 + np.exp(-v))


def book_step(cell, x, h, c, Wx, Wh, b):
    """One step of the book's RNN / LSTM / GRU forward, as its formulas read."""
    H = Wh.shape[0]
    if cell == "rnn":
        return np.tanh(h @ Wh + x @ Wx + b), None
    if cell == "lstm":
        A = x @ Wx + h @ Wh + b
        f, g, i, o = _sig(A[:, :H]), np.tanh(A[:, H:2 * H]), _sig(A[:, 2 * H:3 * H]), _sig(A[:, 3 * H:])
        c = f * c + g * i
        return o * np.tanh(c), c
    z = _sig(x @ Wx[:, :H] + h @ Wh[:, :H] + b[:H])
    r = _sig(x @ Wx[:, H:2 * H] + h @ Wh[:, H:2 * H] + b[H:2 * H])
    h_hat = np.tanh(x @ Wx[:, 2 * H:] + (r * h) @ Wh[:, 2 * H:] + b[2 * H:])
    return (1 - z) * h + z * h_hat, None


def book_sequence(cell, xs, Wx, Wh, b, h=None, c=None):
    N, T, _ = xs.shape
    H = Wh.shape[0]
    h = np.zeros((N, H), xs.dtype) if h is None else h
    c = np.zeros((N, H), xs.dtype) if c is None else c
    hs = []
    for t in range(T):
        h, c_next = book_step(cell, xs[:, t], h, c, Wx, Wh, b)
        c = c if c_next is None else c_next
        hs.append(h)
    return np.stack(hs, axis=1), h, c


def _weights(cell, D, H, dtype, seed=0):
    rng = np.random.default_rng(seed)
    G = GATES[cell] * H
    return [(rng.standard_normal(s) * 0.5).astype(dtype) for s in ((D, G), (H, G), (G,))]


TIME = {"rnn": TimeRNN, "lstm": TimeLSTM, "gru": TimeGRU}


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_time_layer_forward_is_the_books(cell):
    N, T, D, H = 3, 4, 5, 6
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((N, T, D)).astype("f")
    W = _weights(cell, D, H, "f")
    layer = TIME[cell](*W)
    hs = layer.forward(xs)
    expected, h_last, c_last = book_sequence(cell, xs.astype(np.float64), *(w.astype(np.float64) for w in W))
    assert hs.dtype == np.float32 and layer.h.dtype == np.float32
    np.testing.assert_allclose(hs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.h, h_last, rtol=1e-5, atol=1e-6)
    if cell == "lstm":
        np.testing.assert_allclose(layer.c, c_last, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_time_layer_backward_is_the_books_gradient(cell):
    """Float64 weights (the classes take them as given) against central differences of the book's forward."""
    N, T, D, H = 2, 3, 3, 2
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((N, T, D))
    W = _weights(cell, D, H, np.float64, seed=3)
    w = rng.standard_normal((N, T, H))
    layer = TIME[cell](*W)
    grads = list(layer.grads)
    layer.forward(xs)
    dxs = layer.backward(w)
    assert all(a is b for a, b in zip(layer.grads, grads, strict=True))  # written into the same arrays

    def loss():
        return (book_sequence(cell, xs, *W)[0] * w).sum()

    for g, p in zip(layer.grads, W, strict=True):
        np.testing.assert_allclose(g, central_differences(loss, p), rtol=1e-6, atol=1e-8)
    assert dxs.dtype == np.float32  # the book's np.empty((N, T, D), dtype='f')
    np.testing.assert_allclose(dxs, central_differences(loss, xs), rtol=1e-4, atol=1e-6)
    h0 = np.zeros((N, H))
    num_dh = central_differences(lambda: (book_sequence(cell, xs, *W, h=h0)[0] * w).sum(), h0)
    np.testing.assert_allclose(layer.dh, num_dh, rtol=1e-6, atol=1e-8)


def test_lstm_step_forward_backward():
    """The single-step LSTM: (h_next, c_next), then (dx, dh_prev, dc_prev) with a gradient into c_next too."""
    N, D, H = 2, 3, 4
    rng = np.random.default_rng(4)
    W = _weights("lstm", D, H, np.float64, seed=5)
    x, h, c = rng.standard_normal((N, D)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    dh_next, dc_next = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    layer = LSTM(*W)
    h_next, c_next = layer.forward(x, h, c)
    eh, ec = book_step("lstm", x, h, c, *W)
    np.testing.assert_allclose(h_next, eh, rtol=1e-13)
    np.testing.assert_allclose(c_next, ec, rtol=1e-13)
    dx, dh_prev, dc_prev = layer.backward(dh_next, dc_next)

    def loss():
        hn, cn = book_step("lstm", x, h, c, *W)
        return (hn * dh_next).sum() + (cn * dc_next).sum()

    for got, arr in ((dx, x), (dh_prev, h), (dc_prev, c), *zip(layer.grads, W, strict=True)):
        np.testing.assert_allclose(got, central_differences(loss, arr), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("cls", "cell"), [(RNN, "rnn"), (GRU, "gru")])
def test_step_forward_backward(cls, cell):
    N, D, H = 3, 2, 5
    rng = np.random.default_rng(6)
    W = _weights(cell, D, H, np.float64, seed=7)
    x, h, dh_next = rng.standard_normal((N, D)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    layer = cls(*W)
    np.testing.assert_allclose(layer.forward(x, h), book_step(cell, x, h, None, *W)[0], rtol=1e-13)
    dx, dh_prev = layer.backward(dh_next)

    def loss():
        return (book_step(cell, x, h, None, *W)[0] * dh_next).sum()

    for got, arr in ((dx, x), (dh_prev, h), *zip(layer.grads, W, strict=True)):
        np.testing.assert_allclose(got, central_differences(loss, arr), rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------------------------
# The contract


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_keeps_the_arrays_passed_in(cell):
    W = _weights(cell, 3, 4, "f")
    layer = TIME[cell](*W)
    assert all(p is w for p, w in zip(layer.params, W, strict=True))
    xs = np.random.default_rng(0).standard_normal((2, 3, 3)).astype("f")
    before = layer.forward(xs)
    W[1][...] *= 0.5  # an optimizer's in-place update reaches the layer
    assert np.abs(layer.forward(xs) - before).max() > 1e-4


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_stateful_carries_the_state(cell):
    N, T, D, H = 2, 6, 3, 4
    xs = np.random.default_rng(8).standard_normal((N, T, D)).astype("f")
    W = _weights(cell, D, H, "f")
    whole = TIME[cell](*W).forward(xs)
    layer = TIME[cell](*W, stateful=True)
    halves = np.concatenate([layer.forward(xs[:, :3]), layer.forward(xs[:, 3:])], axis=1)
    np.testing.assert_allclose(halves, whole, rtol=1e-5, atol=1e-6)
    # not stateful: every call starts from zeros
    plain = TIME[cell](*W)
    plain.forward(xs[:, :3])
    np.testing.assert_array_equal(plain.forward(xs[:, 3:]), TIME[cell](*W).forward(xs[:, 3:]))
    layer.reset_state()
    np.testing.assert_allclose(layer.forward(xs[:, :3]), whole[:, :3], rtol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_batch_change_on_a_stateful_layer_is_refused(cell):
    W = _weights(cell, 3, 4, "f")
    layer = TIME[cell](*W, stateful=True)
    xs = np.ones((2, 2, 3), "f")
    layer.forward(xs)
    h = layer.h.copy()
    with pytest.raises(ValueError, match=r"forward: h must be of shape \(1, 4\).*reset_state\(\)"):
        layer.forward(xs[:1])
    np.testing.assert_array_equal(layer.h, h)  # nothing changed
    layer.reset_state()
    assert layer.forward(xs[:1]).shape == (1, 2, 4)


def test_set_state_never_writes_into_its_argument():
    """Seq2seq hands the decoder a strided view of the encoder's output; a read-only array shows no write."""
    N, T, D, H = 2, 3, 3, 4
    W = _weights("lstm", D, H, "f")
    enc = np.random.default_rng(9).standard_normal((N, 5, H)).astype("f")
    enc.flags.writeable = False
    layer = TimeLSTM(*W, stateful=True)
    layer.set_state(enc[:, -1, :])
    xs = np.ones((N, T, D), "f")
    hs = layer.forward(xs)
    expected = book_sequence("lstm", xs.astype(np.float64), *(w.astype(np.float64) for w in W),
                             h=enc[:, -1].astype(np.float64))[0]
    np.testing.assert_allclose(hs, expected, rtol=1e-5, atol=1e-6)
    layer.backward(np.ones_like(hs))
    assert layer.dh.shape == (N, H)
    assert layer.c is not None and layer.h is not enc[:, -1]


def test_reference_backend_gives_the_same_numbers():
    W = _weights("lstm", 3, 5, "f")
    xs = np.random.default_rng(10).standard_normal((2, 4, 3)).astype("f")
    a = TimeLSTM(*W)
    out = a.forward(xs)
    dxs = a.backward(np.ones_like(out))
    grads = [g.copy() for g in a.grads]
    with backend.using("reference"):
        b = TimeLSTM(*W)
        out_r = b.forward(xs)
        dxs_r = b.backward(np.ones_like(out))
    np.testing.assert_allclose(out, out_r, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dxs, dxs_r, rtol=1e-5, atol=1e-6)
    for g, r in zip(grads, b.grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)


def test_bilstm():
    N, T, D, H = 2, 4, 3, 2
    W1, W2 = _weights("lstm", D, H, np.float64, 11), _weights("lstm", D, H, np.float64, 12)
    rng = np.random.default_rng(13)
    xs, w = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, 2 * H))
    layer = TimeBiLSTM(*W1, *W2)
    assert len(layer.params) == len(layer.grads) == 6 and layer.params[3] is W2[0]
    out = layer.forward(xs)

    def book():
        o1 = book_sequence("lstm", xs, *W1)[0]
        o2 = book_sequence("lstm", xs[:, ::-1], *W2)[0][:, ::-1]
        return np.concatenate([o1, o2], axis=2)

    np.testing.assert_allclose(out, book(), rtol=1e-6, atol=1e-7)  # float32 outputs, as the book's
    dxs = layer.backward(w)
    np.testing.assert_allclose(dxs, central_differences(lambda: (book() * w).sum(), xs), rtol=1e-4, atol=1e-6)
    for g, p in zip(layer.grads, [*W1, *W2], strict=True):
        np.testing.assert_allclose(g, central_differences(lambda: (book() * w).sum(), p), rtol=1e-6, atol=1e-8)


def test_params_must_be_float_arrays():
    with pytest.raises(TypeError, match=r"TimeLSTM: Wx must be a float32 or float64 ndarray"):
        TimeLSTM([[1.0]], np.zeros((1, 4), "f"), np.zeros(4, "f"))
