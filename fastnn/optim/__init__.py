"""Optimizers with the interface of Deep Learning from Scratch: ``optimizer.update(params, grads)`` in place.

Each step is one fused Numba kernel per parameter (:mod:`fastnn.kernels`), so an update reads and writes every
array once instead of once per NumPy expression (called through :data:`fastnn.backend.ops`, so
``fastnn.backend.using("reference")`` swaps in the NumPy twins). :func:`get` builds one by name, as the book's
``Trainer``.
"""

from __future__ import annotations

from typing import Any

from .. import _validate
from ._base import Optimizer
from .optimizers import SGD, AdaBound, AdaGrad, Adam, AdamW, AMSGrad, Momentum, Nesterov, RMSprop
from .swats import SWATS

__all__ = ["Optimizer", "SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "AdamW", "AMSGrad",
           "AdaBound", "SWATS", "OPTIMIZERS", "get"]

#: Optimizer classes by lower-case name: the six of the book's ``Trainer`` and four more.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
    "adamw": AdamW,
    "amsgrad": AMSGrad,
    "adabound": AdaBound,
    "swats": SWATS,
}


def get(name: str, **params: Any) -> Optimizer:
    """A new optimizer by name (case-insensitive), as the book's ``Trainer`` picks one.

    Parameters
    ----------
    name : str
        One of ``'sgd', 'momentum', 'nesterov', 'adagrad', 'rmsprop', 'adam', 'adamw', 'amsgrad', 'adabound',
        'swats'``
        (``'SGD'``, ``'Adam'`` ... work too).
    **params
        Hyperparameters for the class (``lr=0.01`` ...).

    Raises
    ------
    ValueError
        Unknown name (the message lists the choices), or a hyperparameter out of bounds.
    TypeError
        ``name`` is not a str, or an unknown hyperparameter keyword.
    """
    if not isinstance(name, str):
        _validate.fail("fastnn.optim.get", "name", "a str", f"{type(name).__name__} {name!r}", TypeError)
    cls = OPTIMIZERS.get(name.lower())
    if cls is None:
        _validate.fail("fastnn.optim.get", "name", f"one of {', '.join(map(repr, OPTIMIZERS))} (any case)",
                       repr(name))
    return cls(**params)
