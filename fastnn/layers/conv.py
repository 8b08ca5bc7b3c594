"""Convolution and pooling layers of Deep Learning from Scratch on fastnn kernels (NCHW layout).

Same names and arguments as the book's ``Convolution`` and ``Pooling``; ``stride`` and ``pad`` may also be
``(vertical, horizontal)`` pairs. Max pooling pads with -inf (the book pads with zeros, but its ``Pooling``
computes a wrong output size for ``pad > 0``, so no book code pads a pooling layer).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .. import _validate
from ..backend import ops, unchecked
from ._base import Entry, Layer, batch, bias, sliding_window
from .basic import Relu

__all__ = ["AvgPooling", "Convolution", "Pooling", "fuse_runs"]


class Convolution(Layer):
    """2-D convolution (cross-correlation, as the book): x (N, C, H, W) -> out (N, FN, OH, OW).

    Parameters
    ----------
    W : ndarray (FN, C, FH, FW), float32 or float64
    b : ndarray (FN,), float32 or float64, or a number (a bias of that value for every filter, as the book's
        broadcast gives; ``ch07/apply_filter.py`` passes 0)
    stride : int >= 1 or (vertical, horizontal)
    pad : int >= 0 or (vertical, horizontal), zero padding
    """

    W = Entry("params", ndim=4)
    b = Entry("params", ndim=1)
    dW = Entry("grads")
    db = Entry("grads")

    def __init__(self, W: np.ndarray, b: np.ndarray, stride: int | tuple[int, int] = 1,
                 pad: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.W = W
        self.b = bias(b, self.W.shape[0], self.W.dtype)
        _validate.shape(self.b, (self.W.shape[0],), "Convolution", "b")
        _validate.int_pair(stride, "Convolution", "stride", minimum=1)
        _validate.int_pair(pad, "Convolution", "pad", minimum=0)
        self.stride, self.pad = stride, pad
        self.dW = self.db = None
        self.x = None
        # The kernels' workspace: the forward's column matrix, reused by the backward of the same x (as the
        # book's layer keeps ``self.col``), and the scratch buffers of later calls.
        self._workspace: dict = {}
        #: False skips dx in backward (which then returns None): a network's first layer needs no input gradient.
        self.need_dx = True
        self._checked: tuple = ()  # what forward checked: W's shape, stride, pad, x's shape (see backward)

    def forward(self, x: Any) -> np.ndarray:
        x, conv = self._prepare(x, "conv2d_forward")
        return self._output(conv(x, self.W, self.b, self.stride, self.pad, cache=self._workspace))

    def _prepare(self, x: Any, kernel: str) -> tuple[np.ndarray, Any]:
        """forward's checks of ``x``; returns it with ``kernel`` (a forward taking conv2d_forward's arguments), the
        body without its check when these checks established what it would (:data:`fastnn.backend.unchecked`)."""
        x = batch(x, "Convolution.forward", ndim=4)
        FN, C, FH, FW = self.W.shape
        if x.shape[1] != C:
            _validate.fail("Convolution.forward", "x", f"of shape (N, {C}, H, W) (C = W.shape[1])", f"shape {x.shape}")
        sliding_window(x, FH, FW, self.stride, self.pad, "Convolution.forward", f"{FH}x{FW} filter")
        self.x, W, b = x, self.W, self.b
        self._checked = (W.shape, self.stride, self.pad, x.shape)
        # checked above: x 4-D float with W's channels, the window fits; what check_conv2d_forward adds is the
        # common dtype, b of shape (FN,) (b may be rebound since the constructor) and the cache a dict
        trusted = x.dtype == W.dtype == b.dtype and b.shape == W.shape[:1] and type(self._workspace) is dict
        return x, getattr(unchecked if trusted else ops, kernel)

    def backward(self, dout: Any) -> np.ndarray:
        """dout (N, FN, OH, OW) -> dx (N, C, H, W) (None when ``need_dx`` is False); sets dW (FN, C, FH, FW), db."""
        dout = self._dout(dout, "Convolution.backward")
        x, W = self.x, self.W
        # forward checked x against W of this shape with this stride and pad, and dout has its output's shape
        trusted = (dout.dtype == x.dtype == W.dtype and W.shape == self._checked[0]
                   and _same((self.stride, self.pad), self._checked[1:3]) and x.shape == self._checked[3]
                   and type(self.need_dx) is bool and type(self._workspace) is dict)
        conv = unchecked.conv2d_backward if trusted else ops.conv2d_backward
        dx, self.dW, self.db = conv(dout, x, W, self.stride, self.pad, cache=self._workspace, need_dx=self.need_dx)
        return dx


def _same(now: tuple, then: tuple) -> bool:
    """Every attribute is the very object forward checked (an equality test would let ``2.0 == 2`` through), and
    none can have changed in place since: ints, tuples of them and shapes are immutable; a list stride or pad, or
    any array, could be edited between forward and backward and then drive an unchecked loop out of bounds."""
    return all(map(operator.is_, now, then)) and all(map(_immutable, now))


def _immutable(v: Any) -> bool:
    return type(v) is int or (type(v) is tuple and all(type(i) is int for i in v))


def _window_args(layer: Layer) -> tuple:
    """A pooling layer's input shape and window arguments, as forward checked them and backward passes them."""
    return layer.input_shape, layer.pool_h, layer.pool_w, layer.stride, layer.pad


def _pool_args(where: str, pool_h: Any, pool_w: Any, stride: Any, pad: Any) -> tuple[int, int]:
    """Check a pooling layer's constructor arguments; pad is at most half the pool (PyTorch's rule, so that no
    window holds padding only)."""
    pool_h = _validate.integer(pool_h, where, "pool_h", minimum=1)
    pool_w = _validate.integer(pool_w, where, "pool_w", minimum=1)
    _validate.int_pair(stride, where, "stride", minimum=1)
    ph, pw = _validate.int_pair(pad, where, "pad", minimum=0)
    if ph > pool_h // 2 or pw > pool_w // 2:
        _validate.fail(where, "pad", f"<= half the pool size ({pool_h // 2}, {pool_w // 2}) per axis", pad)
    return pool_h, pool_w


class Pooling(Layer):
    """Max pooling over ``pool_h`` x ``pool_w`` windows: x (N, C, H, W) -> out (N, C, OH, OW).

    Parameters
    ----------
    pool_h, pool_w : int >= 1
        Window height and width.
    stride : int >= 1 or (vertical, horizontal), default 2
        The book's current default (``Pooling(pool_h, pool_w, stride=2, pad=0)`` since its commit "Change
        Pooling's stride 2 from 1", 2020; earlier printings had 1). ``OH = (H + 2 * pad - pool_h) // stride + 1``;
        rows and columns a window does not reach are left out, as the book's.
    pad : int >= 0 or (vertical, horizontal), default 0
        At most half the pool per axis; padding is -inf (see the module docstring).

    ``arg_max`` keeps the position of each maximum inside its window (ties: the first).
    """

    def __init__(self, pool_h: int, pool_w: int, stride: int | tuple[int, int] = 2,
                 pad: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.pool_h, self.pool_w = _pool_args("Pooling", pool_h, pool_w, stride, pad)
        self.stride, self.pad = stride, pad
        self.input_shape = self.arg_max = None

    def forward(self, x: Any) -> np.ndarray:
        x = batch(x, "Pooling.forward", ndim=4)
        sliding_window(x, self.pool_h, self.pool_w, self.stride, self.pad, "Pooling.forward",
                       f"{self.pool_h}x{self.pool_w} pool", pool=True)
        self.input_shape = x.shape
        # checked above: x 4-D float, the pool's geometry: all that check_pool2d establishes
        out, self.arg_max = unchecked.maxpool2d_forward(x, self.pool_h, self.pool_w, self.stride, self.pad)
        return self._output(out)

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, "Pooling.backward")
        # Checked, on purpose: arg_max is a public array a caller may edit in place, and the kernel scatters
        # through its values; the check's scan over them is what keeps a bad index from writing out of bounds.
        return ops.maxpool2d_backward(dout, self.arg_max, self.input_shape, self.pool_h, self.pool_w, self.stride,
                                      self.pad)


class AvgPooling(Layer):
    """Average pooling over ``pool_h`` x ``pool_w`` windows: x (N, C, H, W) -> out (N, C, OH, OW).

    Padding adds zeros that count in the average (PyTorch's ``count_include_pad=True``). Same signature and
    defaults as :class:`Pooling` (``stride=2``, ``pad=0``; the book has no average pooling layer).
    """

    def __init__(self, pool_h: int, pool_w: int, stride: int | tuple[int, int] = 2,
                 pad: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.pool_h, self.pool_w = _pool_args("AvgPooling", pool_h, pool_w, stride, pad)
        self.stride, self.pad = stride, pad
        self.input_shape = None
        self._checked: tuple = ()  # _window_args as forward checked them

    def forward(self, x: Any) -> np.ndarray:
        x = batch(x, "AvgPooling.forward", ndim=4)
        sliding_window(x, self.pool_h, self.pool_w, self.stride, self.pad, "AvgPooling.forward",
                       f"{self.pool_h}x{self.pool_w} pool", pool=True)
        self.input_shape = x.shape
        self._checked = _window_args(self)
        # checked above: x 4-D float, the pool's geometry: all that check_pool2d establishes
        return self._output(unchecked.avgpool2d_forward(x, self.pool_h, self.pool_w, self.stride, self.pad))

    def backward(self, dout: Any) -> np.ndarray:
        dout = self._dout(dout, "AvgPooling.backward")
        pool = unchecked.avgpool2d_backward if _same(_window_args(self), self._checked) else ops.avgpool2d_backward
        return pool(dout, self.input_shape, self.pool_h, self.pool_w, self.stride, self.pad)


# ---------------------------------------------------------------------------------------------------------------
# Fused runs: a net hands a Convolution followed by a Relu (and a 2x2 stride-2 Pooling) to one kernel call
# (fastnn.kernels.conv2d_relu_forward, conv2d_relu_maxpool_forward and their backward passes); the layers keep
# their own forward and backward for every other use.


class ConvReluRun(Layer):
    """Convolution -> Relu (-> Pooling(2, 2, stride=2)) run by one fused kernel per pass, as a net sees it.

    forward/backward take and give what the run's first layer takes and its last layer gives. The layers' state is
    kept as their own passes keep it where it exists: the Convolution's ``x``, ``dW``, ``db`` and workspace, the
    Pooling's ``input_shape`` and ``arg_max``. The Relu's input is never made (it is the full-size convolution
    output, which the fused kernels do not write), so the Relu layer alone cannot run ``backward`` after a fused
    forward (it raises, as before any forward). When a pass does not fit the fused kernel (the pooling window
    changed, or a convolution output smaller than 2x2), the layers run one after another, as without fusion.
    """

    def __init__(self, conv: Convolution, relu: Relu, pool: Pooling | None = None) -> None:
        super().__init__()
        self.conv, self.relu, self.pool = conv, relu, pool
        self._fused = False
        self._out = self._argmax = None

    def _fits(self, x: np.ndarray) -> bool:
        """Whether this forward can be the fused kernel's: the pooling (if any) is 2x2 stride 2 unpadded and the
        convolution output it pools is at least 2x2 (otherwise the layers run, and raise, as without fusion)."""
        if self.pool is None:
            return True
        if not _fusable_pool(self.pool):
            return False
        try:
            OH, OW = _conv_hw(self.conv, x)
        except (TypeError, ValueError):  # a bad convolution: its own forward raises the error
            return False
        return OH >= 2 and OW >= 2

    def forward(self, x: Any) -> np.ndarray:
        conv, relu, pool = self.conv, self.relu, self.pool
        x = batch(x, "Convolution.forward", ndim=4)
        self._fused = self._fits(x)
        if not self._fused:
            out = relu.forward(conv.forward(x))
            return out if pool is None else pool.forward(out)
        x, kernel = conv._prepare(x, "conv2d_relu_forward" if pool is None else "conv2d_relu_maxpool_forward")
        out = kernel(x, conv.W, conv.b, conv.stride, conv.pad, cache=conv._workspace)
        FN, OH, OW = conv.W.shape[0], *_conv_hw(conv, x)
        conv._out_shape = (x.shape[0], FN, OH, OW)
        relu.x, relu._out_shape = None, None  # never made: see the class docstring
        if pool is None:
            self._out, self._argmax = out, None
        else:
            self._out, self._argmax = out
            pool.input_shape, pool.arg_max = conv._out_shape, self._argmax
            pool._output(self._out)
        return self._output(self._out)

    def backward(self, dout: Any) -> np.ndarray:
        conv, last = self.conv, self.pool or self.relu
        if not self._fused:
            if self.pool is not None:
                dout = self.pool.backward(dout)
            return conv.backward(self.relu.backward(dout))
        dout = self._dout(dout, f"{type(last).__name__}.backward")
        # checked kernels: the argmax is also the Pooling's public arg_max, which a caller may edit in place
        if self.pool is None:
            dx, conv.dW, conv.db = ops.conv2d_relu_backward(dout, self._out, conv.x, conv.W, conv.stride, conv.pad,
                                                            cache=conv._workspace, need_dx=conv.need_dx)
        else:
            dx, conv.dW, conv.db = ops.conv2d_relu_maxpool_backward(
                dout, self._out, self._argmax, conv.x, conv.W, conv.stride, conv.pad, cache=conv._workspace,
                need_dx=conv.need_dx)
        return dx


def _fusable_pool(pool: Any) -> bool:
    """A Pooling layer that is the fused kernels' 2x2 stride-2 unpadded max-pool."""
    return (type(pool) is Pooling and pool.pool_h == pool.pool_w == 2 and pool.stride in (2, (2, 2))
            and pool.pad in (0, (0, 0)) and _immutable(pool.stride) and _immutable(pool.pad))


def _conv_hw(conv: Convolution, x: np.ndarray) -> tuple[int, int]:
    g = _validate.geometry(x.shape, conv.W.shape[2], conv.W.shape[3], conv.stride, conv.pad)
    return g.OH, g.OW


def fuse_runs(layers: list) -> list:
    """``layers`` with each Convolution -> Relu (-> 2x2 stride-2 Pooling) run replaced by one :class:`ConvReluRun`
    (exact types: a subclass may change what its passes do)."""
    out, i = [], 0
    while i < len(layers):
        run = layers[i:i + 3]
        if len(run) >= 2 and type(run[0]) is Convolution and type(run[1]) is Relu:
            pool = run[2] if len(run) == 3 and _fusable_pool(run[2]) else None
            out.append(ConvReluRun(run[0], run[1], pool))
            i += 2 if pool is None else 3
        else:
            out.append(layers[i])
            i += 1
    return out
