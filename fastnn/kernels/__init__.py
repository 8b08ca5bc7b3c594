"""Numba kernels: the fast implementations. Same names and signatures as :mod:`fastnn.reference`.

Every public function here validates its arguments (see :mod:`fastnn._validate`) and then launches a compiled
loop body through :class:`fastnn._jit.Kernel`, serial or parallel by size.
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
