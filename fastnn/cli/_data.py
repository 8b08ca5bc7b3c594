"""The data sets the command line trains on, by name."""

from __future__ import annotations

import numpy as np

from . import CLIError

#: Names accepted by ``--dataset`` and what they are.
DATASETS = {
    "digits": "scikit-learn's 8x8 digits: 1,437 training / 360 test images, no download",
    "mnist": "MNIST: 60,000 training / 10,000 test images, downloaded once (~11 MB)",
    "mnist-small": "the 10,000 MNIST test images split 8,000 training / 2,000 test (a 1.7 MB download)",
}

Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def load(name: str, *, flatten: bool, dtype: np.dtype, seed: int = 0, data_dir: str | None = None) -> Split:
    """``((x_train, t_train), (x_test, t_test))`` of data set ``name``, images as ``dtype`` in [0, 1].

    Images are (N, 1, H, W) unless ``flatten``; labels are uint8 class indices. Download and file errors become
    :class:`CLIError` (their messages say what to do).
    """
    from ..datasets import DownloadError, load_digits, load_mnist

    try:
        if name == "digits":
            (x, t), (xt, tt) = load_digits(flatten=flatten, seed=seed)
        elif name == "mnist":
            (x, t), (xt, tt) = load_mnist(flatten=flatten, data_dir=data_dir)
        elif name == "mnist-small":
            ((x_all, t_all),) = load_mnist(flatten=flatten, data_dir=data_dir, subsets=("test",))
            (x, t), (xt, tt) = (x_all[:8000], t_all[:8000]), (x_all[8000:], t_all[8000:])
        else:
            raise CLIError(f"unknown data set {name!r}: choose one of {', '.join(DATASETS)}")
    except (DownloadError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    return (x.astype(dtype, copy=False), t), (xt.astype(dtype, copy=False), tt)
