"""Numba kernels: the fast implementations. Same names and signatures as :mod:`fastnn.reference`.

Every public function here validates its arguments (see :mod:`fastnn._validate`) and then launches a compiled
loop body through :class:`fastnn._jit.Kernel`, serial or parallel by size.
"""

from . import activations, conv, dropout, im2col, linalg, losses, normalization, optimizers, pooling

# The modules' public names, gathered before the star imports below rebind ``im2col`` (the module) to
# ``im2col`` (the function of the same name).
__all__ = [name for mod in (activations, conv, dropout, im2col, linalg, losses, normalization, optimizers,
                                         pooling)
           for name in mod.__all__]

from .activations import *  # noqa: E402, F403
from .conv import *  # noqa: E402, F403
from .dropout import *  # noqa: E402, F403
from .im2col import *  # noqa: E402, F403
from .linalg import *  # noqa: E402, F403
from .losses import *  # noqa: E402, F403
from .normalization import *  # noqa: E402, F403
from .optimizers import *  # noqa: E402, F403
from .pooling import *  # noqa: E402, F403
