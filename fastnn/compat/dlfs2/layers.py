"""Deep Learning from Scratch 2's ``common/layers.py`` on fastnn kernels: same classes, arguments and attributes.

``from common.layers import *`` becomes ``from fastnn.compat.dlfs2.layers import *``. As in the book, a layer keeps
the very arrays it is given in ``params`` and writes its gradients into the arrays of ``grads``
(``grads[i][...] = ...``), so a model can collect both lists once, at construction. The numerics run in
:mod:`fastnn.kernels` through :data:`fastnn.backend.ops` (``backend.using("reference")`` swaps in the NumPy
twins).

Differences from the book: inputs are validated (an error names the kernel or layer and the argument, and is raised
before any gradient is written); returned gradients are fresh arrays (the book's ``SoftmaxWithLoss.backward``
returns its cached softmax modified in place); ``SigmoidWithLoss`` computes the book's
``-log(y + 1e-7)`` loss as the two-class softmax of ``(0, x)``, which equals ``(1 - sigmoid(x), sigmoid(x))``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import _validate
from ...backend import ops
from ._common import affine, affine_backward, embedding_backward_into, params_and_grads

__all__ = ["MatMul", "Affine", "Softmax", "SoftmaxWithLoss", "Sigmoid", "SigmoidWithLoss", "Dropout", "Embedding"]

#: The book's ``cross_entropy_error`` adds 1e-7 inside the log.
BOOK_DELTA = 1e-7


class MatMul:
    """``out = x @ W``; ``params = [W]``, ``grads = [dW]``."""

    def __init__(self, W: np.ndarray) -> None:
        self.params, self.grads = params_and_grads("MatMul", W=W)
        self.x = None

    def forward(self, x: Any) -> np.ndarray:
        """x (N, D) -> (N, H)."""
        W, = self.params
        out = affine(x, W, None)  # checked by the kernel: 2-D, inner sizes
        self.x = np.asarray(x)
        return out

    def backward(self, dout: Any) -> np.ndarray:
        """dout (N, H) -> dx (N, D); writes dW (D, H) into ``grads[0]``."""
        return affine_backward(_validate.float_array(dout, "MatMul.backward", "dout"), self.x, self.params[0],
                               self.grads, with_bias=False)


class Affine:
    """``out = x @ W + b``; ``params = [W, b]``, ``grads = [dW, db]``."""

    def __init__(self, W: np.ndarray, b: np.ndarray) -> None:
        self.params, self.grads = params_and_grads("Affine", W=W, b=b)
        self.x = None

    def forward(self, x: Any) -> np.ndarray:
        """x (N, D) -> (N, H)."""
        W, b = self.params
        out = affine(x, W, b)
        self.x = np.asarray(x)
        return out

    def backward(self, dout: Any) -> np.ndarray:
        """dout (N, H) -> dx (N, D); writes dW and db into ``grads``."""
        return affine_backward(_validate.float_array(dout, "Affine.backward", "dout"), self.x, self.params[0],
                               self.grads, with_bias=True)


class Softmax:
    """Row-wise softmax of (N, K) scores (or one vector of K)."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.out = None

    def forward(self, x: Any) -> np.ndarray:
        x = _validate.float_array(x, "Softmax.forward", "x", ndim=(1, 2))
        self.out = ops.softmax_forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)
        return self.out

    def backward(self, dout: Any) -> np.ndarray:
        out = self.out
        dout = _validate.float_array(dout, "Softmax.backward", "dout")
        _validate.shape(dout, out.shape, "Softmax.backward", "dout")
        return ops.softmax_backward(dout.reshape(-1, out.shape[-1]), out.reshape(-1, out.shape[-1])).reshape(out.shape)


class SoftmaxWithLoss:
    """Softmax and the book's cross-entropy ``-mean(log(y[t] + 1e-7))``; labels as indices (N,) or one-hot (N, K)."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.y = None  # the softmax
        self.t = None  # the labels as indices

    def forward(self, x: Any, t: Any) -> np.generic:
        loss, y = ops.softmax_cross_entropy_forward(x, t, delta=BOOK_DELTA)
        self.y = y
        self.t = t
        return loss

    def backward(self, dout: Any = 1) -> np.ndarray:
        return ops.softmax_cross_entropy_backward(self.y, self.t, dout)


class Sigmoid:
    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.out = None

    def forward(self, x: Any) -> np.ndarray:
        self.out = ops.sigmoid_forward(x)
        return self.out

    def backward(self, dout: Any) -> np.ndarray:
        return ops.sigmoid_backward(dout, self.out)


def _two_class_scores(x: Any, where: str) -> np.ndarray:
    """Scores (M, 2) = ``(0, x)`` for the flattened ``x``: their softmax is ``(1 - sigmoid(x), sigmoid(x))``."""
    x = _validate.float_array(x, where, "x")
    scores = np.zeros((x.size, 2), x.dtype)
    scores[:, 1] = x.reshape(-1)
    return scores


def sigmoid_with_loss_forward(x: Any, t: Any, where: str) -> tuple[np.generic, np.ndarray, np.ndarray]:
    """The book's sigmoid cross-entropy over every element of ``x`` with 0/1 labels ``t`` of its shape: the loss
    (the mean of ``-log(p + 1e-7)``), the two-class probabilities (M, 2) and the flat labels."""
    scores = _two_class_scores(x, where)
    labels = np.asarray(t)
    if labels.shape != np.shape(x):
        _validate.fail(where, "t", f"0/1 labels of x's shape {np.shape(x)}", f"shape {labels.shape}")
    labels = labels.reshape(-1)
    loss, probs = ops.softmax_cross_entropy_forward(scores, labels, delta=BOOK_DELTA)
    return loss, probs, labels


def sigmoid_with_loss_backward(probs: np.ndarray, labels: np.ndarray, dout: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``(sigmoid(x) - t) * dout / M``: the second column of the two-class softmax gradient."""
    return ops.softmax_cross_entropy_backward(probs, labels, dout)[:, 1].reshape(shape)


class SigmoidWithLoss:
    """Sigmoid and the book's binary cross-entropy; ``x`` and 0/1 labels ``t`` of one shape (N,)."""

    def __init__(self) -> None:
        self.params, self.grads = [], []
        self.loss = None
        self.y = None  # sigmoid(x)
        self.t = None

    def forward(self, x: Any, t: Any) -> np.generic:
        self.loss, self._probs, self._labels = sigmoid_with_loss_forward(x, t, "SigmoidWithLoss.forward")
        self.y = self._probs[:, 1].reshape(np.shape(x))
        self.t = t
        return self.loss

    def backward(self, dout: Any = 1) -> np.ndarray:
        return sigmoid_with_loss_backward(self._probs, self._labels, dout, self.y.shape)


class Dropout:
    """The book's dropout: training keeps an element where ``np.random.rand(...) > dropout_ratio`` (the book's draws
    from NumPy's global generator) and does not rescale; inference multiplies by ``1 - dropout_ratio``."""

    def __init__(self, dropout_ratio: float = 0.5) -> None:
        self.params, self.grads = [], []
        self.dropout_ratio = _validate.scalar(dropout_ratio, "Dropout", "dropout_ratio", ge=0.0, le=1.0)
        self.mask = None

    def forward(self, x: Any, train_flg: bool = True) -> np.ndarray:
        x = _validate.float_array(x, "Dropout.forward", "x")
        if train_flg:
            self.mask = np.random.rand(*x.shape) > self.dropout_ratio  # noqa: NPY002 -- the book's draws
            return ops.dropout_forward(x, self.mask)
        return x * x.dtype.type(1.0 - self.dropout_ratio)

    def backward(self, dout: Any) -> np.ndarray:
        return ops.dropout_backward(dout, self.mask)


class Embedding:
    """The rows of ``W`` (V, D) named by integer ids; ``params = [W]``, ``grads = [dW]``."""

    def __init__(self, W: np.ndarray) -> None:
        self.params, self.grads = params_and_grads("Embedding", W=W)
        self.idx = None

    def forward(self, idx: Any) -> np.ndarray:
        """idx (N,) (any shape) -> W[idx], (N, D)."""
        out = ops.embedding_forward(self.params[0], idx)
        self.idx = idx
        return out

    def backward(self, dout: Any) -> None:
        """Writes dW (the rows of ``dout`` added at their ids, repeated ids accumulating) into ``grads[0]``."""
        embedding_backward_into(self.grads[0], dout, self.idx)
        return None
