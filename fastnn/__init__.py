"""fastnn: fast CPU neural-network kernels behind familiar NumPy APIs.

* :mod:`fastnn.kernels` -- Numba kernels; :mod:`fastnn.reference` -- their pure-NumPy twins (the specification).
* :mod:`fastnn.layers`, :mod:`fastnn.optim`, :mod:`fastnn.nets`, :class:`fastnn.Trainer` -- the API of
  *Deep Learning from Scratch*.
* :mod:`fastnn.compat.cs231n`, :mod:`fastnn.compat.numpy_ml` -- the cs231n and numpy-ml APIs.
"""

from ._jit import get_num_threads, set_num_threads, threading_layer
from .gradient import numerical_gradient
from .trainer import Trainer, TrainResult

__version__ = "0.1.0"
__all__ = ["__version__", "get_num_threads", "set_num_threads", "threading_layer", "numerical_gradient", "Trainer",
           "TrainResult"]
