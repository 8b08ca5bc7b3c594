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

__version__ = "0.1.0"
__all__ = ["__version__", "get_num_threads", "set_num_threads", "threading_layer", "numerical_gradient", "Trainer",
           "TrainResult"]

# Loaded on first use (PEP 562), so ``import fastnn`` costs what the interpreter needs for it and no more: Numba's
# own import is ~0.2 s, and a command that only parses its options or prints help should not pay it.
_LAZY = {"get_num_threads": "_jit", "set_num_threads": "_jit", "threading_layer": "_jit",
         "numerical_gradient": "gradient", "Trainer": "trainer", "TrainResult": "trainer"}


#: Subpackages reachable as attributes (``import fastnn; fastnn.kernels.relu_forward(...)``), imported on first use.
_SUBMODULES = frozenset({"backend", "bench", "bench_cases", "checkpoint", "cli", "compat", "config", "datasets",
                         "distributed", "gradient", "kernels", "layers", "nets", "optim", "reference", "trainer"})


def __getattr__(name: str):
    if name in _SUBMODULES:
        home = name
    elif name in _LAZY:
        home = _LAZY[name]
    else:
        raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"{__name__}.{home}")  # binds a submodule as an attribute too
    if home == name:
        return module
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})
