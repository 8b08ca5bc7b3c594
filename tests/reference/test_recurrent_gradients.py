"""The reference recurrent backward passes against central differences of their forward passes (float64)."""

from __future__ import annotations

import numpy as np
import pytest

import fastnn.reference as R

from ._numeric import central_differences

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _setup(cell, N, T, D, H, seed):
    rng = np.random.default_rng(seed)
    G = GATES[cell] * H
    return {"x": rng.standard_normal((N, T, D)), "h0": rng.standard_normal((N, H)) * 0.5,
            "c0": rng.standard_normal((N, H)), "Wx": rng.standard_normal((D, G)) * 0.4,
            "Wh": rng.standard_normal((H, G)) * 0.4, "b": rng.standard_normal(G) * 0.3,
            "bh": rng.standard_normal(G) * 0.3, "w": rng.standard_normal((N, T, H)), "wc": rng.standard_normal((N, H))}


def _check(loss, d, names, grads):
    for name, g in zip(names, grads, strict=True):
        np.testing.assert_allclose(g, central_differences(loss, d[name]), rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("shape", [(2, 3, 4, 3), (1, 1, 2, 5)])
def test_rnn_gradient(shape):
    d = _setup("rnn", *shape, seed=1)
    hs = R.rnn_forward(d["x"], d["h0"], d["Wx"], d["Wh"], d["b"])
    grads = R.rnn_backward(d["w"], d["x"], d["h0"], d["Wx"], d["Wh"], hs)
    _check(lambda: (R.rnn_forward(d["x"], d["h0"], d["Wx"], d["Wh"], d["b"]) * d["w"]).sum(), d,
           ("x", "h0", "Wx", "Wh", "b"), grads)


@pytest.mark.parametrize("layout", ["ifgo", "fgio"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 3), (1, 1, 2, 5)])
def test_lstm_gradient(shape, layout):
    """The loss reads every step's h and the final c, so dc_last is checked too."""
    d = _setup("lstm", *shape, seed=2)
    a = lambda: (d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])  # noqa: E731

    def loss():
        hs, cs, _ = R.lstm_forward(*a(), layout=layout)
        return (hs * d["w"]).sum() + (cs[:, -1] * d["wc"]).sum()

    hs, cs, acts = R.lstm_forward(*a(), layout=layout)
    grads = R.lstm_backward(d["w"], d["wc"], *a()[:5], hs, cs, acts, layout=layout)
    _check(loss, d, ("x", "h0", "c0", "Wx", "Wh", "b"), grads)


@pytest.mark.parametrize("form", ["dlfs2", "torch"])
@pytest.mark.parametrize("shape", [(2, 3, 4, 3), (1, 1, 2, 5)])
def test_gru_gradient(shape, form):
    d = _setup("gru", *shape, seed=3)
    bh = (lambda: d["bh"]) if form == "torch" else (lambda: None)

    def loss():
        return (R.gru_forward(d["x"], d["h0"], d["Wx"], d["Wh"], d["b"], bh(), form=form)[0] * d["w"]).sum()

    hs, acts = R.gru_forward(d["x"], d["h0"], d["Wx"], d["Wh"], d["b"], bh(), form=form)
    grads = R.gru_backward(d["w"], d["x"], d["h0"], d["Wx"], d["Wh"], hs, acts, form=form)
    names = ("x", "h0", "Wx", "Wh", "b") + (("bh",) if form == "torch" else ())
    _check(loss, d, names, grads)
