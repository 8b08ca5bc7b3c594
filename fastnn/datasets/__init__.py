"""Data sets in the form of Deep Learning from Scratch's loaders: ``((x_train, t_train), (x_test, t_test))``.

* :func:`load_mnist` -- MNIST from the standard IDX files, downloaded (MD5-checked) and cached when missing.
* :func:`load_digits` -- scikit-learn's 8x8 digits, no download (``examples`` extra).
* :func:`read_idx` -- the IDX reader behind ``load_mnist``.
"""

from ._optional import MissingDependencyError
from .digits import load_digits
from .idx import parse_idx, read_idx
from .mnist import DEFAULT_MIRRORS, MNIST_FILES, DownloadError, default_data_dir, download_mnist, load_mnist

__all__ = [
    "DEFAULT_MIRRORS",
    "MNIST_FILES",
    "DownloadError",
    "MissingDependencyError",
    "default_data_dir",
    "download_mnist",
    "load_digits",
    "load_mnist",
    "parse_idx",
    "read_idx",
]
