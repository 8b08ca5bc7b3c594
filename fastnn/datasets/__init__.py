"""Data sets in the form of Deep Learning from Scratch's loaders: ``((x_train, t_train), (x_test, t_test))``.

Every download goes through one mechanism (:mod:`fastnn.datasets._fetch`: pooch, the ``data`` extra, with a
mirror list and MD5s); files already present are read without it and without any request.

* :func:`load_mnist` -- MNIST from the standard IDX files, downloaded (MD5-checked) and cached when missing.
* :func:`load_tinyshakespeare`, :func:`load_ptb` -- text corpora as DLFS-2's ``corpus, word_to_id, id_to_word``,
  downloaded the same way.
* :func:`load_digits` -- scikit-learn's 8x8 digits, no download (``examples`` extra).
* :func:`read_idx` -- the IDX reader behind ``load_mnist``.
"""

from ._optional import MissingDependencyError
from .digits import load_digits
from .idx import parse_idx, read_idx
from .mnist import DEFAULT_MIRRORS, MNIST_FILES, DownloadError, default_data_dir, download_mnist, load_mnist
from .ptb import PTB_FILES, load_ptb
from .tinyshakespeare import TINYSHAKESPEARE_FILES, load_tinyshakespeare

__all__ = [
    "DEFAULT_MIRRORS",
    "MNIST_FILES",
    "DownloadError",
    "MissingDependencyError",
    "PTB_FILES",
    "TINYSHAKESPEARE_FILES",
    "default_data_dir",
    "download_mnist",
    "load_digits",
    "load_mnist",
    "load_ptb",
    "load_tinyshakespeare",
    "parse_idx",
    "read_idx",
]
