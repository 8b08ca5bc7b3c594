"""Weight initialisation of the book's nets, and checks of their constructor arguments."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _validate
from ..layers import LeakyRelu, Relu, Sigmoid, Tanh
from ..layers._random import RandomSource

#: The book's ``activation`` names (relu, sigmoid), plus fastnn's other elementwise layers.
ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid, "tanh": Tanh, "leaky_relu": LeakyRelu}


def activation_layer(name: Any, where: str) -> type:
    if not isinstance(name, str) or name.lower() not in ACTIVATIONS:
        _validate.fail(where, "activation", f"one of {sorted(ACTIVATIONS)}", repr(name))
    return ACTIVATIONS[name.lower()]


def init_scale(weight_init_std: Any, fan_in: int, where: str) -> float:
    """The book's rule: 'relu'/'he' -> sqrt(2 / fan_in) (He), 'sigmoid'/'xavier' -> sqrt(1 / fan_in) (Xavier), a
    number -> itself."""
    if isinstance(weight_init_std, str):
        name = weight_init_std.lower()
        if name in ("relu", "he"):
            return math.sqrt(2.0 / fan_in)
        if name in ("sigmoid", "xavier"):
            return math.sqrt(1.0 / fan_in)
        _validate.fail(where, "weight_init_std", "'relu', 'he', 'sigmoid', 'xavier' or a number > 0",
                       repr(weight_init_std))
    return _validate.scalar(weight_init_std, where, "weight_init_std", gt=0.0)


def normal(random: RandomSource, scale: float, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``scale * N(0, 1)`` of ``shape``, drawn in float64 (the book's numbers for the same stream) then cast."""
    return (scale * random.standard_normal(shape)).astype(dtype, copy=False)


def size(v: Any, where: str, name: str) -> int:
    return _validate.integer(v, where, name, minimum=1)


def conv_param(p: Any, where: str, name: str) -> dict[str, int]:
    """A book ``conv_param`` dict: filter_num, filter_size >= 1, stride >= 1, pad >= 0 (ints)."""
    keys = ("filter_num", "filter_size", "pad", "stride")
    if not isinstance(p, dict) or any(k not in p for k in keys):
        _validate.fail(where, name, f"a dict with keys {list(keys)}", repr(p), TypeError)
    return {k: _validate.integer(p[k], where, f"{name}[{k!r}]", minimum=0 if k == "pad" else 1) for k in keys}


def conv_output(h: int, w: int, p: dict[str, int], where: str, name: str) -> tuple[int, int]:
    """Output height and width of a square-filter convolution on an h x w input."""
    fs, pad, stride = p["filter_size"], p["pad"], p["stride"]
    if fs > h + 2 * pad or fs > w + 2 * pad:
        _validate.fail(where, name, f"a filter that fits the {h}x{w} input after padding by {pad}", f"{fs}x{fs}")
    return (h + 2 * pad - fs) // stride + 1, (w + 2 * pad - fs) // stride + 1


def pool2_output(h: int, w: int, where: str, name: str) -> tuple[int, int]:
    """Output of the nets' 2x2 stride-2 max pooling."""
    if h < 2 or w < 2:
        _validate.fail(where, name, "a configuration leaving at least 2x2 pixels before each 2x2 pooling",
                       f"{h}x{w}")
    return h // 2, w // 2
