"""What the DLFS-2 compat layers share: the book's ``params``/``grads`` lists and the checks at their boundary."""

from __future__ import annotations

from typing import Any

import numpy as np

from ... import _validate
from ...backend import ops
from ...layers._base import parameter


def params_and_grads(where: str, **params: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The book's ``self.params = [W, b]; self.grads = [np.zeros_like(W), np.zeros_like(b)]``.

    The arrays are kept as given (never copied: the caller's arrays, a tied weight's transposed view, are what
    the optimizer updates); each must be a float32 or float64 ndarray.
    """
    kept = [parameter(p, where, name) for name, p in params.items()]
    return kept, [np.zeros_like(p) for p in kept]


def sequences(x: Any, where: str, name: str = "xs") -> np.ndarray:
    """A float batch of sequences (N, T, D) (ints and bools promote to float64, as NumPy's arithmetic does)."""
    return _validate.float_array(x, where, name, ndim=3)


def affine(x: np.ndarray, W: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``x @ W (+ b)`` for (M, D) rows: the product by :func:`fastnn.kernels.matmul`, the bias added inside it by
    :func:`fastnn.kernels.matmul_bias` when all three share a dtype (no second pass over the output: at
    BetterRnnlm's (700, 10000) scores that pass cost ~2% of a training step; the same bits)."""
    if b is None:
        return ops.matmul(x, W)
    if isinstance(b, np.ndarray) and b.dtype == W.dtype == getattr(x, "dtype", None):
        return ops.matmul_bias(x, W, b)
    return ops.matmul(x, W) + b  # NumPy's promotion of mixed dtypes, as the book's ``np.dot(x, W) + b``


def affine_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, grads: list[np.ndarray],
                    with_bias: bool) -> np.ndarray:
    """dx, and dW (and db) written into ``grads`` in place (the book's ``grads[0][...] = dW``), dW as the last
    product, straight into ``grads[0]`` when its dtype is the product's (no fresh (D, M) array and copy; a tied
    ``embed_W.T``'s Fortran-order gradient is written as its transpose), so an error (raised by the checks, before
    any product) leaves ``grads`` as it was."""
    dx = ops.matmul(dout, W.T)
    db = dout.sum(axis=0) if with_bias else None
    if grads[0].dtype == np.result_type(x, dout):
        ops.matmul(x.T, dout, out=grads[0])
    else:
        grads[0][...] = ops.matmul(x.T, dout)
    if with_bias:
        grads[1][...] = db
    return dx



def embedding_backward_into(dW: np.ndarray, dout: Any, idx: Any) -> None:
    """The book's ``dW[...] = 0; np.add.at(dW, idx, dout)``: straight into ``dW`` when ``dout`` has its dtype (no
    fresh (V, D) array and copy, ~1% of a BetterRnnlm step each), else computed and then assigned; the checks run
    before ``dW`` is written."""
    if getattr(dout, "dtype", None) == dW.dtype:
        ops.embedding_backward(dout, idx, dW.shape[0], out=dW)
    else:
        dW[...] = ops.embedding_backward(dout, idx, dW.shape[0])


def book_weight(rows: int, cols: int, divisor: float) -> np.ndarray:
    """The book's initial weight ``(np.random.randn(rows, cols) / divisor).astype('f')``: drawn from NumPy's global
    generator in the book's order, so a seeded script starts from the book's weights bit for bit."""
    return (np.random.randn(rows, cols) / divisor).astype('f')  # noqa: NPY002 -- the book's draws


def collect(*layers: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The book's ``params += layer.params; grads += layer.grads`` over ``layers``: the layers' own arrays, collected
    once (the layers write into these gradient arrays, so the lists stay current)."""
    params: list[np.ndarray] = []
    grads: list[np.ndarray] = []
    for layer in layers:
        params += layer.params
        grads += layer.grads
    return params, grads
