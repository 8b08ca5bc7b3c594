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
    """``x @ W (+ b)`` for (M, D) rows: the product by :func:`fastnn.kernels.matmul`."""
    out = ops.matmul(x, W)
    return out if b is None else out + b


def affine_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray, grads: list[np.ndarray],
                    with_bias: bool) -> np.ndarray:
    """dx, and dW (and db) written into ``grads`` in place (the book's ``grads[0][...] = dW``), after every product
    has been computed: an error leaves ``grads`` as it was."""
    dW = ops.matmul(x.T, dout)
    dx = ops.matmul(dout, W.T)
    db = dout.sum(axis=0) if with_bias else None
    grads[0][...] = dW
    if with_bias:
        grads[1][...] = db
    return dx



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
