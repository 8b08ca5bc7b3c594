"""The one seam between fastnn's Python side and its numerics: :mod:`fastnn.kernels` or :mod:`fastnn.reference`.

Every layer, optimizer, net, trainer and compat API calls its numerics as ``ops.<kernel>(...)``, where :data:`ops`
holds the functions of :mod:`fastnn.kernels` (Numba) by default. :func:`using` swaps in the NumPy twins of
:mod:`fastnn.reference` for the duration of a ``with`` block, so the same network, optimizer and Python code run on
the reference -- what the demo's speed-up, the benchmarks' NumPy training step and the twin tests compare::

    from fastnn import backend
    with backend.using("reference"):
        loss = net.loss(x, t)          # every kernel call inside is the NumPy twin's

The switch is process-wide (every thread sees it) and is meant for measurements and tests, not for serving two
backends at once; ``using`` blocks are serialised by a lock and nest. A call is one attribute lookup on
:data:`ops`, as ``kernels.<name>`` was: the seam costs nothing on the hot path.

:data:`unchecked` is swapped with it and holds, for each name, the installed function's body without its argument
check, for a caller that has already established what ``fastnn._checks.check_<op>`` would (a layer that checked
``x``, the common dtype, the shapes): each input is then checked once on its way down, while ``ops.<name>`` and the
public kernels keep checking. The convention, on both sides: the public ``<op>`` is its check followed by a call
of ``_<op>`` in the same module, which has ``<op>``'s signature and takes its arguments as the check returns them.
An op without such a body, or a function put in place of the package's (a monkeypatch, a recording wrapper),
stands for itself in :data:`unchecked`, so whatever replaces a kernel is what every caller reaches.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator

from . import kernels, reference

__all__ = ["BACKENDS", "current", "multi_tensor", "ops", "rewire_for_good", "unchecked", "using"]

#: The implementations by name (``"fastnn"`` and ``"numpy"`` are the benchmarks' names for the same two).
BACKENDS: dict[str, types.ModuleType] = {"kernels": kernels, "reference": reference}
_ALIASES = {"fastnn": "kernels", "numpy": "reference"}

#: The functions every caller uses: one attribute per name in ``fastnn.kernels.__all__``. A module object, not a
#: SimpleNamespace: CPython 3.11 specialises attribute loads on modules, and ``ops.matmul`` then costs what
#: ``kernels.matmul`` did (measured 16 ns against 40 ns for a SimpleNamespace attribute).
ops = types.ModuleType("fastnn.backend.ops", "The installed backend's kernel functions (see fastnn.backend).")
#: The installed functions' bodies without their argument checks (see the module docstring); same names.
unchecked = types.ModuleType("fastnn.backend.unchecked", "The installed backend's kernel bodies without their argument "
                             "checks (see fastnn.backend).")
#: fastnn's multi-tensor launcher (:class:`fastnn.kernels.optimizers.MultiTensorPlan`, ``plan_of``): optimizers run
#: their step bodies through it only where ``unchecked.<step>`` is fastnn's own kernel body (so never on the twins).
multi_tensor = kernels.optimizers

_state = {"current": "kernels"}
_lock = threading.RLock()


def _install(name: str) -> None:
    _set(BACKENDS[name], kernels.__all__)
    _state["current"] = name


def _set(impl: types.ModuleType, names: Iterable[str]) -> None:
    for fn in names:
        setattr(ops, fn, getattr(impl, fn))
        setattr(unchecked, fn, _body(getattr(impl, fn)))


def rewire_for_good(name: str, which: Callable[[str], bool]) -> None:
    """Install backend ``name``'s functions for the kernels ``which(kernel_name)`` selects, for the rest of the
    process (not undone; :func:`current` is unchanged). For a process that exists only to compile a subset of the
    kernels: the demo's compile worker runs a training step with the forward ops on the twins, so that only the
    backward pass's kernels compile there."""
    with _lock:
        _set(BACKENDS[_ALIASES.get(name, name)], [fn for fn in kernels.__all__ if which(fn)])


def _body(fn):
    """The body of public function ``fn``: ``_<name>`` of the module defining it, else ``fn`` itself.

    Only the function a module defines has its body used: a replacement (a monkeypatch, a recording wrapper, which
    ``functools.wraps`` dresses in the original's name and module) is what every caller must reach.
    """
    name = getattr(fn, "__name__", "")
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    if getattr(module, name, None) is not fn:
        return fn
    return getattr(module, "_" + name, fn)


def current() -> str:
    """The name of the installed backend: ``"kernels"`` or ``"reference"``."""
    return _state["current"]


@contextlib.contextmanager
def using(name: str) -> Iterator[types.ModuleType]:
    """Run the ``with`` block on backend ``name`` (``"kernels"``/``"fastnn"`` or ``"reference"``/``"numpy"``).

    Yields :data:`ops`. The previous backend is restored on exit, also after an exception.

    Raises
    ------
    ValueError
        ``name`` is not a backend.
    """
    key = _ALIASES.get(name, name) if isinstance(name, str) else None
    if key not in BACKENDS:
        raise ValueError(f"backend.using: name must be one of 'kernels', 'reference', 'fastnn', 'numpy', got {name!r}")
    with _lock:
        previous = _state["current"]
        _install(key)
        try:
            yield ops
        finally:
            _install(previous)


_install("kernels")
