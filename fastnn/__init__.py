"""fastnn: fast CPU neural-network kernels behind familiar NumPy APIs.

* :mod:`fastnn.kernels` -- Numba kernels; :mod:`fastnn.reference` -- their pure-NumPy twins (the specification).
* :mod:`fastnn.layers`, :mod:`fastnn.optim`, :mod:`fastnn.nets`, :class:`fastnn.Trainer` -- the API of
  *Deep Learning from Scratch*.
* :mod:`fastnn.compat.cs231n`, :mod:`fastnn.compat.numpy_ml` -- the cs231n and numpy-ml APIs.
"""

import os

# GNU OpenMP (Numba's default threading layer here) keeps its idle threads spinning for ~300,000 iterations after
# every parallel region. Between two fastnn kernels those spinning threads starve OpenBLAS's threads (conv GEMMs,
# Affine) and the Python thread of the 2 cores: a SimpleConvNet training step measured 25 ms by default, 16.5 ms with
# GOMP_SPINCOUNT=10000, 15 ms fully passive (which costs ~50% on short kernels such as batchnorm on (256, 4096)).
# Read once when libgomp loads, at the first parallel launch; a value the user set wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from ._jit import get_num_threads, set_num_threads, threading_layer
from .gradient import numerical_gradient
from .trainer import Trainer, TrainResult

__version__ = "0.1.0"
__all__ = ["__version__", "get_num_threads", "set_num_threads", "threading_layer", "numerical_gradient", "Trainer",
           "TrainResult"]
