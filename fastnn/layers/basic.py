"""Affine, activation, loss and dropout layers of Deep Learning from Scratch (``common/layers.py``) on fastnn kernels.

Same class names, constructor arguments, methods and attribute names as the book. Differences: inputs are
validated (errors name the layer and the argument), no layer writes into an array it is given (the book's
``Relu.backward`` zeroes ``dout`` in place), float32 stays float32, and the arithmetic is done by
:mod:`fastnn.kernels` (the affine products by :func:`fastnn.kernels.matmul`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate
from ..backend import ops, unchecked
from ._base import Entry, Layer, alike, batch, bias, features, kept_float
from ._random import RandomSource

__all__ = ["Affine", "Dropout", "LeakyRelu", "Relu", "Sigmoid", "SoftmaxWithLoss", "Tanh"]


class Affine(Layer):
    """Fully connected layer ``out = x @ W + b``; an input of shape (N, ...) is flattened to (N, D).

    Parameters
    ----------
    W : ndarray (D, M), float32 or float64
    b : ndarray (M,), same dtype as ``W``, or a number (a bias of that value for every output, as the book's
        broadcast gives)
    """

    W = Entry("params", ndim=2)
    b = Entry("params", ndim=1)
    dW = Entry("grads")
    db = Entry("grads")

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.W = W
        self.b = bias(b, self.W.shape[1], self.W.dtype)
        _validate.shape(self.b, (self.W.shape[1],), "Affine", "b")
        self.dW = self.db = None
        self.x = None  # the input flattened to (N, D)
        self.original_x_shape = None
        #: False skips dx in backward (which then returns None): a network's first layer needs no input gradient
        #: (as Convolution.need_dx). Its product is the step's largest after dW's at the first layer's width.
        self.need_dx = True

    def flat_input(self, x: Any, where: str) -> np.ndarray:
        """Check ``x`` (N, ...) against W's D inputs, remember its shape and keep it flattened (N, D) as ``self.x``."""
        x = batch(x, where, min_ndim=2)
        if features(x) != self.W.shape[0]:
            _validate.fail(where, "x", f"of shape (N, ...) with {self.W.shape[0]} features per sample (W.shape[0])",
                           f"shape {x.shape}")
        self.original_x_shape = x.shape
        self.x = x.reshape(x.shape[0], self.W.shape[0])
        return self.x

    def forward(self, x: Any) -> np.ndarray:
        """x (N, ...) with prod(...) == D -> out (N, M)."""
        self.flat_input(x, "Affine.forward")
        # checked above: both 2-D floats, inner sizes equal, b of W's columns; what check_matmul_bias adds is the
        # common dtype
        trusted = x.dtype == self.W.dtype == self.b.dtype and self.b.shape == (self.W.shape[1],)  # (b rebindable)
        product = unchecked.matmul_bias if trusted else ops.matmul_bias
        return self._output(product(self.x, self.W, self.b))

    def backward(self, dout: Any) -> np.ndarray | None:
        """dout (N, M) -> dx of the input's shape (None when ``need_dx`` is False); sets dW (D, M) and db (M,)."""
        dout = self._dout(dout, "Affine.backward")
        x, W = self.x, self.W
        trusted = (dout.dtype == x.dtype == W.dtype and W.shape == (x.shape[1], dout.shape[1])
                   and x.shape[0] == dout.shape[0])  # (self.x may have been rebound since forward)
        matmul = unchecked.matmul if trusted else ops.matmul  # (an attribute rebound since forward: checked)
        self.dW = matmul(x.T, dout)
        self.db = dout.sum(axis=0)
        if not self.need_dx:
            return None
        return matmul(dout, W.T).reshape(self.original_x_shape)


class Relu(Layer):
    """``max(x, 0)`` elementwise (NaN propagates); any shape."""

    def __init__(self) -> None:
        super().__init__()
        self.x = None

    def forward(self, x: Any) -> np.ndarray:
        self.x = batch(x, "Relu.forward")
        return self._output(unchecked.relu_forward(self.x))

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, "Relu.backward")
        return (unchecked if alike(dout, self.x) else ops).relu_backward(dout, self.x)


class LeakyRelu(Layer):
    """``x if x > 0 else alpha * x`` elementwise; any shape."""

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = _validate.scalar(alpha, "LeakyRelu", "alpha")
        self.x = None

    def forward(self, x: Any) -> np.ndarray:
        self.x = batch(x, "LeakyRelu.forward")
        return self._output((unchecked if kept_float(self.alpha) else ops).leaky_relu_forward(self.x, self.alpha))

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, "LeakyRelu.backward")
        trusted = alike(dout, self.x) and kept_float(self.alpha)
        return (unchecked if trusted else ops).leaky_relu_backward(dout, self.x, self.alpha)


class Sigmoid(Layer):
    """``1 / (1 + exp(-x))`` elementwise; any shape. Keeps its output ``out`` for the backward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.out = None

    def forward(self, x: Any) -> np.ndarray:
        self.out = unchecked.sigmoid_forward(batch(x, "Sigmoid.forward"))
        return self._output(self.out)

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, "Sigmoid.backward")
        return (unchecked if alike(dout, self.out) else ops).sigmoid_backward(dout, self.out)


class Tanh(Layer):
    """``tanh(x)`` elementwise; any shape. Keeps its output ``out`` for the backward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.out = None

    def forward(self, x: Any) -> np.ndarray:
        self.out = unchecked.tanh_forward(batch(x, "Tanh.forward"))
        return self._output(self.out)

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, "Tanh.backward")
        return (unchecked if alike(dout, self.out) else ops).tanh_backward(dout, self.out)


#: What the book's ``cross_entropy_error`` adds inside the log (``common/functions.py``).
BOOK_DELTA = 1e-7


class SoftmaxWithLoss(Layer):
    """Softmax followed by the mean cross-entropy over the batch; by default exactly the book's loss.

    ``forward(x, t)``: scores x (N, K) with N >= 1, or one sample x (K,). Labels as the book's
    ``cross_entropy_error`` takes them: class indices (N,) or (N, 1) in [0, K), or one-hot (N, K); for one sample
    x (K,), an index (a scalar, shape (1,) or (1, 1)) or one-hot (K,). Returns the loss as a 0-d numpy scalar of
    x's dtype: :math:`-\\frac{1}{N}\\sum_i \\log(y_{i t_i} + 10^{-7})` with y the softmax of x, as the book (so a
    sample's loss is capped near 16.1 however wrong the scores). ``backward(dout=1)`` returns
    ``dout * (y - onehot(t)) / N`` (the book's ``(y - t) / N`` ignores dout; they agree for its dout=1).

    Parameters
    ----------
    exact : bool, keyword-only
        True: the exact cross-entropy by log-sum-exp, without the ``+ 1e-7`` (uncapped: large for confidently
        wrong scores, and below 1e-7 when right); the gradient is the same.

    Attributes: ``y`` the probabilities (x's shape), ``t`` the labels as an int64 vector (N,), ``loss``.

    Notes
    -----
    Labels of shape (N, 1) are read as N class indices. The book's code indexes ``y[np.arange(N), t]`` with them,
    which broadcasts to (N, N) pairs and averages the wrong entries when N > 1 (a bug fastnn does not copy; for
    N = 1, its ``ch07/gradient_check.py`` case, both agree). For one sample with one-hot labels the book's
    backward divides by K instead of 1; fastnn's does not.
    """

    def __init__(self, *, exact: bool = False) -> None:
        super().__init__()
        self.exact = _validate.flag(exact, "SoftmaxWithLoss", "exact")
        self.loss = self.y = self.t = None

    def forward(self, x: Any, t: Any) -> np.generic:
        where = "SoftmaxWithLoss.forward"
        x = batch(x, where, ndim=(1, 2))
        scores = x.reshape(1, -1) if x.ndim == 1 else x
        if scores.shape[0] == 0:
            _validate.fail(where, "x", "a batch of N >= 1 samples", f"shape {x.shape}")
        labels = _book_labels(t, x, where)
        self.t = _validate.labels(labels, scores.shape[0], scores.shape[1], where, "t")
        # checked above: (N, K) floats with N >= 1, labels int64 in [0, K) (so K >= 1 too), delta >= 0
        self.loss, y = unchecked.softmax_cross_entropy_forward(scores, self.t,
                                                               delta=0.0 if self.exact else BOOK_DELTA)
        self.y = y.reshape(x.shape)
        return self.loss

    def backward(self, dout: Any = 1) -> np.ndarray:
        """dout: the scalar gradient of the final objective w.r.t. the loss. Returns dx of x's shape."""
        if self.y is None:
            raise RuntimeError("SoftmaxWithLoss.backward: forward must run before backward")
        if isinstance(dout, np.ndarray) and dout.ndim == 0:
            dout = dout[()]
        dout = _validate.scalar(dout, "SoftmaxWithLoss.backward", "dout")
        probs = self.y.reshape(-1, self.y.shape[-1])
        # Checked, on purpose: t is a public array a caller may edit in place, and the kernel writes through its
        # values; the check is what keeps a bad label from writing out of bounds (~3 us a step).
        return ops.softmax_cross_entropy_backward(probs, self.t, dout).reshape(self.y.shape)


def _book_labels(t: Any, x: np.ndarray, where: str) -> Any:
    """The label forms of the book's ``cross_entropy_error`` brought to (N,) indices or (N, K) one-hot.

    One sample x (K,): t of size K is one-hot, of size 1 an index (the book reshapes both to a row; size K wins
    when K is 1, as the book tests ``t.size == y.size`` first). A batch x (N, K): t (N, 1) with K > 1 holds
    indices. Anything else goes on unchanged to :func:`fastnn._validate.labels`, which checks it.
    """
    arr = np.asarray(t)
    if x.ndim == 1:
        classes = x.shape[0]
        if arr.size == classes:
            return arr.reshape(1, classes)
        if arr.size == 1:
            return arr.reshape(1)
        _validate.fail(where, "t", f"a class index or {classes} one-hot values for one sample x of shape "
                       f"({classes},)", f"shape {arr.shape}")
    n, classes = x.shape
    if arr.shape == (n, 1) and classes != 1:
        return arr[:, 0]
    return arr


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
            # a ratio as the constructor left it passes the mask's check; the mask made here, forward's
            dropout = unchecked if kept_float(self.dropout_ratio, 0.0, 1.0) else ops
            self.mask = dropout.dropout_mask(x.shape, self.dropout_ratio, self.random.seed64())
            return self._output(dropout.dropout_forward(x, self.mask))
        self.mask = None  # inference: a fixed scale, which backward then applies too
        return self._output(x * (1.0 - self.dropout_ratio))

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, "Dropout.backward")
        if self.mask is None:
            return dout * (1.0 - self.dropout_ratio)
        mask = self.mask  # (a public attribute: checked when it is no longer a bool mask of dout's shape)
        trusted = type(mask) is np.ndarray and mask.dtype == np.bool_ and mask.shape == dout.shape
        return (unchecked if trusted else ops).dropout_backward(dout, mask)

    def _snapshot(self) -> Any:
        return self.random.get_state()

    def _restore(self, state: Any) -> None:
        self.random.set_state(state)

