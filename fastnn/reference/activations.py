"""Element-wise activations in NumPy: the readable specification of :mod:`fastnn.kernels.activations`.

NaN propagates as in PyTorch: ``relu(nan) = nan``; ReLU's backward passes the gradient where the input is NaN
(PyTorch's ``threshold_backward`` zeroes it only where the output is ``<= 0``).
"""

from __future__ import annotations

import numpy as np

from .. import _checks

__all__ = ["relu_forward", "relu_backward", "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
           "leaky_relu_forward", "leaky_relu_backward"]


def relu_forward(x: np.ndarray) -> np.ndarray:
    r"""ReLU.

    .. math:: \mathrm{relu}(x) = \max(x, 0)

    Parameters
    ----------
    x : array_like, any shape, float32 or float64 (ints promote to float64)

    Returns
    -------
    out : ndarray, x's shape and float dtype
    """
    return _relu_forward(_checks.check_activation("relu_forward", x))


def _relu_forward(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)  # np.maximum propagates nan (a comparison-based where would not)


def relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""Gradient of ReLU.

    .. math:: dx = \begin{cases} 0 & x \le 0 \\ dout & \text{otherwise (including } x = \mathrm{nan}) \end{cases}

    Parameters
    ----------
    dout : array_like, x's shape
    x : array_like
        The forward input.

    Returns
    -------
    dx : ndarray, x's shape, the common float dtype
    """
    return _relu_backward(*_checks.check_activation_backward("relu_backward", dout, x, "x"))


def _relu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0, 0, dout)


def sigmoid_forward(x: np.ndarray) -> np.ndarray:
    r"""Logistic sigmoid, computed without overflow.

    .. math:: \sigma(x) = \frac{1}{1 + e^{-x}} =
              \begin{cases} 1 / (1 + e^{-|x|}) & x \ge 0 \\ e^{-|x|} / (1 + e^{-|x|}) & x < 0 \end{cases}

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    out : ndarray, x's shape and float dtype
    """
    return _sigmoid_forward(_checks.check_activation("sigmoid_forward", x))


def _sigmoid_forward(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    r"""Gradient of the sigmoid from its output.

    .. math:: dx = dout \cdot \sigma (1 - \sigma)

    Parameters
    ----------
    dout : array_like, out's shape
    out : array_like
        The forward output :math:`\sigma`.

    Returns
    -------
    dx : ndarray, out's shape, the common float dtype
    """
    return _sigmoid_backward(*_checks.check_activation_backward("sigmoid_backward", dout, out, "out"))


def _sigmoid_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    return dout * out * (1 - out)


def tanh_forward(x: np.ndarray) -> np.ndarray:
    r"""Hyperbolic tangent.

    Parameters
    ----------
    x : array_like, any shape

    Returns
    -------
    out : ndarray, x's shape and float dtype
    """
    return _tanh_forward(_checks.check_activation("tanh_forward", x))


def _tanh_forward(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


def tanh_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    r"""Gradient of tanh from its output.

    .. math:: dx = dout \cdot (1 - \tanh^2)

    Parameters
    ----------
    dout : array_like, out's shape
    out : array_like
        The forward output.

    Returns
    -------
    dx : ndarray, out's shape, the common float dtype
    """
    return _tanh_backward(*_checks.check_activation_backward("tanh_backward", dout, out, "out"))


def _tanh_backward(dout: np.ndarray, out: np.ndarray) -> np.ndarray:
    return dout * (1 - out * out)


def leaky_relu_forward(x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    r"""Leaky ReLU.

    .. math:: f(x) = \begin{cases} x & x > 0 \\ \alpha x & \text{otherwise} \end{cases}

    Parameters
    ----------
    x : array_like, any shape
    alpha : float
        Slope for non-positive inputs (finite).

    Returns
    -------
    out : ndarray, x's shape and float dtype
    """
    return _leaky_relu_forward(*_checks.check_leaky_relu("leaky_relu_forward", x, alpha))


def _leaky_relu_forward(x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    return np.where(x > 0, x, x.dtype.type(alpha) * x)


def leaky_relu_backward(dout: np.ndarray, x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    r"""Gradient of leaky ReLU.

    .. math:: dx = \begin{cases} dout & x > 0 \\ \alpha \, dout & \text{otherwise (including nan)} \end{cases}

    Parameters
    ----------
    dout : array_like, x's shape
    x : array_like
        The forward input.
    alpha : float
        The forward slope.

    Returns
    -------
    dx : ndarray, x's shape, the common float dtype
    """
    return _leaky_relu_backward(*_checks.check_leaky_relu_backward("leaky_relu_backward", dout, x, alpha))


def _leaky_relu_backward(dout: np.ndarray, x: np.ndarray, alpha: float = 0.01) -> np.ndarray:
    return np.where(x > 0, dout, x.dtype.type(alpha) * dout)
