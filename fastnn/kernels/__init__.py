"""Numba kernels: the fast implementations. Same names and signatures as :mod:`fastnn.reference`.

Every public function here checks its arguments with the same :mod:`fastnn._checks` call as its twin and then
launches a compiled loop body through :class:`fastnn._jit.Kernel`, serial or parallel by size. Where the part
after the check is a function of its own, it is ``_<op>`` with ``<op>``'s signature, on both sides:
:data:`fastnn.backend.unchecked` hands it to layers and optimizers that have checked their inputs already.

One contract per operation: the twin's docstring (parameters, returns, math) is the specification. A kernel's own
docstring says only what it adds (how it runs, what was measured); below, each kernel's ``__doc__`` becomes the
twin's text followed by those notes, so ``help()`` and Sphinx show the whole contract on the kernel too
(``tests/kernels/test_contract.py`` checks this and that the signatures are the twin's). The kernel modules never
import :mod:`fastnn.reference`: it is read here, for this text only.
"""

import inspect

from .. import reference as _reference
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


def _adopt_contract(kernel, twin) -> None:
    """Make ``kernel.__doc__`` the twin's docstring followed by a Notes section: the kernel's own docstring."""
    notes = getattr(kernel, "__notes__", None)
    if notes is None:  # first time (a reload of this package must not nest the text)
        notes = inspect.cleandoc(kernel.__doc__ or "")
        kernel.__notes__ = notes
    where = (f"Numba kernel (:mod:`{kernel.__module__}`); the specification above is its NumPy twin "
             f":func:`{twin.__module__}.{twin.__name__}`.")
    kernel.__doc__ = f"{inspect.cleandoc(twin.__doc__)}\n\nNotes\n-----\n{where}" + (f"\n\n{notes}" if notes else "")


for _name in __all__:
    _adopt_contract(globals()[_name], getattr(_reference, _name))
del _name
