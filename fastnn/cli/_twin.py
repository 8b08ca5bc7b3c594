"""The book's SimpleConvNet training step written directly on a kernel module: the demo's speed baseline.

``TwinConvNet(params, ops=fastnn.reference)`` runs the same computation as ``fastnn.nets.SimpleConvNet`` plus
``fastnn.optim.Adam`` -- conv - relu - 2x2 max pool - affine - relu - affine - softmax with cross-entropy, then an
Adam update -- through the pure-NumPy reference twins. Because the reference functions are the specification of
the kernels, the losses of both paths agree to rounding, and the time ratio is the speed-up fastnn's kernels
bring to a whole training step (the affine layers are ``np.dot`` in both, BLAS either way).
"""

from __future__ import annotations

from types import ModuleType

import numpy as np


class TwinConvNet:
    """SimpleConvNet + Adam on the functions of ``ops`` (``fastnn.reference`` or ``fastnn.kernels``).

    Parameters
    ----------
    params : dict of str -> ndarray
        ``W1`` (FN, C, FH, FW), ``b1`` (FN,), ``W2`` (FN*PH*PW, hidden), ``b2``, ``W3`` (hidden, classes), ``b3``;
        copied, so the net given them is not touched.
    stride, pad : int
        Of the convolution.
    ops : module
        Provides ``conv2d_forward/backward``, ``relu_forward/backward``, ``maxpool2d_forward/backward``,
        ``softmax_cross_entropy_forward/backward`` and ``adam_step`` (the design contract's signatures).
    lr, beta1, beta2, eps : float
        Adam's hyperparameters (fastnn.optim.Adam's defaults).
    """

    def __init__(self, params: dict[str, np.ndarray], stride: int, pad: int, ops: ModuleType, lr: float = 0.001,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7) -> None:
        self.params = {k: np.array(params[k], copy=True) for k in ("W1", "b1", "W2", "b2", "W3", "b3")}
        self.stride, self.pad, self.ops = stride, pad, ops
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = {k: np.zeros_like(p) for k, p in self.params.items()}
        self.v = {k: np.zeros_like(p) for k, p in self.params.items()}
        self.iter = 0

    def loss_and_gradient(self, x: np.ndarray, t: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
        """Forward and backward on a batch x (N, C, H, W), labels t (N,); the loss and every gradient."""
        ops, p = self.ops, self.params
        n = x.shape[0]
        conv = ops.conv2d_forward(x, p["W1"], p["b1"], self.stride, self.pad)
        act1 = ops.relu_forward(conv)
        pool, argmax = ops.maxpool2d_forward(act1, 2, 2, 2)
        flat = pool.reshape(n, -1)
        hidden = flat @ p["W2"] + p["b2"]
        act2 = ops.relu_forward(hidden)
        scores = act2 @ p["W3"] + p["b3"]
        loss, probs = ops.softmax_cross_entropy_forward(scores, t, delta=1e-7)  # SoftmaxWithLoss: the book's loss

        dscores = ops.softmax_cross_entropy_backward(probs, t)
        grads = {"W3": act2.T @ dscores, "b3": dscores.sum(axis=0)}
        dhidden = ops.relu_backward(dscores @ p["W3"].T, hidden)
        grads["W2"], grads["b2"] = flat.T @ dhidden, dhidden.sum(axis=0)
        dpool = (dhidden @ p["W2"].T).reshape(pool.shape)
        dact1 = ops.maxpool2d_backward(dpool, argmax, act1.shape, 2, 2, 2)
        dconv = ops.relu_backward(dact1, conv)
        _, grads["W1"], grads["b1"] = ops.conv2d_backward(dconv, x, p["W1"], self.stride, self.pad)
        return float(loss), grads

    def step(self, x: np.ndarray, t: np.ndarray) -> float:
        """One training step (gradient + Adam update in place); returns the loss before the update."""
        loss, grads = self.loss_and_gradient(x, t)
        self.iter += 1
        bc1 = 1.0 - self.beta1 ** self.iter
        bc2 = 1.0 - self.beta2 ** self.iter
        for k, param in self.params.items():
            self.ops.adam_step(param, grads[k], self.m[k], self.v[k], self.lr, self.beta1, self.beta2, self.eps,
                               bc1, bc2, eps_hat=True)  # fastnn.optim.Adam's default, the book's form
        return loss
