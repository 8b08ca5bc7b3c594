"""Embedding lookup and its gradient, and global-norm gradient clipping, in NumPy: the specification of
:mod:`fastnn.kernels.sequence`.

An embedding ``W`` is (V, D): V tokens (the vocabulary), D features. Token ids ``idx`` are an integer array of any
shape (N,), (N, T) ...; each id selects a row of ``W``.
"""

from __future__ import annotations

import numpy as np

from .. import _checks, _validate

__all__ = ["embedding_forward", "embedding_backward", "embedding_dot_forward", "embedding_dot_backward", "clip_grads"]


def embedding_forward(W: np.ndarray, idx: np.ndarray) -> np.ndarray:
    r"""The rows of ``W`` named by ``idx`` (Deep Learning from Scratch 2's ``Embedding``, cs231n's
    ``word_embedding_forward``): ``W[idx]``.

    .. math:: out_{\ldots, d} = W_{idx_{\ldots}, d}

    Parameters
    ----------
    W : array_like, (V, D)
    idx : int array_like, any shape S
        Token ids in [0, V) (negative ids are refused, not wrapped).

    Returns
    -------
    out : ndarray, S + (D,), W's float dtype (a new array)
    """
    return _embedding_forward(*_checks.check_embedding_forward("embedding_forward", W, idx))


def _embedding_forward(W: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return W[idx]


def embedding_backward(dout: np.ndarray, idx: np.ndarray, vocab_size: int,
                       out: np.ndarray | None = None) -> np.ndarray:
    r"""Gradient of :func:`embedding_forward` with respect to ``W``: each ``dout`` row added to the row of its id,
    repeated ids accumulating, in the order of ``idx`` flattened (what ``np.add.at`` does, so the result is
    deterministic).

    .. math:: dW_{v, d} = \sum_{i:\ idx_i = v} dout_{i, d}

    Parameters
    ----------
    dout : array_like, S + (D,)
    idx : int array_like, shape S, ids in [0, vocab_size)
    vocab_size : int
        V >= 1.
    out : ndarray (V, D) of dout's dtype, optional
        Written with dW (and returned) instead of a new array; writeable, any strides (it may share memory
        with ``dout``: dW is then computed first and copied in).

    Returns
    -------
    dW : ndarray, (V, D), dout's float dtype; rows of ids that do not occur are zero
    """
    return _embedding_backward(*_checks.check_embedding_backward("embedding_backward", dout, idx, vocab_size, out))


def _embedding_backward(dout: np.ndarray, idx: np.ndarray, vocab_size: int,
                        out: np.ndarray | None = None) -> np.ndarray:
    if out is not None and np.may_share_memory(out, dout):
        out[...] = _embedding_backward(dout, idx, vocab_size)
        return out
    if out is None:
        dW = np.zeros((vocab_size, dout.shape[-1]), dout.dtype)
    else:
        dW = out
        dW[...] = 0
    np.add.at(dW, idx.reshape(-1), dout.reshape(-1, dout.shape[-1]))
    return dW


def embedding_dot_forward(W: np.ndarray, idx: np.ndarray, h: np.ndarray) -> np.ndarray:
    r"""The dot product of each hidden vector with the embedding row of its id (Deep Learning from Scratch 2's
    ``EmbeddingDot``, the score of word2vec's negative sampling).

    .. math:: out_n = \sum_d W_{idx_n, d}\, h_{n, d}

    Parameters
    ----------
    W : array_like, (V, D)
    idx : int array_like, (N,), ids in [0, V)
    h : array_like, (N, D)

    Returns
    -------
    out : ndarray, (N,), the common float dtype of W and h
    """
    return _embedding_dot_forward(*_checks.check_embedding_dot("embedding_dot_forward", W, idx, h))


def _embedding_dot_forward(W: np.ndarray, idx: np.ndarray, h: np.ndarray) -> np.ndarray:
    return np.sum(W[idx] * h, axis=1)


def embedding_dot_backward(dout: np.ndarray, W: np.ndarray, idx: np.ndarray,
                           h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Gradients of :func:`embedding_dot_forward`: with respect to ``h``, and to ``W`` (the rows
    :math:`dout_n h_n` added at their ids in the order of ``idx``, as ``np.add.at``).

    .. math:: dh_{n, d} = dout_n\, W_{idx_n, d}, \qquad dW_{v, d} = \sum_{n:\ idx_n = v} dout_n\, h_{n, d}

    Parameters
    ----------
    dout : array_like, (N,)
    W, idx, h
        As in the forward pass.

    Returns
    -------
    dh : ndarray, (N, D)
    dW : ndarray, (V, D); rows of ids that do not occur are zero
    """
    return _embedding_dot_backward(*_checks.check_embedding_dot_backward("embedding_dot_backward", dout, W, idx, h))


def _embedding_dot_backward(dout: np.ndarray, W: np.ndarray, idx: np.ndarray,
                            h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dW = np.zeros(W.shape, W.dtype)
    np.add.at(dW, idx, dout[:, None] * h)
    return dout[:, None] * W[idx], dW


def clip_grads(grads: list, max_norm: float) -> np.generic:
    r"""Scale every gradient in place by one factor when their global L2 norm exceeds ``max_norm`` (Deep Learning
    from Scratch 2's ``clip_grads``).

    .. math::
        n = \sqrt{\sum_k \sum_i g_{k,i}^2}, \qquad r = \frac{max\_norm}{n + 10^{-6}}, \qquad
        g_k \leftarrow r\, g_k \ \text{ if } r < 1

    The sum of squares is accumulated in float64; ``r`` is cast to each gradient's dtype.

    Parameters
    ----------
    grads : list or tuple of ndarray
        Writeable float32/float64 arrays of any shapes, updated in place (none when the norm is small enough).
    max_norm : float
        Finite, >= 0.

    Returns
    -------
    total_norm : 0-d NumPy scalar
        :math:`n`, before clipping, in the dtype of the gradients (their common dtype; float32 for none).
    """
    return _clip_grads(*_checks.check_clip_grads("clip_grads", grads, max_norm))


def _clip_grads(grads: list, max_norm: float) -> np.generic:
    total = np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads))
    rate = max_norm / (total + 1e-6)
    if rate < 1:
        for g in grads:
            g *= g.dtype.type(rate)
    return _validate.norm_dtype(grads).type(total)
