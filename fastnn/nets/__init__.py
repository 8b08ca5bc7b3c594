"""The networks of Deep Learning from Scratch on fastnn layers, plus a generic :class:`Sequential` container.

Same constructor arguments, methods and ``params`` keys (W1, b1, ..., gamma1, beta1) as the book, so the book's
training scripts and ``Trainer`` run unchanged; extra keyword-only ``dtype`` (float32 runs end to end) and
``seed`` (reproducible initialisation and dropout). :class:`CharLSTM` is the text demo's character-level language
model.
"""

from .char_lm import CharLSTM
from .convnets import DeepConvNet, SimpleConvNet
from .multi_layer_net import MultiLayerNet, MultiLayerNetExtend
from .sequential import Sequential
from .transformer_lm import TransformerLM

__all__ = ["CharLSTM", "DeepConvNet", "MultiLayerNet", "MultiLayerNetExtend", "Sequential", "SimpleConvNet",
           "TransformerLM"]
