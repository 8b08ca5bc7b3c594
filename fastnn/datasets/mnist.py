"""MNIST: the book's ``load_mnist``, reading the four standard IDX files, downloading them when missing.

Where the files live
    ``data_dir`` if given, else ``$FASTNN_DATA/mnist``, else the user cache directory
    (``$XDG_CACHE_HOME/fastnn/mnist`` or ``~/.cache/fastnn/mnist`` on Linux, ``~/Library/Caches/fastnn/mnist`` on
    macOS, ``%LOCALAPPDATA%\\fastnn\\Cache\\mnist`` on Windows). Files put there by hand are used as they are,
    gzip-compressed (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``).

Downloading
    Each missing file is fetched, MD5-checked and put in place by :mod:`fastnn.datasets._fetch` (pooch, the
    ``data`` extra), from the first mirror that serves it intact: mirrors are tried in order (``urls=`` argument,
    else the comma-separated base URLs in ``$FASTNN_MNIST_URLS``, else :data:`DEFAULT_MIRRORS`). A failed,
    interrupted or corrupted download never leaves a file that looks valid; when every mirror fails,
    :class:`DownloadError` names the file, every URL tried with what went wrong, and what to do. Reading files
    that are present needs no pooch and makes no request.

Loading only part of MNIST
    ``subsets=("test",)`` reads (and downloads) only the two test files and returns ``((x_test, t_test),)``: one
    ``(x, t)`` pair per requested subset, in the order asked. The default ``("train", "test")`` returns the book's
    ``((x_train, t_train), (x_test, t_test))``.
"""

from __future__ import annotations

import os
import pathlib
import pickle
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _validate
from . import _fetch
from ._fetch import DownloadError
from .idx import read_idx

__all__ = ["load_mnist", "download_mnist", "default_data_dir", "mirror_urls", "DownloadError", "MNIST_FILES",
           "DEFAULT_MIRRORS"]

#: The four files: key -> (file name, published MD5 of the .gz file).
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train_img": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_label": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_img": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    "test_label": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
}

#: Public mirrors of the original files (the original site often refuses scripted downloads, so it comes last).
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_FILES = _fetch.Files("mnist", dict(MNIST_FILES.values()), __name__, "DEFAULT_MIRRORS", "FASTNN_MNIST_URLS")
_SUBSETS = ("train", "test")
_IMG_NDIM, _LABEL_NDIM = 3, 1  # idx3 images (N, 28, 28), idx1 labels (N,)


def default_data_dir() -> pathlib.Path:
    """Where MNIST is kept when ``data_dir`` is not given: ``$FASTNN_DATA/mnist`` or the user cache directory."""
    return _fetch.default_data_dir("mnist")


def mirror_urls(urls: str | Sequence[str] | None = None, where: str = "mirror_urls") -> list[str]:
    """Base URLs to try, in order: ``urls`` (a sequence, or one comma-separated str), else ``$FASTNN_MNIST_URLS``,
    else :data:`DEFAULT_MIRRORS`. Each ends with ``/`` so a file name can be appended."""
    return _fetch.mirror_urls(urls, _FILES.env, DEFAULT_MIRRORS, where)


def _check_subsets(subsets: Any, where: str) -> tuple[str, ...]:
    if isinstance(subsets, str) or not isinstance(subsets, Sequence):
        raise TypeError(f"{where}: subsets must be a tuple of 'train' and/or 'test', got {subsets!r}")
    subsets = tuple(subsets)
    if not subsets or len(set(subsets)) != len(subsets) or any(s not in _SUBSETS for s in subsets):
        raise ValueError(f"{where}: subsets must be a non-empty tuple of distinct 'train' / 'test', got {subsets!r}")
    return subsets


def download_mnist(data_dir: str | os.PathLike | None = None, *, subsets: Sequence[str] = _SUBSETS,
                   urls: str | Sequence[str] | None = None,
                   progress: bool | None = None) -> dict[str, pathlib.Path]:
    """Make sure the MNIST files of ``subsets`` are in ``data_dir``, downloading the missing ones.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        See the module docstring for the default.
    subsets : tuple of {"train", "test"}
        Which files: "train" = train-images + train-labels, "test" = t10k-images + t10k-labels.
    urls : str or sequence of str, optional
        Base URLs of mirrors, tried in order (default: ``$FASTNN_MNIST_URLS``, else :data:`DEFAULT_MIRRORS`).
    progress : bool, optional
        Show a tqdm progress bar per file (default: when tqdm is installed and stderr is a terminal).

    Returns
    -------
    dict of str -> pathlib.Path
        ``{"test_img": path, "test_label": path, ...}`` for the requested subsets. Files already present are not
        downloaded again (no network access at all when every file is there).

    Raises
    ------
    DownloadError
        A missing file could not be fetched intact from any mirror.
    """
    return _ensure_files("download_mnist", data_dir, subsets, urls, progress, download=True)


def _ensure_files(where: str, data_dir: Any, subsets: Any, urls: Any, progress: Any,
                  download: bool) -> dict[str, pathlib.Path]:
    subsets = _check_subsets(subsets, where)
    keys = [f"{s}_{kind}" for s in subsets for kind in ("img", "label")]
    # A file put there by hand may also be the uncompressed one (train-images-idx3-ubyte).
    paths = _fetch.ensure(_FILES, [MNIST_FILES[k][0] for k in keys], data_dir, urls, progress, download, where,
                          local_names=lambda name: (name, name.removesuffix(".gz")))
    return {k: paths[MNIST_FILES[k][0]] for k in keys}


def _read_pair(img_path: pathlib.Path, label_path: pathlib.Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(img_path, where=where)
    labels = read_idx(label_path, where=where)
    if images.dtype != np.uint8 or images.ndim != _IMG_NDIM or images.shape[1:] != (28, 28):
        raise ValueError(f"{where}: {img_path} must hold uint8 images of shape (N, 28, 28), got "
                         f"{images.dtype} of shape {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != _LABEL_NDIM:
        raise ValueError(f"{where}: {label_path} must hold uint8 labels of shape (N,), got {labels.dtype} of shape "
                         f"{labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{where}: {label_path} must hold one label per image of {img_path} "
                         f"({images.shape[0]}), got {labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{where}: {label_path} must hold labels 0..9, got a {labels.max()}")
    return images, labels


def _read_pickle(pkl_file: Any, allow_pickle: bool, subsets: tuple[str, ...],
                 where: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if isinstance(pkl_file, bytes) or not isinstance(pkl_file, (str, os.PathLike)):
        raise TypeError(f"{where}: pkl_file must be a str or os.PathLike, got {type(pkl_file).__name__}")
    if not allow_pickle:
        raise ValueError(f"{where}: allow_pickle must be True to read {os.fspath(pkl_file)} (unpickling can run "
                         "arbitrary code: only for a file you made yourself), got False")
    with open(pkl_file, "rb") as f:
        dataset = pickle.load(f)  # noqa: S301 -- the caller opted in with allow_pickle=True
    if not isinstance(dataset, dict):
        raise ValueError(f"{where}: {os.fspath(pkl_file)} must hold the book's dict of arrays, got "
                         f"{type(dataset).__name__}")
    out = {}
    for subset in subsets:
        missing = [k for k in (f"{subset}_img", f"{subset}_label") if k not in dataset]
        if missing:
            raise ValueError(f"{where}: {os.fspath(pkl_file)} must hold the keys {subset}_img and {subset}_label, "
                             f"got keys {sorted(dataset)}")
        x = np.asarray(dataset[f"{subset}_img"])
        t = np.asarray(dataset[f"{subset}_label"])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 784 or t.shape != (x.shape[0],) or (
                t.dtype.kind not in "iu"):
            raise ValueError(f"{where}: {os.fspath(pkl_file)}[{subset}_img/_label] must be uint8 (N, 784) images "
                             f"and (N,) integer labels, got {x.dtype} {x.shape} and {t.dtype} {t.shape}")
        out[subset] = (x.reshape(-1, 28, 28), t.astype(np.uint8))
    return out


def _finish(images: np.ndarray, labels: np.ndarray, normalize: bool, flatten: bool,
            one_hot_label: bool) -> tuple[np.ndarray, np.ndarray]:
    n = images.shape[0]
    x = images.reshape(n, 784) if flatten else images.reshape(n, 1, 28, 28)
    if normalize:
        x = x.astype(np.float32)
        x /= np.float32(255.0)
    # float64 one-hot rows, as the book's _change_one_hot_label (np.zeros' default dtype)
    t = np.eye(10, dtype=np.float64)[labels] if one_hot_label else labels
    return x, t


def load_mnist(normalize: bool = True, flatten: bool = True, one_hot_label: bool = False, *,
               data_dir: str | os.PathLike | None = None, download: bool = True,
               urls: str | Sequence[str] | None = None, allow_pickle: bool = False,
               pkl_file: str | os.PathLike | None = None, progress: bool | None = None,
               subsets: Sequence[str] = _SUBSETS) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Load MNIST as Deep Learning from Scratch's ``dataset.mnist.load_mnist`` does.

    Parameters
    ----------
    normalize : bool
        Pixels as float32 in [0, 1] (value / 255). Otherwise uint8 in [0, 255], as the book.
    flatten : bool
        Images as rows of 784 values, shape (N, 784). Otherwise (N, 1, 28, 28) (N, C, H, W).
    one_hot_label : bool
        Labels as float64 one-hot rows (N, 10), as the book. Otherwise uint8 class indices (N,), as the book.
    data_dir : str or os.PathLike, optional
        Folder of the four IDX files (default ``$FASTNN_DATA/mnist``, else the user cache directory; see the module
        docstring).
    download : bool
        Fetch missing files (MD5-checked, see the module docstring). With False, a missing file raises
        FileNotFoundError.
    urls : str or sequence of str, optional
        Mirror base URLs tried in order (default ``$FASTNN_MNIST_URLS``, comma separated, else
        :data:`DEFAULT_MIRRORS`).
    allow_pickle : bool
        Must be True to read ``pkl_file`` (unpickling runs code from the file).
    pkl_file : str or os.PathLike, optional
        The book's ``mnist.pkl`` (a pickled dict ``train_img``, ``train_label``, ``test_img``, ``test_label``);
        when given, the IDX files are not used.
    progress : bool, optional
        Download progress bars (default: when tqdm is installed and stderr is a terminal).
    subsets : tuple of {"train", "test"}
        Which parts to load (and download), default both.

    Returns
    -------
    tuple of (x, t) pairs
        One pair per subset, in the order of ``subsets``: by default ``((x_train, t_train), (x_test, t_test))``
        with 60,000 and 10,000 samples; ``subsets=("test",)`` gives ``((x_test, t_test),)``.

    Raises
    ------
    DownloadError
        A missing file could not be fetched intact (the message lists the URLs tried and what to do).
    FileNotFoundError
        A file is missing and ``download=False``.
    ValueError
        A file is truncated or corrupt (delete it to download it again), or ``pkl_file`` without
        ``allow_pickle=True``.
    """
    where = "load_mnist"
    normalize = _validate.flag(normalize, where, "normalize")
    flatten = _validate.flag(flatten, where, "flatten")
    one_hot_label = _validate.flag(one_hot_label, where, "one_hot_label")
    download = _validate.flag(download, where, "download")
    allow_pickle = _validate.flag(allow_pickle, where, "allow_pickle")
    subsets = _check_subsets(subsets, where)
    if pkl_file is not None:
        raw = _read_pickle(pkl_file, allow_pickle, subsets, where)
    else:
        paths = _ensure_files(where, data_dir, subsets, urls, progress, download)
        raw = {s: _read_pair(paths[f"{s}_img"], paths[f"{s}_label"], where) for s in subsets}
    return tuple(_finish(*raw[s], normalize, flatten, one_hot_label) for s in subsets)
