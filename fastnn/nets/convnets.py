"""The book's convolutional nets: ``ch07/simple_convnet.py`` and ``ch08/deep_convnet.py``."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from .. import _validate
from ..layers import Affine, Convolution, Dropout, Pooling, Relu, SoftmaxWithLoss
from ..layers._random import RandomSource
from . import _init
from .sequential import Sequential, float_dtype

__all__ = ["DeepConvNet", "SimpleConvNet"]

_SIMPLE_CONV = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}
_DEEP_CONV = ({"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
              {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
              {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
              {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
              {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
              {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1})


def _input_dim(input_dim: Any, where: str) -> tuple[int, int, int]:
    if not isinstance(input_dim, (tuple, list)) or len(input_dim) != 3:
        _validate.fail(where, "input_dim", "a (C, H, W) triple", repr(input_dim), TypeError)
    return tuple(_init.size(v, where, "input_dim") for v in input_dim)


class SimpleConvNet(Sequential):
    """conv - relu - pool(2x2, stride 2) - affine - relu - affine - softmax with loss (the book's ch07 net).

    Parameters
    ----------
    input_dim : (C, H, W)
    conv_param : dict with filter_num, filter_size, pad, stride (default: the book's 30, 5, 0, 1)
    hidden_size, output_size : int
    weight_init_std : a standard deviation (the book's 0.01), or 'relu'/'he', 'sigmoid'/'xavier'
    dtype : float32 or float64, keyword-only
    seed : None, int or numpy.random.Generator, keyword-only
        Weights drawn W1, W2, W3 as ``scale * standard_normal(shape)`` (float64, then cast) from this stream;
        None: NumPy's global state, as the book.

    The affine layer's input size is computed from the actual pooled output (the book's formula assumes an
    even convolution output on a square input). ``layers`` is the book's OrderedDict keyed ``Conv1``, ``Relu1``,
    ``Pool1``, ``Affine1``, ``Relu2``, ``Affine2`` (``last_layer`` the loss); ``params`` holds W1, b1, W2, b2,
    W3, b3 (Conv1, Affine1, Affine2).
    """

    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28), conv_param: dict | None = None,
                 hidden_size: int = 100, output_size: int = 10, weight_init_std: Any = 0.01, *,
                 dtype: Any = np.float64, seed: Any = None) -> None:
        where = type(self).__name__
        C, H, W = _input_dim(input_dim, where)
        p = _init.conv_param(_SIMPLE_CONV if conv_param is None else conv_param, where, "conv_param")
        hidden_size = _init.size(hidden_size, where, "hidden_size")
        output_size = _init.size(output_size, where, "output_size")
        dtype = float_dtype(dtype, where)
        random = RandomSource(seed, where)
        ph, pw = _init.pool2_output(*_init.conv_output(H, W, p, where, "conv_param"), where, "conv_param")
        fs, fn = p["filter_size"], p["filter_num"]
        shapes = [(fn, C, fs, fs), (fn * ph * pw, hidden_size), (hidden_size, output_size)]
        fan_ins = [C * fs * fs, fn * ph * pw, hidden_size]
        W1, W2, W3 = (_init.normal(random, _init.init_scale(weight_init_std, fan_in, where), shape, dtype)
                      for shape, fan_in in zip(shapes, fan_ins, strict=True))
        layers = OrderedDict()
        layers["Conv1"] = Convolution(W1, np.zeros(fn, dtype), p["stride"], p["pad"])
        layers["Relu1"] = Relu()
        layers["Pool1"] = Pooling(pool_h=2, pool_w=2, stride=2)
        layers["Affine1"] = Affine(W2, np.zeros(hidden_size, dtype))
        layers["Relu2"] = Relu()
        layers["Affine2"] = Affine(W3, np.zeros(output_size, dtype))
        layers["Conv1"].need_dx = False  # gradient() never uses the input's gradient
        super().__init__(layers, SoftmaxWithLoss(), dtype=dtype)

    def accuracy(self, x: Any, t: Any, batch_size: int | None = 100) -> float:
        return super().accuracy(x, t, batch_size)


class DeepConvNet(Sequential):
    """The book's ch08 net (99% on MNIST):
    (conv - relu - conv - relu - pool) x 3 - affine - relu - dropout - affine - dropout - softmax with loss.

    Parameters
    ----------
    input_dim : (C, H, W)
    conv_param_1 ... conv_param_6 : dicts with filter_num, filter_size, pad, stride (default: the book's)
    hidden_size, output_size : int
    dtype : float32 or float64, keyword-only
    seed : None, int or numpy.random.Generator, keyword-only
        He-initialised weights W1 ... W8 drawn in order from this stream, then the dropout masks.

    Weight scales are He's sqrt(2 / fan_in) with each layer's real fan-in, and the first affine layer's input
    size is computed from the configuration (the book hard-codes both for 1x28x28 input and its default
    conv params; they agree there). ``loss`` runs in training mode by default, as the book's. ``layers`` is the
    book's list of 20 layers: convolutions at 0, 2, 5, 7, 10, 12, affine layers at 15 and 18 (the indices of the
    book's ``gradient``/``load_params``), pooling at 4, 9, 14, dropout at 17 and 19.
    """

    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28), conv_param_1: dict | None = None,
                 conv_param_2: dict | None = None, conv_param_3: dict | None = None,
                 conv_param_4: dict | None = None, conv_param_5: dict | None = None,
                 conv_param_6: dict | None = None, hidden_size: int = 50, output_size: int = 10, *,
                 dtype: Any = np.float64, seed: Any = None) -> None:
        where = type(self).__name__
        C, H, W = _input_dim(input_dim, where)
        given = (conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6)
        params = [_init.conv_param(d if p is None else p, where, f"conv_param_{i}")
                  for i, (p, d) in enumerate(zip(given, _DEEP_CONV, strict=True), start=1)]
        hidden_size = _init.size(hidden_size, where, "hidden_size")
        output_size = _init.size(output_size, where, "output_size")
        dtype = float_dtype(dtype, where)
        random = RandomSource(seed, where)

        shapes, h, w, channels = [], H, W, C
        for i, p in enumerate(params, start=1):
            h, w = _init.conv_output(h, w, p, where, f"conv_param_{i}")
            if i % 2 == 0:
                h, w = _init.pool2_output(h, w, where, f"conv_param_{i}")
            shapes.append((p["filter_num"], channels, p["filter_size"], p["filter_size"]))
            channels = p["filter_num"]
        shapes += [(channels * h * w, hidden_size), (hidden_size, output_size)]
        fan_ins = [int(np.prod(s[1:])) for s in shapes[:6]] + [channels * h * w, hidden_size]
        weights = [_init.normal(random, _init.init_scale("he", fan_in, where), shape, dtype)
                   for shape, fan_in in zip(shapes, fan_ins, strict=True)]
        biases = [np.zeros(shape[0] if len(shape) == 4 else shape[1], dtype) for shape in shapes]

        layers = []
        for i, p in enumerate(params):
            layers += [Convolution(weights[i], biases[i], p["stride"], p["pad"]), Relu()]
            if i % 2 == 1:
                layers.append(Pooling(pool_h=2, pool_w=2, stride=2))
        layers += [Affine(weights[6], biases[6]), Relu(), Dropout(0.5, seed=random.generator),
                   Affine(weights[7], biases[7]), Dropout(0.5, seed=random.generator)]
        layers[0].need_dx = False  # gradient() never uses the input's gradient
        super().__init__(layers, SoftmaxWithLoss(), dtype=dtype)

    def loss(self, x: Any, t: Any, train_flg: bool = True) -> Any:
        return super().loss(x, t, train_flg)

    def accuracy(self, x: Any, t: Any, batch_size: int | None = 100) -> float:
        return super().accuracy(x, t, batch_size)
