"""Deep Learning from Scratch 2's ``common/time_layers.py`` on fastnn kernels: same classes, arguments and
attributes.

``from common.time_layers import *`` becomes ``from fastnn.compat.dlfs2.time_layers import *`` (which, as the
book's module, also brings the layers of :mod:`fastnn.compat.dlfs2.layers`). The recurrent layers (RNN, TimeRNN,
LSTM, TimeLSTM, GRU, TimeGRU, TimeBiLSTM) come from :mod:`fastnn.compat.dlfs2._recurrent`; the time-distributed
ones are here, each one kernel call over all N*T positions where the book loops over the T steps.

Differences from the book: a batch whose labels are all ``ignore_label`` is refused by ``TimeSoftmaxWithLoss``
(the book's loss is then 0/0 = NaN), and an ignored position never makes the loss NaN (the book takes the log of
the last column's probability there, which is NaN after ``-inf * 0`` when that probability underflows); the
summation order
of the embedding gradient is by sample then step (the book adds per-step sums), equal up to float rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import _validate
from ...backend import ops
from ._common import affine, affine_backward, embedding_backward_into, params_and_grads, sequences
from ._recurrent import GRU, LSTM, RNN, TimeBiLSTM, TimeGRU, TimeLSTM, TimeRNN  # noqa: F401
from ._recurrent import __all__ as _recurrent_all
from .layers import *  # noqa: F403 -- the book's time_layers.py re-exports its layers.py
from .layers import __all__ as _layers_all
from .layers import sigmoid_with_loss_backward, sigmoid_with_loss_forward

__all__ = [*_layers_all, "TimeEmbedding", "TimeAffine", "TimeSoftmaxWithLoss", "TimeDropout", "TimeSigmoidWithLoss",
           *_recurrent_all]


class TimeEmbedding:
    """Token ids (N, T) -> their rows of ``W`` (N, T, D); ``params = [W]``, ``grads = [dW]``."""

    def __init__(self, W: np.ndarray) -> None:
        self.params, self.grads = params_and_grads("TimeEmbedding", W=W)
        self.W = W
        self.idx = None

    def forward(self, xs: Any) -> np.ndarray:
        out = ops.embedding_forward(self.W, xs)
        self.idx = xs
        return out

    def backward(self, dout: Any) -> None:
        """Writes dW into ``grads[0]`` (repeated ids accumulate); returns None, as the book."""
        embedding_backward_into(self.grads[0], dout, self.idx)
        return None


class TimeAffine:
    """(N, T, D) -> (N, T, M) by ``x @ W + b`` at every step; ``W`` may be a transposed view (a tied embedding,
    ``TimeAffine(embed_W.T, b)``): it is kept as given, so the tie survives updates."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.params, self.grads = params_and_grads("TimeAffine", W=W, b=b)
        self.x = None

    def forward(self, x: Any) -> np.ndarray:
        x = sequences(x, "TimeAffine.forward", "x")
        W, b = self.params
        N, T, D = x.shape
        out = affine(x.reshape(N * T, D), W, b)
        self.x = x
        return out.reshape(N, T, -1)

    def backward(self, dout: Any) -> np.ndarray:
        x = self.x
        N, T, D = x.shape
        dout = sequences(dout, "TimeAffine.backward", "dout")
        _validate.shape(dout, (N, T, self.params[0].shape[1]), "TimeAffine.backward", "dout")
        dx = affine_backward(dout.reshape(N * T, -1), x.reshape(N * T, D), self.params[0], self.grads, with_bias=True)
        return dx.reshape(N, T, D)


class TimeSoftmaxWithLoss:
    """Softmax cross-entropy at every step, averaged over the positions whose label is not ``ignore_label`` (-1);
    labels (N, T) or one-hot (N, T, V)."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.cache = None
        self.ignore_label = -1

    def forward(self, xs: Any, ts: Any) -> np.generic:
        loss, probs = ops.time_softmax_cross_entropy_forward(xs, ts, self.ignore_label)
        self.cache = (ts, probs, self.ignore_label)
        return np.float64(loss)  # the book's loss is float64 (its float32 sum divided by an int64 count)

    def backward(self, dout: Any = 1) -> np.ndarray:
        ts, probs, ignore_label = self.cache
        return ops.time_softmax_cross_entropy_backward(probs, ts, ignore_label, dout)


class TimeDropout:
    """Inverted dropout over (N, T, D), switched by the attribute ``train_flg`` (set from outside, as the book's
    models do). The mask comes from the book's draws, ``np.random.rand(*xs.shape) > dropout_ratio``, so a script
    seeding NumPy's global generator gets the book's masks; ``mask`` is the book's float32 ``keep * scale``."""

    def __init__(self, dropout_ratio: float = 0.5) -> None:
        self.params, self.grads = [], []
        self.dropout_ratio = _validate.scalar(dropout_ratio, "TimeDropout", "dropout_ratio", ge=0.0, lt=1.0)
        self.mask = None
        self.train_flg = True
        self._keep = None

    def forward(self, xs: Any) -> np.ndarray:
        if not self.train_flg:
            return xs
        xs = _validate.float_array(xs, "TimeDropout.forward", "xs")
        self._keep = np.random.rand(*xs.shape) > self.dropout_ratio  # noqa: NPY002 -- the book's draws
        self._scale = 1 / (1.0 - self.dropout_ratio)
        self.mask = self._keep.astype(np.float32) * self._scale
        return ops.dropout_forward(xs, self._keep, self._scale)

    def backward(self, dout: Any) -> np.ndarray:
        return ops.dropout_backward(dout, self._keep, self._scale)


class TimeSigmoidWithLoss:
    """Sigmoid cross-entropy (the book's ``-log(y + 1e-7)``) of scores (N, T) against 0/1 labels (N, T), the mean
    over steps of the per-step batch means (that is, the mean over all N*T)."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.xs_shape = None
        self.layers = None

    def forward(self, xs: Any, ts: Any) -> np.generic:
        xs = _validate.float_array(xs, "TimeSigmoidWithLoss.forward", "xs", ndim=2)
        loss, self._probs, self._labels = sigmoid_with_loss_forward(xs, ts, "TimeSigmoidWithLoss.forward")
        self.xs_shape = xs.shape
        return loss

    def backward(self, dout: Any = 1) -> np.ndarray:
        return sigmoid_with_loss_backward(self._probs, self._labels, dout, self.xs_shape)
