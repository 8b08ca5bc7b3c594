"""scikit-learn's 8x8 handwritten digits (1,797 images, shipped inside scikit-learn), in the book's loader form.

A real handwritten-digit set that needs no download: the quick data set of ``python -m fastnn demo`` and of the
tests. Needs the ``examples`` extra (scikit-learn), imported only when called.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib

import numpy as np

from .. import _validate
from ._optional import require

__all__ = ["load_digits"]


def _read_digits(where: str) -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 images (N, 8, 8) and labels (N,) uint8, read from the file scikit-learn ships.

    The file (``sklearn/datasets/data/digits.csv.gz``: 64 pixels then the label per row) is located without
    importing scikit-learn, whose import (scipy included) took 1.3 s of the demo's 2.4 s warm start here; where it
    is not at that place, ``sklearn.datasets.load_digits`` reads it.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is not None and spec.origin is not None:
        path = pathlib.Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
            return table[:, :64].reshape(-1, 8, 8), table[:, 64]
    bunch = require("sklearn.datasets", where).load_digits()
    return np.asarray(bunch.images).astype(np.uint8), np.asarray(bunch.target).astype(np.uint8)


def load_digits(normalize: bool = True, flatten: bool = True, one_hot_label: bool = False, test_size: float = 0.2,
                seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load the 8x8 digits, split at random into a training and a test set.

    Parameters
    ----------
    normalize : bool
        Pixels as float32 in [0, 1] (value / 16). Otherwise uint8 in [0, 16] (the raw ink counts).
    flatten : bool
        Images as rows of 64 values, shape (N, 64). Otherwise (N, 1, 8, 8).
    one_hot_label : bool
        Labels as float32 one-hot rows (N, 10). Otherwise uint8 class indices (N,), as ``load_mnist``.
    test_size : float
        Fraction of the 1,797 images held out, in (0, 1); the test set has ``ceil(test_size * 1797)`` images.
    seed : int
        Seed of the shuffle (``np.random.default_rng(seed)``): same seed, same split.

    Returns
    -------
    ((x_train, t_train), (x_test, t_test))
        As ``load_mnist``; with the default test_size, 1,437 training and 360 test images.

    Raises
    ------
    fastnn.datasets.MissingDependencyError
        scikit-learn is not installed (an ImportError saying ``pip install "fastnn[examples]"``).
    """
    where = "load_digits"
    normalize = _validate.flag(normalize, where, "normalize")
    flatten = _validate.flag(flatten, where, "flatten")
    one_hot_label = _validate.flag(one_hot_label, where, "one_hot_label")
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float, np.integer, np.floating)) or not (
            0.0 < float(test_size) < 1.0):
        raise ValueError(f"{where}: test_size must be a fraction in (0, 1), got {test_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{where}: seed must be an int >= 0, got {seed!r}")
    images, labels = _read_digits(where)
    n = images.shape[0]
    n_test = math.ceil(float(test_size) * n)
    if not 0 < n_test < n:
        raise ValueError(f"{where}: test_size must leave both sets non-empty, got {test_size!r}")
    order = np.random.default_rng(int(seed)).permutation(n)
    x = images.astype(np.float32) / np.float32(16.0) if normalize else images.astype(np.uint8)
    x = x.reshape(n, 64) if flatten else x.reshape(n, 1, 8, 8)
    t = np.eye(10, dtype=np.float32)[labels] if one_hot_label else labels
    test, train = order[:n_test], order[n_test:]
    return (x[train], t[train]), (x[test], t[test])
