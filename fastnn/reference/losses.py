"""Softmax, softmax cross-entropy and the multiclass SVM loss in NumPy: the specification of
:mod:`fastnn.kernels.losses`.

Scores ``x`` are (N, K): N samples, K classes. Labels ``t``/``y`` are int class indices (N,) or one-hot (N, K)
(checked by :func:`fastnn._validate.labels`). Losses are batch means, returned as 0-d NumPy scalars of x's dtype.
"""

from __future__ import annotations

import numpy as np

from .. import _checks, _validate

__all__ = ["softmax_forward", "softmax_cross_entropy_forward", "softmax_cross_entropy_backward", "svm_loss",
           "time_softmax_cross_entropy_forward", "time_softmax_cross_entropy_backward", "softmax_backward"]


def softmax_forward(x: np.ndarray) -> np.ndarray:
    r"""Row-wise softmax, shifted by the row maximum so no exponent overflows.

    .. math:: p_{ij} = \frac{e^{x_{ij} - m_i}}{\sum_k e^{x_{ik} - m_i}}, \qquad m_i = \max_k x_{ik}

    Parameters
    ----------
    x : array_like, (N, K)

    Returns
    -------
    probs : ndarray, (N, K), x's float dtype (rows with a NaN or +inf are NaN)
    """
    x = _checks.check_softmax("softmax_forward", x)
    if x.size == 0:
        return np.empty(x.shape, x.dtype)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy_forward(x: np.ndarray, t: np.ndarray, *, delta: float = 0.0) -> tuple[np.generic, np.ndarray]:
    r"""Mean cross-entropy of softmax(x) against labels: exact (log-sum-exp), or the book's ``log(p + delta)``.

    With ``delta = 0`` (the default), via log-sum-exp, exact for any scores:

    .. math::
        L = \frac{1}{N} \sum_i \Big( m_i + \log \sum_k e^{x_{ik} - m_i} - x_{i t_i} \Big)

    With ``delta > 0``, Deep Learning from Scratch's ``cross_entropy_error`` of the softmax (its ``delta`` is
    1e-7), which caps each sample's loss at :math:`-\log \delta` (16.1 for 1e-7):

    .. math::
        L = -\frac{1}{N} \sum_i \log\big(p_{i t_i} + \delta\big), \qquad
        p_{ij} = \frac{e^{x_{ij} - m_i}}{\sum_k e^{x_{ik} - m_i}}

    Parameters
    ----------
    x : array_like, (N, K)
        Scores; N >= 1.
    t : array_like, int (N,) in [0, K) or one-hot (N, K)
    delta : float, keyword-only
        >= 0, finite; cast to x's dtype.

    Returns
    -------
    loss : 0-d NumPy scalar of x's dtype
    probs : ndarray, (N, K), x's dtype (for the backward pass, the same for every delta)
    """
    x, labels, delta = _checks.check_softmax_cross_entropy("softmax_cross_entropy_forward", x, t, delta)
    return _softmax_cross_entropy_forward(x, labels, delta=delta)


def _softmax_cross_entropy_forward(x: np.ndarray, t: np.ndarray, *,
                                   delta: float = 0.0) -> tuple[np.generic, np.ndarray]:
    shifted = x - x.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    rows = np.arange(x.shape[0])
    probs = e / s
    if delta:
        loss = -np.sum(np.log(probs[rows, t] + x.dtype.type(delta))) / x.shape[0]
    else:
        loss = np.mean(np.log(s[:, 0]) - shifted[rows, t])
    return x.dtype.type(loss), probs


def softmax_cross_entropy_backward(probs: np.ndarray, t: np.ndarray, dout: float = 1.0) -> np.ndarray:
    r"""Gradient of the mean softmax cross-entropy with respect to the scores.

    .. math:: \frac{\partial L}{\partial x_{ij}} = \frac{dout}{N} \big(p_{ij} - [j = t_i]\big)

    Parameters
    ----------
    probs : array_like, (N, K)
        The softmax returned by the forward pass; N >= 1.
    t : array_like, int (N,) or one-hot (N, K)
    dout : float
        Upstream gradient of the loss (finite).

    Returns
    -------
    dx : ndarray, (N, K), probs' float dtype
    """
    return _softmax_cross_entropy_backward(*_checks.check_softmax_cross_entropy_backward(
        "softmax_cross_entropy_backward", probs, t, dout))


def _softmax_cross_entropy_backward(probs: np.ndarray, t: np.ndarray, dout: float = 1.0) -> np.ndarray:
    onehot = np.zeros_like(probs)
    onehot[np.arange(probs.shape[0]), t] = 1
    return (probs - onehot) * probs.dtype.type(dout / probs.shape[0])


def svm_loss(x: np.ndarray, y: np.ndarray) -> tuple[np.generic, np.ndarray]:
    r"""Multiclass SVM (hinge) loss with margin 1 and its gradient (cs231n ``layers.svm_loss``).

    .. math::
        L = \frac{1}{N} \sum_i \sum_{j \ne y_i} \max(0,\ x_{ij} - x_{i y_i} + 1)

    Parameters
    ----------
    x : array_like, (N, K)
        Scores; N >= 1.
    y : array_like, int (N,) or one-hot (N, K)

    Returns
    -------
    loss : 0-d NumPy scalar of x's dtype
    dx : ndarray, (N, K), x's dtype: :math:`1/N` where the margin is positive, minus
        (count of positive margins)/N at the label
    """
    x, labels = _checks.check_svm_loss("svm_loss", x, y)
    n = x.shape[0]
    rows = np.arange(n)
    margins = np.maximum(0, x - x[rows, labels][:, None] + 1)
    margins[rows, labels] = 0
    loss = margins.sum() / n
    positive = margins > 0
    dx = positive.astype(x.dtype)
    dx[rows, labels] -= positive.sum(axis=1)
    dx /= n
    return x.dtype.type(loss), dx


def time_softmax_cross_entropy_forward(x: np.ndarray, t: np.ndarray, ignore_label: int = -1, *,
                                       average: str = "valid") -> tuple[np.generic, np.ndarray]:
    r"""Softmax cross-entropy at every time step of a batch of sequences, ignoring positions labelled
    ``ignore_label`` (Deep Learning from Scratch 2's ``TimeSoftmaxWithLoss``; cs231n's ``temporal_softmax_loss``
    with ``average='batch'``).

    With :math:`M` the counted positions (:math:`t_{nt} \ne` ``ignore_label``), via log-sum-exp:

    .. math::
        L = \frac{1}{Z} \sum_{(n,t) \in M} \Big( m_{nt} + \log \sum_v e^{x_{ntv} - m_{nt}} - x_{n t\, t_{nt}}
        \Big), \qquad Z = |M| \ (\text{'valid'}) \ \text{ or } \ N \ (\text{'batch'})

    Parameters
    ----------
    x : array_like, (N, T, V)
        Scores; N >= 1, V >= 1.
    t : array_like, int (N, T) with values in [0, V) or ``ignore_label``; or one-hot (N, T, V)
    ignore_label : int
        Label of positions that count for nothing (the book's -1).
    average : {'valid', 'batch'}, keyword-only
        Divide the summed loss by the number of counted positions (the book's; at least one is required) or by N
        (cs231n's).

    Returns
    -------
    loss : 0-d NumPy scalar of x's dtype
    probs : ndarray, (N, T, V), x's dtype: the softmax at every position (ignored ones too)
    """
    x, t, ignore_label, average = _checks.check_time_softmax_cross_entropy(
        "time_softmax_cross_entropy_forward", x, t, ignore_label, average)
    return _time_softmax_cross_entropy_forward(x, t, ignore_label, average=average)


def _time_softmax_cross_entropy_forward(x: np.ndarray, t: np.ndarray, ignore_label: int = -1, *,
                                        average: str = "valid") -> tuple[np.generic, np.ndarray]:
    n, steps, v = x.shape
    rows = x.reshape(n * steps, v)
    labels = t.reshape(-1)
    counted = labels != ignore_label
    shifted = rows - rows.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1)
    probs = (e / s[:, None]).reshape(x.shape)
    safe = np.where(counted, labels, 0)  # any column: the ignored positions' terms are dropped
    losses = np.log(s) - shifted[np.arange(n * steps), safe]
    loss = np.sum(losses[counted]) / _validate.time_loss_divisor(t, ignore_label, average)
    return x.dtype.type(loss), probs


def time_softmax_cross_entropy_backward(probs: np.ndarray, t: np.ndarray, ignore_label: int = -1, dout: float = 1.0,
                                        *, average: str = "valid") -> np.ndarray:
    r"""Gradient of :func:`time_softmax_cross_entropy_forward` with respect to the scores.

    .. math:: \frac{\partial L}{\partial x_{ntv}} = \frac{dout}{Z}\, [(n,t) \in M]\, \big(p_{ntv} - [v = t_{nt}]\big)

    Parameters
    ----------
    probs : array_like, (N, T, V)
        The softmax returned by the forward pass; N >= 1.
    t, ignore_label, average
        As in the forward pass.
    dout : float
        Upstream gradient of the loss (finite).

    Returns
    -------
    dx : ndarray, (N, T, V), probs' float dtype; zero at ignored positions
    """
    probs, t, ignore_label, dout, average = _checks.check_time_softmax_cross_entropy_backward(
        "time_softmax_cross_entropy_backward", probs, t, ignore_label, dout, average)
    return _time_softmax_cross_entropy_backward(probs, t, ignore_label, dout, average=average)


def _time_softmax_cross_entropy_backward(probs: np.ndarray, t: np.ndarray, ignore_label: int = -1, dout: float = 1.0,
                                         *, average: str = "valid") -> np.ndarray:
    counted = t != ignore_label
    onehot = np.zeros_like(probs)
    n_idx, t_idx = np.nonzero(counted)
    onehot[n_idx, t_idx, t[counted]] = 1
    scale = probs.dtype.type(dout / _validate.time_loss_divisor(t, ignore_label, average))
    return np.where(counted[:, :, None], (probs - onehot) * scale, probs.dtype.type(0))


def softmax_backward(dout: np.ndarray, probs: np.ndarray) -> np.ndarray:
    r"""Gradient through the row-wise softmax, from its output (Deep Learning from Scratch 2's ``Softmax.backward``).

    .. math:: dx_{ij} = p_{ij} \Big( dout_{ij} - \sum_k p_{ik}\, dout_{ik} \Big)

    Parameters
    ----------
    dout : array_like, (N, K)
    probs : array_like, (N, K)
        The softmax returned by :func:`softmax_forward`.

    Returns
    -------
    dx : ndarray, (N, K), the common float dtype
    """
    return _softmax_backward(*_checks.check_softmax_backward("softmax_backward", dout, probs))


def _softmax_backward(dout: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return probs * (dout - np.sum(probs * dout, axis=1, keepdims=True))
