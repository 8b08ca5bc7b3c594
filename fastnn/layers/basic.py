"""Affine, activation, loss and dropout layers of Deep Learning from Scratch (``common/layers.py``) on fastnn kernels.

Same class names, constructor arguments, methods and attribute names as the book. Differences: inputs are
validated (errors name the layer and the argument), no layer writes into an array it is given (the book's
``Relu.backward`` zeroes ``dout`` in place), float32 stays float32, and the arithmetic is done by
:mod:`fastnn.kernels` (the affine products by :func:`fastnn.kernels.matmul`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate, kernels
from ._base import Entry, Layer, batch, features
from ._random import RandomSource

__all__ = ["Affine", "Dropout", "LeakyRelu", "Relu", "Sigmoid", "SoftmaxWithLoss", "Tanh"]


class Affine(Layer):
    """Fully connected layer ``out = x @ W + b``; an input of shape (N, ...) is flattened to (N, D).

    Parameters
    ----------
    W : ndarray (D, M), float32 or float64
    b : ndarray (M,), same dtype as ``W``
    """

    W = Entry("params", ndim=2)
    b = Entry("params", ndim=1)
    dW = Entry("grads")
    db = Entry("grads")

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.W, self.b = W, b
        _validate.shape(self.b, (self.W.shape[1],), "Affine", "b")
        self.dW = self.db = None
        self.x = None  # the input flattened to (N, D)
        self.original_x_shape = None

    def forward(self, x: Any) -> np.ndarray:
        """x (N, ...) with prod(...) == D -> out (N, M)."""
        x = batch(x, "Affine.forward", min_ndim=2)
        if features(x) != self.W.shape[0]:
            _validate.fail("Affine.forward", "x", f"of shape (N, ...) with {self.W.shape[0]} features per "
                           "sample (W.shape[0])", f"shape {x.shape}")
        self.original_x_shape = x.shape
        self.x = x.reshape(x.shape[0], self.W.shape[0])
        return self._output(kernels.matmul(self.x, self.W) + self.b)

    def backward(self, dout: Any) -> np.ndarray:
        """dout (N, M) -> dx of the input's shape; sets dW (D, M) and db (M,)."""
        dout = self._dout(dout, "Affine.backward")
        self.dW = kernels.matmul(self.x.T, dout)
        self.db = dout.sum(axis=0)
        return kernels.matmul(dout, self.W.T).reshape(self.original_x_shape)


class Relu(Layer):
    """``max(x, 0)`` elementwise (NaN propagates); any shape."""

    def __init__(self) -> None:
        super().__init__()
        self.x = None

    def forward(self, x: Any) -> np.ndarray:
        self.x = batch(x, "Relu.forward")
        return self._output(kernels.relu_forward(self.x))

    def backward(self, dout: Any) -> np.ndarray:
        return kernels.relu_backward(self._dout(dout, "Relu.backward"), self.x)


class LeakyRelu(Layer):
    """``x if x > 0 else alpha * x`` elementwise; any shape."""

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = _validate.scalar(alpha, "LeakyRelu", "alpha")
        self.x = None

    def forward(self, x: Any) -> np.ndarray:
        self.x = batch(x, "LeakyRelu.forward")
        return self._output(kernels.leaky_relu_forward(self.x, self.alpha))

    def backward(self, dout: Any) -> np.ndarray:
        return kernels.leaky_relu_backward(self._dout(dout, "LeakyRelu.backward"), self.x, self.alpha)


class Sigmoid(Layer):
    """``1 / (1 + exp(-x))`` elementwise; any shape. Keeps its output ``out`` for the backward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.out = None

    def forward(self, x: Any) -> np.ndarray:
        self.out = kernels.sigmoid_forward(batch(x, "Sigmoid.forward"))
        return self._output(self.out)

    def backward(self, dout: Any) -> np.ndarray:
        return kernels.sigmoid_backward(self._dout(dout, "Sigmoid.backward"), self.out)


class Tanh(Layer):
    """``tanh(x)`` elementwise; any shape. Keeps its output ``out`` for the backward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.out = None

    def forward(self, x: Any) -> np.ndarray:
        self.out = kernels.tanh_forward(batch(x, "Tanh.forward"))
        return self._output(self.out)

    def backward(self, dout: Any) -> np.ndarray:
        return kernels.tanh_backward(self._dout(dout, "Tanh.backward"), self.out)


class SoftmaxWithLoss(Layer):
    """Softmax followed by the mean cross-entropy over the batch.

    ``forward(x, t)``: scores x (N, K) with N >= 1; labels t as ints (N,) in [0, K) or one-hot (N, K). Returns
    the loss as a 0-d numpy scalar of x's dtype. Computed by log-sum-exp, without the book's ``+ 1e-7`` inside
    the log (the book's loss is larger by about 1e-7 / p for a true-class probability p; gradients agree).

    Attributes: ``y`` the probabilities (N, K), ``t`` the labels as an int64 vector (N,), ``loss``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loss = self.y = self.t = None

    def forward(self, x: Any, t: Any) -> np.generic:
        x = batch(x, "SoftmaxWithLoss.forward", ndim=2)
        if x.shape[0] == 0:
            _validate.fail("SoftmaxWithLoss.forward", "x", "a batch of N >= 1 samples", f"shape {x.shape}")
        self.t = _validate.labels(t, x.shape[0], x.shape[1], "SoftmaxWithLoss.forward", "t")
        self.loss, self.y = kernels.softmax_cross_entropy_forward(x, self.t)
        return self.loss

    def backward(self, dout: Any = 1) -> np.ndarray:
        """dout: the scalar gradient of the final objective w.r.t. the loss. Returns dx (N, K)."""
        if self.y is None:
            raise RuntimeError("SoftmaxWithLoss.backward: forward must run before backward")
        if isinstance(dout, np.ndarray) and dout.ndim == 0:
            dout = dout[()]
        dout = _validate.scalar(dout, "SoftmaxWithLoss.backward", "dout")
        return kernels.softmax_cross_entropy_backward(self.y, self.t, dout)


class Dropout(Layer):
    """Dropout as in the book (not inverted): training keeps each element with probability ``1 - dropout_ratio``
    and does not rescale; inference multiplies by ``1 - dropout_ratio``.

    Parameters
    ----------
    dropout_ratio : float in [0, 1)
    seed : None, int or numpy.random.Generator, keyword-only
        Each training forward draws one 64-bit seed from this source (``None``: NumPy's global state, so
        ``np.random.seed`` controls it as in the book) and builds its mask with
        :func:`fastnn.kernels.dropout_mask`. The mask is kept as ``mask`` (bool, True = kept).
    """

    def __init__(self, dropout_ratio: float = 0.5, *, seed: Any = None) -> None:
        super().__init__()
        self.dropout_ratio = _validate.scalar(dropout_ratio, "Dropout", "dropout_ratio", ge=0.0, lt=1.0)
        self.random = RandomSource(seed, "Dropout")
        self.mask = None

    def forward(self, x: Any, train_flg: bool = True) -> np.ndarray:
        x = batch(x, "Dropout.forward")
        if train_flg:
            self.mask = kernels.dropout_mask(x.shape, self.dropout_ratio, self.random.seed64())
            return self._output(kernels.dropout_forward(x, self.mask))
        self.mask = None  # inference: a fixed scale, which backward then applies too
        return self._output(x * (1.0 - self.dropout_ratio))

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, "Dropout.backward")
        if self.mask is None:
            return dout * (1.0 - self.dropout_ratio)
        return kernels.dropout_backward(dout, self.mask)

    def _snapshot(self) -> Any:
        return self.random.get_state()

    def _restore(self, state: Any) -> None:
        self.random.set_state(state)

