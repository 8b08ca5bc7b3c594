"""Deep Learning from Scratch 2's recurrent layers (``common/time_layers.py``: RNN, TimeRNN, LSTM, TimeLSTM, GRU,
TimeGRU, TimeBiLSTM) on fastnn's whole-sequence kernels.

Same constructors, ``params``/``grads`` lists, attributes (``h``, ``c``, ``dh``, ``stateful``) and numbers as the
book's. Each class keeps the very arrays passed in (an optimizer updating them in place updates the layer) and
writes its gradients into its existing ``grads`` arrays (``grads[i][...] = ...``) only after every product has
been computed, so an error leaves them as they were. The book's gate orders are kept: LSTM blocks f, g, i, o
(``layout="fgio"``), GRU blocks z, r, h with r applied before the candidate's ``Wh`` product (``form="dlfs2"``).

Where the book builds one layer object per step and loops in Python, the time layers here make one forward and
one backward kernel call per sequence (:mod:`fastnn.kernels.recurrent`), through :data:`fastnn.backend.ops`, so
``fastnn.backend.using("reference")`` runs them on the NumPy twins.

Differences from the book, all at its edges:

* a stateful layer refuses a batch whose size differs from its carried state's (call ``reset_state()`` first);
  the book broadcasts a carried state of one row over any batch, or fails inside ``np.dot``;
* ``h``, ``c`` after a forward pass are copies of the last step's state: ``set_state(h)`` keeps the given array
  and never writes into it (the book neither);
* the time layers' outputs and input gradients are float32, as the book's ``np.empty(..., dtype='f')``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import _validate
from ...backend import ops
from ...layers._base import parameter

__all__ = ["RNN", "TimeRNN", "LSTM", "TimeLSTM", "GRU", "TimeGRU", "TimeBiLSTM"]

#: The book's gate orders: LSTM ``A[:, :H]`` is f, then g, i, o; GRU z, r, h.
LSTM_LAYOUT = "fgio"
GRU_FORM = "dlfs2"


def _params(where: str, Wx: Any, Wh: Any, b: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``[Wx, Wh, b]`` as given and their zero gradients, as the book's ``__init__``."""
    params = [parameter(Wx, where, "Wx", ndim=2), parameter(Wh, where, "Wh", ndim=2), parameter(b, where, "b", ndim=1)]
    return params, [np.zeros_like(p) for p in params]


def _write(grads: list[np.ndarray], values: tuple[np.ndarray, ...]) -> None:
    for g, v in zip(grads, values, strict=True):
        g[...] = v


def _step(x: Any, where: str) -> np.ndarray:
    """One step's input (N, D) as a (N, 1, D) sequence."""
    return _validate.float_array(x, where, "x", ndim=2)[:, None, :]


def _sequences(xs: Any, where: str) -> np.ndarray:
    return _validate.float_array(xs, where, "xs", ndim=3)


def _state(layer: Any, name: str, N: int, H: int, where: str) -> np.ndarray:
    """The state a time layer starts from: zeros (N, H) float32 unless stateful with a carried state, which must
    have the batch's N rows."""
    held = getattr(layer, name)
    if not layer.stateful or held is None:
        return np.zeros((N, H), dtype="f")
    if not isinstance(held, np.ndarray) or held.shape != (N, H):
        got = held.shape if isinstance(held, np.ndarray) else _validate.describe(held)
        _validate.fail(where, name, f"of shape ({N}, {H}) for this batch of N={N} (a stateful layer keeps its state "
                       "across calls: call reset_state() before changing the batch size)", got)
    return held


# ---------------------------------------------------------------------------------------------------------------
# Single steps


class RNN:
    """One tanh RNN step: ``h_next = tanh(h_prev @ Wh + x @ Wx + b)``; ``params = [Wx, Wh, b]``."""

    def __init__(self, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray) -> None:
        self.params, self.grads = _params("RNN", Wx, Wh, b)
        self.cache = None

    def forward(self, x: np.ndarray, h_prev: np.ndarray) -> np.ndarray:
        Wx, Wh, b = self.params
        xs = _step(x, "RNN.forward")
        h_next = ops.rnn_forward(xs, h_prev, Wx, Wh, b)[:, 0]
        self.cache = (xs, h_prev, h_next)
        return h_next

    def backward(self, dh_next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dx, dh_prev); dWx, dWh, db written into ``grads``."""
        Wx, Wh, _ = self.params
        xs, h_prev, h_next = self.cache
        dx, dh_prev, *grads = ops.rnn_backward(np.asarray(dh_next)[:, None], xs, h_prev, Wx, Wh, h_next[:, None])
        _write(self.grads, grads)
        return dx[:, 0], dh_prev


class LSTM:
    """One LSTM step with the book's gate order f, g, i, o; ``params = [Wx (D, 4H), Wh (H, 4H), b (4H,)]``."""

    def __init__(self, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray) -> None:
        self.params, self.grads = _params("LSTM", Wx, Wh, b)
        self.cache = None

    def forward(self, x: np.ndarray, h_prev: np.ndarray, c_prev: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(h_next, c_next)."""
        Wx, Wh, b = self.params
        xs = _step(x, "LSTM.forward")
        hs, cs, acts = ops.lstm_forward(xs, h_prev, c_prev, Wx, Wh, b, layout=LSTM_LAYOUT)
        self.cache = (xs, h_prev, c_prev, hs, cs, acts)
        return hs[:, 0], cs[:, 0]

    def backward(self, dh_next: np.ndarray, dc_next: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dx, dh_prev, dc_prev); dWx, dWh, db written into ``grads``."""
        Wx, Wh, _ = self.params
        xs, h_prev, c_prev, hs, cs, acts = self.cache
        dx, dh_prev, dc_prev, *grads = ops.lstm_backward(np.asarray(dh_next)[:, None], dc_next, xs, h_prev, c_prev,
                                                         Wx, Wh, hs, cs, acts, layout=LSTM_LAYOUT)
        _write(self.grads, grads)
        return dx[:, 0], dh_prev, dc_prev


class GRU:
    """One GRU step in the book's form (blocks z, r, h; ``h_hat = tanh(x Wxh + (r*h) Whh + bh)``,
    ``h_next = (1-z) h_prev + z h_hat``); ``params = [Wx (D, 3H), Wh (H, 3H), b (3H,)]``."""

    def __init__(self, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray) -> None:
        self.params, self.grads = _params("GRU", Wx, Wh, b)
        self.cache = None

    def forward(self, x: np.ndarray, h_prev: np.ndarray) -> np.ndarray:
        Wx, Wh, b = self.params
        xs = _step(x, "GRU.forward")
        hs, acts = ops.gru_forward(xs, h_prev, Wx, Wh, b, form=GRU_FORM)
        self.cache = (xs, h_prev, hs, acts)
        return hs[:, 0]

    def backward(self, dh_next: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dx, dh_prev); dWx, dWh, db written into ``grads`` (and kept as ``dWx``, ``dWh``, ``db``, as the book)."""
        Wx, Wh, _ = self.params
        xs, h_prev, hs, acts = self.cache
        dx, dh_prev, *grads = ops.gru_backward(np.asarray(dh_next)[:, None], xs, h_prev, Wx, Wh, hs, acts,
                                               form=GRU_FORM)
        self.dWx, self.dWh, self.db = grads
        _write(self.grads, grads)
        return dx[:, 0], dh_prev


# ---------------------------------------------------------------------------------------------------------------
# Whole sequences


class _TimeLayer:
    """What the book's time layers share: ``params``/``grads`` ``[Wx, Wh, b]``, the carried states named in
    ``_states`` (``h``, and ``c`` for the LSTM), ``stateful``, ``set_state``/``reset_state``, and the bookkeeping
    either side of the kernel call (subclasses write ``forward``/``backward`` around it)."""

    _states: tuple[str, ...] = ("h",)

    def __init__(self, Wx: np.ndarray, Wh: np.ndarray, b: np.ndarray, stateful: bool = False) -> None:
        self.params, self.grads = _params(type(self).__name__, Wx, Wh, b)
        self.layers = None
        for name in self._states:
            setattr(self, name, None)
        self.dh = None
        self.stateful = stateful
        self.cache = None

    def _start(self, xs: Any, where: str) -> tuple[np.ndarray, ...]:
        """``xs`` checked (N, T, D), then the initial states (N, H) in ``_states`` order (see :func:`_state`)."""
        xs = _sequences(xs, where)
        N, H = xs.shape[0], self.params[1].shape[0]
        return (xs, *(_state(self, name, N, H, where) for name in self._states))

    def _carry(self, *seqs: np.ndarray) -> np.ndarray:
        """Keep the last step of each state sequence (hs, then cs) as a float32 copy; return hs as float32."""
        for name, seq in zip(self._states, seqs, strict=True):
            setattr(self, name, seq[:, -1].astype("f"))
        return seqs[0].astype("f", copy=False)

    def _backward_done(self, dxs: np.ndarray, dh: np.ndarray, grads: list[np.ndarray]) -> np.ndarray:
        """Write dWx, dWh, db into ``grads``, keep ``dh`` (the gradient into the initial h); dxs as float32."""
        _write(self.grads, grads)
        self.dh = dh
        return dxs.astype("f", copy=False)

    def set_state(self, h: np.ndarray) -> None:
        self.h = h

    def reset_state(self) -> None:
        for name in self._states:
            setattr(self, name, None)


class TimeRNN(_TimeLayer):
    """T tanh RNN steps over xs (N, T, D) -> hs (N, T, H); ``stateful`` carries ``h`` across calls."""

    def forward(self, xs: np.ndarray) -> np.ndarray:
        Wx, Wh, b = self.params
        xs, h0 = self._start(xs, "TimeRNN.forward")
        hs = ops.rnn_forward(xs, h0, Wx, Wh, b)
        self.cache = (xs, h0, hs)
        return self._carry(hs)

    def backward(self, dhs: np.ndarray) -> np.ndarray:
        """dxs (N, T, D) float32; dWx, dWh, db written into ``grads``; ``dh`` the gradient into the initial state."""
        Wx, Wh, _ = self.params
        xs, h0, hs = self.cache
        dxs, dh, *grads = ops.rnn_backward(dhs, xs, h0, Wx, Wh, hs)
        return self._backward_done(dxs, dh, grads)


class TimeLSTM(_TimeLayer):
    """T LSTM steps (gate order f, g, i, o) over xs (N, T, D) -> hs (N, T, H); ``stateful`` carries ``h`` and
    ``c`` across calls."""

    _states = ("h", "c")

    def forward(self, xs: np.ndarray) -> np.ndarray:
        Wx, Wh, b = self.params
        xs, h0, c0 = self._start(xs, "TimeLSTM.forward")
        hs, cs, acts = ops.lstm_forward(xs, h0, c0, Wx, Wh, b, layout=LSTM_LAYOUT)
        self.cache = (xs, h0, c0, hs, cs, acts)
        return self._carry(hs, cs)

    def backward(self, dhs: np.ndarray) -> np.ndarray:
        """dxs (N, T, D) float32; dWx, dWh, db written into ``grads``; ``dh`` the gradient into the initial h."""
        Wx, Wh, _ = self.params
        xs, h0, c0, hs, cs, acts = self.cache
        dxs, dh, _, *grads = ops.lstm_backward(dhs, None, xs, h0, c0, Wx, Wh, hs, cs, acts, layout=LSTM_LAYOUT)
        return self._backward_done(dxs, dh, grads)

    def set_state(self, h: np.ndarray, c: np.ndarray | None = None) -> None:
        self.h, self.c = h, c


class TimeGRU(_TimeLayer):
    """T GRU steps in the book's form over xs (N, T, D) -> hs (N, T, H); ``stateful`` carries ``h``."""

    def forward(self, xs: np.ndarray) -> np.ndarray:
        Wx, Wh, b = self.params
        xs, h0 = self._start(xs, "TimeGRU.forward")
        hs, acts = ops.gru_forward(xs, h0, Wx, Wh, b, form=GRU_FORM)
        self.cache = (xs, h0, hs, acts)
        return self._carry(hs)

    def backward(self, dhs: np.ndarray) -> np.ndarray:
        Wx, Wh, _ = self.params
        xs, h0, hs, acts = self.cache
        dxs, dh, *grads = ops.gru_backward(dhs, xs, h0, Wx, Wh, hs, acts, form=GRU_FORM)
        return self._backward_done(dxs, dh, grads)


class TimeBiLSTM:
    """Two TimeLSTMs, one reading xs forwards and one backwards; outputs concatenated (N, T, 2H)."""

    def __init__(self, Wx1: np.ndarray, Wh1: np.ndarray, b1: np.ndarray, Wx2: np.ndarray, Wh2: np.ndarray,
                 b2: np.ndarray, stateful: bool = False) -> None:
        self.forward_lstm = TimeLSTM(Wx1, Wh1, b1, stateful)
        self.backward_lstm = TimeLSTM(Wx2, Wh2, b2, stateful)
        self.params = self.forward_lstm.params + self.backward_lstm.params
        self.grads = self.forward_lstm.grads + self.backward_lstm.grads

    def forward(self, xs: np.ndarray) -> np.ndarray:
        o1 = self.forward_lstm.forward(xs)
        o2 = self.backward_lstm.forward(_sequences(xs, "TimeBiLSTM.forward")[:, ::-1])
        return np.concatenate((o1, o2[:, ::-1]), axis=2)

    def backward(self, dhs: np.ndarray) -> np.ndarray:
        H = dhs.shape[2] // 2
        dxs1 = self.forward_lstm.backward(dhs[:, :, :H])
        dxs2 = self.backward_lstm.backward(dhs[:, :, H:][:, ::-1])
        return dxs1 + dxs2[:, ::-1]
