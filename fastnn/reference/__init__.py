"""Pure-NumPy reference twins of every kernel in :mod:`fastnn.kernels`: the readable specification.

Written to be read: vectorised NumPy, no Python loops over elements, never Numba. Tests use these as the
oracle and the benchmarks as the baseline.
"""

from . import (
                                         activations,
                                         conv,
                                         dropout,
                                         im2col,
                                         linalg,
                                         losses,
                                         normalization,
                                         optimizers,
                                         pooling,
                                         recurrent,
                                         sequence,
)

# The modules' public names, gathered before the star imports below rebind ``im2col`` (the module) to
# ``im2col`` (the function of the same name).
__all__ = [name for mod in (activations, conv, dropout, im2col, linalg, losses, normalization, optimizers,
                                         pooling, recurrent, sequence)
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
from .recurrent import *  # noqa: E402, F403
from .sequence import *  # noqa: E402, F403
