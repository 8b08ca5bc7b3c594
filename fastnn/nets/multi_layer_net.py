"""The book's fully connected nets (``common/multi_layer_net.py``, ``common/multi_layer_net_extend.py``)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from ..layers import Affine, BatchNormalization, Dropout, SoftmaxWithLoss
from ..layers._random import RandomSource
from . import _init
from .sequential import Sequential, float_dtype

__all__ = ["MultiLayerNet", "MultiLayerNetExtend"]


class MultiLayerNet(Sequential):
    """Fully connected net: (Affine - activation) x len(hidden_size_list) - Affine - softmax with loss.

    Parameters
    ----------
    input_size, output_size : int
    hidden_size_list : list of int
    activation : 'relu' or 'sigmoid' (also 'tanh', 'leaky_relu')
    weight_init_std : 'relu'/'he' (He), 'sigmoid'/'xavier' (Xavier) or a standard deviation
    weight_decay_lambda : float >= 0, L2 penalty on the weights W
    dtype : float32 or float64, keyword-only
        Of every parameter, activation and gradient; inputs are cast to it.
    seed : None, int or numpy.random.Generator, keyword-only
        Weights are drawn W1, W2, ... as ``scale * standard_normal(shape)`` in float64 (then cast to ``dtype``)
        from this stream; None: NumPy's global state (``np.random.randn``, the book's numbers).

    ``layers`` is an OrderedDict keyed 'Affine1', 'Activation_function1', ... as the book's; ``params`` holds
    W1, b1, W2, b2, ...
    """

    def __init__(self, input_size: int, hidden_size_list: list[int], output_size: int, activation: str = "relu",
                 weight_init_std: Any = "relu", weight_decay_lambda: float = 0, *, dtype: Any = np.float64,
                 seed: Any = None) -> None:
        self._build(input_size, hidden_size_list, output_size, activation, weight_init_std, weight_decay_lambda,
                    dtype, seed, use_dropout=False, dropout_ration=0.5, use_batchnorm=False)

    def _build(self, input_size: int, hidden_size_list: list[int], output_size: int, activation: str,
               weight_init_std: Any, weight_decay_lambda: float, dtype: Any, seed: Any, *, use_dropout: bool,
               dropout_ration: float, use_batchnorm: bool) -> None:
        where = type(self).__name__
        self.input_size = _init.size(input_size, where, "input_size")
        self.output_size = _init.size(output_size, where, "output_size")
        self.hidden_size_list = [_init.size(s, where, "hidden_size_list") for s in hidden_size_list]
        self.hidden_layer_num = len(self.hidden_size_list)
        self.use_dropout, self.use_batchnorm = bool(use_dropout), bool(use_batchnorm)
        dtype = float_dtype(dtype, where)
        activation_layer = _init.activation_layer(activation, where)
        random = RandomSource(seed, where)
        sizes = [self.input_size, *self.hidden_size_list, self.output_size]
        # all weights are drawn before any layer is built, in the book's order
        weights = [_init.normal(random, _init.init_scale(weight_init_std, fan_in, where), (fan_in, fan_out), dtype)
                   for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True)]
        layers = OrderedDict()
        for idx, (W, fan_out) in enumerate(zip(weights, sizes[1:], strict=True), start=1):
            layers[f"Affine{idx}"] = Affine(W, np.zeros(fan_out, dtype))
            if idx == len(weights):
                break
            if use_batchnorm:
                layers[f"BatchNorm{idx}"] = BatchNormalization(np.ones(fan_out, dtype), np.zeros(fan_out, dtype))
            layers[f"Activation_function{idx}"] = activation_layer()
            if use_dropout:
                layers[f"Dropout{idx}"] = Dropout(dropout_ration, seed=random.generator)
        layers["Affine1"].need_dx = False  # gradient() never uses the input's gradient
        super().__init__(layers, SoftmaxWithLoss(), weight_decay_lambda=weight_decay_lambda, dtype=dtype)
        # The book's params order: every W, b (made before the layers), then gamma1, beta1, ... (made with the
        # batch-norm layers); gradient() keeps the layer order W1, b1, gamma1, beta1, W2, ... as the book's.
        affine = [key for key, (_, name) in self._param_index.items() if name in ("W", "b")]
        self.params = {key: self.params[key] for key in [*affine, *(k for k in self.params if k not in affine)]}


class MultiLayerNetExtend(MultiLayerNet):
    """:class:`MultiLayerNet` with optional batch normalization (after each hidden Affine) and dropout (after
    each hidden activation), as the book's MultiLayerNetExtend.

    Parameters as :class:`MultiLayerNet`, plus ``use_dropout``, ``dropout_ration`` (the book's spelling) and
    ``use_batchnorm``. Dropout masks are drawn from the ``seed`` stream (after the weights). ``params`` adds
    gamma1, beta1, ... and ``buffers`` running_mean1, running_var1, ... with batch normalization.
    ``loss(x, t, train_flg=False)``: pass ``train_flg=True`` for the training-mode loss (``gradient`` does).
    As the book's, ``params`` lists W1, b1, ..., then gamma1, beta1, ...; ``gradient`` returns W1, b1, gamma1,
    beta1, W2, ...
    """

    def __init__(self, input_size: int, hidden_size_list: list[int], output_size: int, activation: str = "relu",
                 weight_init_std: Any = "relu", weight_decay_lambda: float = 0, use_dropout: bool = False,
                 dropout_ration: float = 0.5, use_batchnorm: bool = False, *, dtype: Any = np.float64,
                 seed: Any = None) -> None:
        self._build(input_size, hidden_size_list, output_size, activation, weight_init_std, weight_decay_lambda,
                    dtype, seed, use_dropout=use_dropout, dropout_ration=dropout_ration, use_batchnorm=use_batchnorm)
