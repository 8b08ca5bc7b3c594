"""The layers of Deep Learning from Scratch (``common/layers.py``) on fastnn kernels: a drop-in replacement.

``from fastnn.layers import *`` in place of ``from common.layers import *`` runs book code unchanged. Every
layer has ``forward``/``backward``, ``params``/``grads`` dicts (the same arrays as ``W``/``dW``, ...) and checks
its inputs (errors name the layer and the argument). Numerics are called through :data:`fastnn.backend.ops`, so
``with fastnn.backend.using("reference"):`` runs any layer on the NumPy twins.
"""

from .basic import Affine, Dropout, LeakyRelu, Relu, Sigmoid, SoftmaxWithLoss, Tanh
from .conv import AvgPooling, Convolution, Pooling
from .normalization import (
    BatchNormalization,
    BatchRenormalization,
    GroupNormalization,
    InstanceNormalization,
    LayerNormalization,
)
from .reparam import SpectralNorm, WeightNorm
from .transformer import (
    GELU,
    FeedForward,
    MultiHeadAttention,
    PositionalEncoding,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
)

__all__ = ["Affine", "AvgPooling", "BatchNormalization", "BatchRenormalization", "Convolution", "Dropout",
           "FeedForward", "GELU", "GroupNormalization", "InstanceNormalization", "LayerNormalization", "LeakyRelu",
           "MultiHeadAttention", "Pooling", "PositionalEncoding", "Relu", "Sigmoid", "SoftmaxWithLoss",
           "SpectralNorm", "Tanh", "TransformerDecoderLayer", "TransformerEncoderLayer", "WeightNorm"]
