"""Drop-in APIs of other NumPy neural-network code on fastnn kernels.

* :mod:`fastnn.compat.cs231n`: cs231n assignment 2 layers, layer utilities, fast layers and update rules.
* :mod:`fastnn.compat.numpy_ml`: numpy-ml's neural-net optimizers (SGD, AdaGrad, RMSProp, Adam).
"""

from . import cs231n, numpy_ml

__all__ = ["cs231n", "numpy_ml"]
