r"""Whole-sequence tanh RNN, LSTM and GRU, forward and backward through time, in NumPy: the specification of
:mod:`fastnn.kernels.recurrent`.

Shapes (batch first): ``x`` (N, T, D) -- N sequences of T steps of D features, T >= 1; hidden size H. The weights
of a cell with G gate blocks are ``Wx`` (D, G*H), ``Wh`` (H, G*H), ``b`` (G*H,): one matrix for all gates, as in
Deep Learning from Scratch 2 and cs231n, whose blocks are gates in the order the layout names. The initial state
``h0`` (and ``c0``) is (N, H); the outputs ``hs`` (and ``cs``) are (N, T, H), so the final state is ``hs[:, -1]``
(``cs[:, -1]``). The backward passes take the upstream gradient of every step's output ``dhs`` (N, T, H) -- the
gradient into the final state is ``dhs[:, -1]`` -- and return fresh arrays: ``dx`` (N, T, D), ``dh0`` (N, H)
(``dc0``), and ``dWx``, ``dWh``, ``db`` of the weights' shapes, summed over the batch and all steps.

``acts`` is the forward's workspace the backward reads: the activated gates of every step, (N, T, G*H) in the
weights' block order (the GRU's torch form keeps a fourth block, see :func:`gru_forward`).

All arrays come in their common float dtype (float32 stays float32); inputs are never modified; any strides.
The time loop is Python here (one step depends on the last); each step is vectorised over the batch.
"""

from __future__ import annotations

import numpy as np

from .. import _checks
from .activations import _sigmoid_forward as _sigmoid

__all__ = ["rnn_forward", "rnn_backward", "lstm_forward", "lstm_backward", "gru_forward", "gru_backward"]


def _projection(x: np.ndarray, Wx: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x @ Wx + b for all N*T rows at once, (N, T, G*H)."""
    N, T, D = x.shape
    return (x.reshape(N * T, D) @ Wx + b).reshape(N, T, -1)


def _previous(h0: np.ndarray, hs: np.ndarray) -> np.ndarray:
    """The state each step starts from: (N, T, H) with h0 at step 0 and hs[:, t-1] at step t."""
    return np.concatenate([h0[:, None, :], hs[:, :-1]], axis=1)


def _weight_grads(x: np.ndarray, prev: np.ndarray, dA: np.ndarray, dAh: np.ndarray | None = None):
    """dWx = sum_t x_t^T dA_t, dWh = sum_t prev_t^T dAh_t, db = sum dA, each one product over all N*T rows."""
    N, T, D = x.shape
    G = dA.shape[2]
    dA2 = dA.reshape(N * T, G)
    dAh2 = dA2 if dAh is None else dAh.reshape(N * T, -1)
    return (x.reshape(N * T, D).T @ dA2, prev.reshape(N * T, -1).T @ dAh2, dA2.sum(axis=0))


def _input_grad(dA: np.ndarray, Wx: np.ndarray) -> np.ndarray:
    N, T, G = dA.shape
    return (dA.reshape(N * T, G) @ Wx.T).reshape(N, T, -1)


# ---------------------------------------------------------------------------------------------------------------
# tanh RNN


def rnn_forward(x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray) -> np.ndarray:
    r"""Forward pass of a tanh RNN over whole sequences (Deep Learning from Scratch 2's ``TimeRNN``, cs231n's
    ``rnn_forward``).

    .. math:: h_t = \tanh(x_t W_x + h_{t-1} W_h + b), \qquad h_{-1} = h_0

    Parameters
    ----------
    x : array_like, (N, T, D)
    h0 : array_like, (N, H)
    Wx : array_like, (D, H)
    Wh : array_like, (H, H)
    b : array_like, (H,)

    Returns
    -------
    hs : ndarray, (N, T, H), the common float dtype; ``hs[:, -1]`` is the final state.
    """
    return _rnn_forward(*_checks.check_rnn_forward("rnn_forward", x, h0, Wx, Wh, b))


def _rnn_forward(x, h0, Wx, Wh, b):
    hs = _projection(x, Wx, b)
    h = h0
    for t in range(x.shape[1]):
        h = np.tanh(hs[:, t] + h @ Wh)
        hs[:, t] = h
    return hs


def rnn_backward(dhs: np.ndarray, x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray,
                 hs: np.ndarray) -> tuple[np.ndarray, ...]:
    r"""Backward pass of :func:`rnn_forward` through time.

    .. math::
        da_t = (dh_t^{out} + da_{t+1} W_h^T) \odot (1 - h_t^2), \quad dx_t = da_t W_x^T, \quad
        dh_0 = da_0 W_h^T, \quad dW_x = \sum_t x_t^T da_t, \quad dW_h = \sum_t h_{t-1}^T da_t, \quad
        db = \sum_t \sum_n da_t

    Parameters
    ----------
    dhs : array_like, (N, T, H)
        Gradient of the loss with respect to every step's output (the final state's is ``dhs[:, -1]``).
    x, h0, Wx, Wh : the forward's arguments.
    hs : array_like, (N, T, H)
        The forward's output.

    Returns
    -------
    dx : ndarray, (N, T, D)
    dh0 : ndarray, (N, H)
    dWx : ndarray, (D, H)
    dWh : ndarray, (H, H)
    db : ndarray, (H,)
    """
    return _rnn_backward(*_checks.check_rnn_backward("rnn_backward", dhs, x, h0, Wx, Wh, hs))


def _rnn_backward(dhs, x, h0, Wx, Wh, hs):
    N, T, H = hs.shape
    dA = np.empty_like(hs)
    dh = np.zeros((N, H), hs.dtype)
    for t in range(T - 1, -1, -1):
        dA[:, t] = (dhs[:, t] + dh) * (1 - hs[:, t] ** 2)
        dh = dA[:, t] @ Wh.T
    return (_input_grad(dA, Wx), dh, *_weight_grads(x, _previous(h0, hs), dA))


# ---------------------------------------------------------------------------------------------------------------
# LSTM


def lstm_forward(x: np.ndarray, h0: np.ndarray, c0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray, *,
                 layout: str = "ifgo") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Forward pass of an LSTM over whole sequences.

    .. math::
        a_t = x_t W_x + h_{t-1} W_h + b, \quad i, f, o = \sigma(a^i_t), \sigma(a^f_t), \sigma(a^o_t), \quad
        g = \tanh(a^g_t), \quad c_t = f \odot c_{t-1} + i \odot g, \quad h_t = o \odot \tanh(c_t)

    Parameters
    ----------
    x : array_like, (N, T, D)
    h0, c0 : array_like, (N, H)
        Initial hidden and cell state.
    Wx : array_like, (D, 4H)
    Wh : array_like, (H, 4H)
    b : array_like, (4H,)
    layout : str, keyword-only
        Order of the gate blocks in Wx, Wh, b and ``acts``: a permutation of "ifgo". PyTorch's "ifgo" (default),
        cs231n's "ifog", Deep Learning from Scratch 2's "fgio".

    Returns
    -------
    hs : ndarray, (N, T, H)
        Hidden states; ``hs[:, -1]`` is the final one.
    cs : ndarray, (N, T, H)
        Cell states; ``cs[:, -1]`` is the final one.
    acts : ndarray, (N, T, 4H)
        The activated gates (sigmoid of i, f, o, tanh of g) in ``layout``'s block order, for the backward.
    """
    *arrays, layout = _checks.check_lstm_forward("lstm_forward", x, h0, c0, Wx, Wh, b, layout)
    return _lstm_forward(*arrays, layout=layout)


def _blocks(a: np.ndarray, offsets: tuple[int, ...], H: int) -> list[np.ndarray]:
    """Views of the gate blocks of ``a`` (..., G*H) in the order the offsets are given."""
    return [a[..., k * H:(k + 1) * H] for k in offsets]


def _lstm_forward(x, h0, c0, Wx, Wh, b, *, layout="ifgo"):
    offsets = _checks.lstm_offsets(layout)
    N, T, _ = x.shape
    H = Wh.shape[0]
    acts = _projection(x, Wx, b)
    hs = np.empty((N, T, H), acts.dtype)
    cs = np.empty((N, T, H), acts.dtype)
    h, c = h0, c0
    for t in range(T):
        a = acts[:, t]
        a += h @ Wh
        i, f, g, o = _blocks(a, offsets, H)
        for gate in (i, f, o):
            gate[...] = _sigmoid(gate)
        g[...] = np.tanh(g)
        c = f * c + i * g
        h = o * np.tanh(c)
        hs[:, t], cs[:, t] = h, c
    return hs, cs, acts


def lstm_backward(dhs: np.ndarray, dc_last: np.ndarray | None, x: np.ndarray, h0: np.ndarray, c0: np.ndarray,
                  Wx: np.ndarray, Wh: np.ndarray, hs: np.ndarray, cs: np.ndarray, acts: np.ndarray, *,
                  layout: str = "ifgo") -> tuple[np.ndarray, ...]:
    r"""Backward pass of :func:`lstm_forward` through time.

    With :math:`dh_t = dh^{out}_t + da_{t+1} W_h^T` and :math:`dc_t` carried back from step t+1 (``dc_last`` at
    the last step):

    .. math::
        ds = dc_t + dh_t \odot o \odot (1 - \tanh^2 c_t), \quad dc_{t-1} = ds \odot f, \quad
        da^i = ds \odot g \odot i(1-i), \quad da^f = ds \odot c_{t-1} \odot f(1-f), \\
        da^g = ds \odot i \odot (1-g^2), \quad da^o = dh_t \odot \tanh c_t \odot o(1-o)

    and dx, dWx, dWh, db from :math:`da` as in :func:`rnn_backward`.

    Parameters
    ----------
    dhs : array_like, (N, T, H)
        Gradient with respect to every step's hidden output.
    dc_last : array_like (N, H) or None
        Gradient with respect to the final cell state ``cs[:, -1]``; None is zero.
    x, h0, c0, Wx, Wh : the forward's arguments.
    hs, cs, acts : the forward's results.
    layout : str, keyword-only
        The forward's layout.

    Returns
    -------
    dx : ndarray, (N, T, D)
    dh0, dc0 : ndarray, (N, H)
    dWx : ndarray, (D, 4H)
    dWh : ndarray, (H, 4H)
    db : ndarray, (4H,)
    """
    *arrays, layout = _checks.check_lstm_backward("lstm_backward", dhs, dc_last, x, h0, c0, Wx, Wh, hs, cs, acts,
                                                  layout)
    return _lstm_backward(*arrays, layout=layout)


def _lstm_backward(dhs, dc_last, x, h0, c0, Wx, Wh, hs, cs, acts, *, layout="ifgo"):
    offsets = _checks.lstm_offsets(layout)
    N, T, H = hs.shape
    dA = np.empty_like(acts)
    dh = np.zeros((N, H), hs.dtype)
    dc = np.zeros((N, H), hs.dtype) if dc_last is None else dc_last
    for t in range(T - 1, -1, -1):
        i, f, g, o = _blocks(acts[:, t], offsets, H)
        di, df, dg, do = _blocks(dA[:, t], offsets, H)
        c_prev = c0 if t == 0 else cs[:, t - 1]
        tc = np.tanh(cs[:, t])
        dh = dhs[:, t] + dh
        ds = dc + dh * o * (1 - tc * tc)
        di[...] = ds * g * i * (1 - i)
        df[...] = ds * c_prev * f * (1 - f)
        dg[...] = ds * i * (1 - g * g)
        do[...] = dh * tc * o * (1 - o)
        dc = ds * f
        dh = dA[:, t] @ Wh.T
    return (_input_grad(dA, Wx), dh, dc, *_weight_grads(x, _previous(h0, hs), dA))


# ---------------------------------------------------------------------------------------------------------------
# GRU


def gru_forward(x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray,
                bh: np.ndarray | None = None, *, form: str = "dlfs2") -> tuple[np.ndarray, np.ndarray]:
    r"""Forward pass of a GRU over whole sequences, in Deep Learning from Scratch 2's form or PyTorch's.

    ``form="dlfs2"`` (``common/time_layers.py`` ``GRU``): blocks z, r, h of Wx, Wh, b; r gates the state before
    its product with the candidate's weights; no hidden bias (``bh`` must be None):

    .. math::
        z = \sigma(x_t W^z_x + h_{t-1} W^z_h + b^z), \quad r = \sigma(x_t W^r_x + h_{t-1} W^r_h + b^r), \\
        \hat h = \tanh(x_t W^h_x + (r \odot h_{t-1}) W^h_h + b^h), \quad h_t = (1 - z) \odot h_{t-1} + z \odot \hat h

    ``form="torch"`` (``torch.nn.GRU``, ``Wx = weight_ih.T``, ``Wh = weight_hh.T``, ``b = bias_ih``,
    ``bh = bias_hh``): blocks r, z, n; r gates the candidate's hidden product including its bias:

    .. math::
        r = \sigma(x_t W^r_x + b^r + h_{t-1} W^r_h + b^r_h), \quad
        z = \sigma(x_t W^z_x + b^z + h_{t-1} W^z_h + b^z_h), \\
        n = \tanh(x_t W^n_x + b^n + r \odot (h_{t-1} W^n_h + b^n_h)), \quad h_t = (1 - z) \odot n + z \odot h_{t-1}

    Parameters
    ----------
    x : array_like, (N, T, D)
    h0 : array_like, (N, H)
    Wx : array_like, (D, 3H)
    Wh : array_like, (H, 3H)
    b : array_like, (3H,)
    bh : array_like (3H,) or None
        The hidden bias: required with ``form="torch"``, None with ``form="dlfs2"``.
    form : {"dlfs2", "torch"}, keyword-only

    Returns
    -------
    hs : ndarray, (N, T, H)
        Hidden states; ``hs[:, -1]`` is the final one.
    acts : ndarray, (N, T, 3H) for "dlfs2" (z, r, h_hat), (N, T, 4H) for "torch" (r, z, n and
        :math:`h_{t-1} W^n_h + b^n_h`), for the backward.
    """
    *arrays, form = _checks.check_gru_forward("gru_forward", x, h0, Wx, Wh, b, bh, form)
    return _gru_forward(*arrays, form=form)


def _gru_forward(x, h0, Wx, Wh, b, bh=None, *, form="dlfs2"):
    N, T, _ = x.shape
    H = Wh.shape[0]
    ax = _projection(x, Wx, b)
    hs = np.empty((N, T, H), ax.dtype)
    h = h0
    if form == "dlfs2":
        acts = ax
        for t in range(T):
            z, r, hh = _blocks(acts[:, t], (0, 1, 2), H)
            zr = acts[:, t, :2 * H]
            zr[...] = _sigmoid(zr + h @ Wh[:, :2 * H])
            hh[...] = np.tanh(hh + (r * h) @ Wh[:, 2 * H:])
            h = (1 - z) * h + z * hh
            hs[:, t] = h
        return hs, acts
    acts = np.empty((N, T, 4 * H), ax.dtype)
    acts[..., :3 * H] = ax
    for t in range(T):
        r, z, n, hn = _blocks(acts[:, t], (0, 1, 2, 3), H)
        ah = h @ Wh + bh
        rz = acts[:, t, :2 * H]
        rz[...] = _sigmoid(rz + ah[:, :2 * H])
        hn[...] = ah[:, 2 * H:]
        n[...] = np.tanh(n + r * hn)
        h = (1 - z) * n + z * h
        hs[:, t] = h
    return hs, acts


def gru_backward(dhs: np.ndarray, x: np.ndarray, h0: np.ndarray, Wx: np.ndarray, Wh: np.ndarray, hs: np.ndarray,
                 acts: np.ndarray, *, form: str = "dlfs2") -> tuple[np.ndarray, ...]:
    r"""Backward pass of :func:`gru_forward` through time.

    ``form="dlfs2"``, with :math:`dh_t = dh^{out}_t + (\text{carried from } t+1)`:

    .. math::
        da^h = dh_t \odot z \odot (1 - \hat h^2), \quad d(rh) = da^h (W^h_h)^T, \quad
        da^z = dh_t \odot (\hat h - h_{t-1}) \odot z(1-z), \quad da^r = d(rh) \odot h_{t-1} \odot r(1-r), \\
        dh_{t-1} = dh_t \odot (1 - z) + r \odot d(rh) + [da^z, da^r] [W^z_h, W^r_h]^T

    ``form="torch"``:

    .. math::
        da^n = dh_t \odot (1 - z) \odot (1 - n^2), \quad da^z = dh_t \odot (h_{t-1} - n) \odot z(1-z), \quad
        da^r = da^n \odot (h_{t-1} W^n_h + b^n_h) \odot r(1-r), \\
        dh_{t-1} = dh_t \odot z + [da^r, da^z, r \odot da^n] W_h^T

    Parameters
    ----------
    dhs : array_like, (N, T, H)
    x, h0, Wx, Wh : the forward's arguments.
    hs, acts : the forward's results.
    form : {"dlfs2", "torch"}, keyword-only
        The forward's form.

    Returns
    -------
    dx : ndarray, (N, T, D)
    dh0 : ndarray, (N, H)
    dWx : ndarray, (D, 3H)
    dWh : ndarray, (H, 3H)
    db : ndarray, (3H,)
    dbh : ndarray, (3H,) -- with ``form="torch"`` only (the hidden bias's gradient): a 6-tuple then.
    """
    *arrays, form = _checks.check_gru_backward("gru_backward", dhs, x, h0, Wx, Wh, hs, acts, form)
    return _gru_backward(*arrays, form=form)


def _gru_backward(dhs, x, h0, Wx, Wh, hs, acts, *, form="dlfs2"):
    N, T, H = hs.shape
    prev = _previous(h0, hs)
    dA = np.empty((N, T, 3 * H), hs.dtype)
    dh = np.zeros((N, H), hs.dtype)
    if form == "dlfs2":
        for t in range(T - 1, -1, -1):
            z, r, hh = _blocks(acts[:, t], (0, 1, 2), H)
            dz, dr, dhh = _blocks(dA[:, t], (0, 1, 2), H)
            hp = prev[:, t]
            dh = dhs[:, t] + dh
            dhh[...] = dh * z * (1 - hh * hh)
            drh = dhh @ Wh[:, 2 * H:].T
            dz[...] = dh * (hh - hp) * z * (1 - z)
            dr[...] = drh * hp * r * (1 - r)
            dh = dh * (1 - z) + r * drh + dA[:, t, :2 * H] @ Wh[:, :2 * H].T
        # the gates' hidden weights multiply h_{t-1}, the candidate's r * h_{t-1}
        rh = (acts[..., H:2 * H] * prev).reshape(N * T, H)
        dWx, _, db = _weight_grads(x, prev, dA)
        dWh = np.concatenate([prev.reshape(N * T, H).T @ dA[..., :2 * H].reshape(N * T, 2 * H),
                              rh.T @ dA[..., 2 * H:].reshape(N * T, H)], axis=1)
        return _input_grad(dA, Wx), dh, dWx, dWh, db
    dAh = np.empty_like(dA)  # gradient of h_{t-1} W_h + b_h: differs from dA in the n block (times r)
    for t in range(T - 1, -1, -1):
        r, z, n, hn = _blocks(acts[:, t], (0, 1, 2, 3), H)
        dr, dz, dn = _blocks(dA[:, t], (0, 1, 2), H)
        hp = prev[:, t]
        dh = dhs[:, t] + dh
        dn[...] = dh * (1 - z) * (1 - n * n)
        dz[...] = dh * (hp - n) * z * (1 - z)
        dr[...] = dn * hn * r * (1 - r)
        dAh[:, t, :2 * H] = dA[:, t, :2 * H]
        dAh[:, t, 2 * H:] = r * dn
        dh = dh * z + dAh[:, t] @ Wh.T
    dWx, dWh, db = _weight_grads(x, prev, dA, dAh)
    return _input_grad(dA, Wx), dh, dWx, dWh, db, dAh.reshape(N * T, 3 * H).sum(axis=0)
