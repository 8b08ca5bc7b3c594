"""fastnn: fast CPU neural-network kernels behind familiar NumPy APIs."""

from ._jit import get_num_threads, set_num_threads, threading_layer

__version__ = "0.1.0"
__all__ = ["__version__", "get_num_threads", "set_num_threads", "threading_layer"]
