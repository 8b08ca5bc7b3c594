"""What every layer shares: ``params``/``grads``/``buffers`` dicts, and the checks at a layer's boundary.

A layer attribute such as ``Affine.W`` is stored as the entry ``params['W']`` (see :class:`Entry`), so the two
can never disagree: an optimizer updating ``params['W']`` in place updates ``layer.W``; code in the book's
style that rebinds ``layer.W = new`` (its ``load_params``) rebinds ``params['W']``. Gradients work the same way
(``layer.dW`` is ``grads['W']``), so a dict of gradients held across steps always shows the latest ones.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _validate


class Entry:
    """An attribute stored as ``obj.<table>[key]``.

    Parameters
    ----------
    table
        ``"params"``, ``"grads"`` or ``"buffers"``.
    ndim
        For ``params`` and ``buffers``: the required number of dimensions (None: any). Values bound to such an
        attribute must be float32/float64 ndarrays: they are updated in place, so a cast copy would silently
        break the link with the caller's array.
    """

    def __init__(self, table: str, ndim: int | None = None) -> None:
        self.table = table
        self.ndim = ndim

    def __set_name__(self, owner: type, name: str) -> None:
        # gradients are named after their parameter with a leading "d": dW -> grads["W"], dgamma -> grads["gamma"]
        self.key = name[1:] if self.table == "grads" else name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj, self.table).get(self.key)

    def __set__(self, obj: Any, value: Any) -> None:
        if self.table != "grads":
            value = parameter(value, type(obj).__name__, self.key, ndim=self.ndim)
        getattr(obj, self.table)[self.key] = value


def parameter(value: Any, where: str, name: str, *, ndim: int | None = None) -> np.ndarray:
    """A parameter array as given (never copied): a float32 or float64 ndarray of ``ndim`` dimensions."""
    if not isinstance(value, np.ndarray) or value.dtype not in _validate.FLOAT_DTYPES:
        got = f"dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
        _validate.fail(where, name, "a float32 or float64 ndarray (layers keep it and optimizers update it in "
                       "place)", got, TypeError)
    if ndim is not None and value.ndim != ndim:
        _validate.fail(where, name, f"{ndim}-D", f"{value.ndim}-D array of shape {value.shape}")
    return value


def bias(value: Any, size: int, dtype: np.dtype) -> Any:
    """A bias given as a number (the book's ``Convolution(w, 0)`` in ``ch07/apply_filter.py``, which its layers
    broadcast) as a ``(size,)`` array of ``dtype``; anything else as given, for :class:`Entry` to check."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)):
        return np.full(size, value, dtype=dtype)
    return value


class Layer:
    """Base of every fastnn layer.

    Attributes
    ----------
    params, grads : dict of str to ndarray
        The trainable arrays and their gradients (the same objects as the layer's attributes ``W``/``dW``, ...).
        Gradients are ``None`` until the first ``backward``. Empty for layers without parameters.
    buffers : dict of str to ndarray
        State that is not trained but belongs in a checkpoint (batch normalization's running statistics).
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray | None] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self._out_shape: tuple[int, ...] | None = None

    def _output(self, out: np.ndarray) -> np.ndarray:
        """Remember the shape of what ``forward`` returns: ``backward`` accepts only a ``dout`` of that shape."""
        self._out_shape = out.shape
        return out

    def _dout(self, dout: Any, where: str) -> np.ndarray:
        """``dout`` as a float array of the shape ``forward`` returned (after a forward has run)."""
        if self._out_shape is None:
            raise RuntimeError(f"{where}: forward must run before backward")
        dout = _validate.float_array(dout, where, "dout")
        _validate.shape(dout, self._out_shape, where, "dout")
        return dout

    def _snapshot(self) -> Any:
        """State that changes from one forward to the next (RNG, running statistics); see :meth:`_restore`."""
        return None

    def _restore(self, state: Any) -> None:
        """Go back to a :meth:`_snapshot`, so that a forward pass can be repeated exactly (numerical gradients)."""


def batch(x: Any, where: str, ndim: int | tuple[int, ...] | None = None, *, min_ndim: int = 0) -> np.ndarray:
    """A layer input as a float array (ints and bools promoted to float64, as NumPy does), of given ``ndim``."""
    x = _validate.float_array(x, where, "x", ndim=ndim)
    if x.ndim < min_ndim:
        _validate.fail(where, "x", f"at least {min_ndim}-D (N, ...)", f"{x.ndim}-D array of shape {x.shape}")
    return x


def alike(dout: np.ndarray, a: np.ndarray) -> bool:
    """``dout`` has ``a``'s dtype and shape: with both float arrays, what an element-wise backward's check
    establishes (so the layer may call the kernel's body, :data:`fastnn.backend.unchecked`)."""
    return dout.dtype == a.dtype and dout.shape == a.shape


def arrays_of(dtype: np.dtype, *arrays: Any) -> bool:
    """Every one of ``arrays`` is an ndarray of ``dtype``: what a kernel's check establishes of its arrays (their
    common float dtype) when ``dtype`` is a float dtype, so that a layer may call the body."""
    return all(type(a) is np.ndarray and a.dtype == dtype for a in arrays)


def kept_float(v: Any, low: float = -math.inf, high: float = math.inf) -> bool:
    """``v`` is still what :func:`fastnn._validate.scalar` made of it, a finite Python float, and within [low, high]:
    then a kernel's scalar check with those bounds would pass it unchanged (a value rebound since, e.g. a str or an
    out-of-range number, fails this and goes through the check, which raises as it always did)."""
    return type(v) is float and low <= v <= high and math.isfinite(v)


def features(x: np.ndarray) -> int:
    """Number of features per sample of a batch ``(N, ...)`` (``prod(x.shape[1:])``, also when N is 0)."""
    return math.prod(x.shape[1:])


def same_shape(a: np.ndarray, b: np.ndarray, where: str, name_a: str, name_b: str) -> None:
    """``a`` (argument ``name_a``) must have the shape of ``b``."""
    if a.shape != b.shape:
        _validate.fail(where, name_a, f"of shape {b.shape} like {name_b}", f"shape {a.shape}")


def scale_and_shift(gamma: np.ndarray, beta: np.ndarray, where: str) -> None:
    """A normalization layer's gamma and beta: non-empty and of one shape."""
    if gamma.size == 0:
        _validate.fail(where, "gamma", "non-empty (one scale per normalized feature)", f"shape {gamma.shape}")
    same_shape(beta, gamma, where, "beta", "gamma")


def sliding_window(x: np.ndarray, window_h: int, window_w: int, stride: Any, pad: Any, where: str, window: str,
                   *, pool: bool = False) -> _validate.WindowGeometry:
    """Check that a ``window_h`` x ``window_w`` window (described as ``window`` in messages) with ``stride`` and
    ``pad`` slides over x (N, C, H, W); returns the geometry (output size OH, OW). ``pool``: the pooling
    kernels' extra rule ``pad <= window // 2``."""
    ph, pw = _validate.int_pair(pad, where, "pad", minimum=0)
    if window_h > x.shape[2] + 2 * ph or window_w > x.shape[3] + 2 * pw:
        _validate.fail(where, "x", f"at least {window_h}x{window_w} in H x W after padding by {(ph, pw)} to fit "
                       f"the {window}", f"shape {x.shape}")
    if pool:
        return _validate.pool_geometry(x.shape, window_h, window_w, stride, pad, where)
    return _validate.window_geometry(x.shape, window_h, window_w, stride, pad, where)
