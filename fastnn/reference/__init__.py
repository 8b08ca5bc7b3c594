"""Pure-NumPy reference twins of every kernel in :mod:`fastnn.kernels`: the readable specification.

Written to be read: vectorised NumPy, no Python loops over elements, never Numba. Tests use these as the
oracle and the benchmarks as the baseline.
"""

from . import activations, conv, dropout, im2col, losses, normalization, optimizers, pooling
from .activations import *  # noqa: F403
from .conv import *  # noqa: F403
from .dropout import *  # noqa: F403
from .im2col import *  # noqa: F403
from .losses import *  # noqa: F403
from .normalization import *  # noqa: F403
from .optimizers import *  # noqa: F403
from .pooling import *  # noqa: F403

__all__ = [name for mod in (activations, conv, dropout, im2col, losses, normalization, optimizers, pooling)
           for name in mod.__all__]
