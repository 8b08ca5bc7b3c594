"""Tiny Shakespeare: the character-level language-model corpus (``input.txt``, 1,115,394 characters, 65 distinct).

The file is read from ``data_dir`` (default ``$FASTNN_DATA/tinyshakespeare``, else the user cache directory, as
for MNIST) and downloaded, MD5-checked, when missing: mirrors from ``urls=``, else the comma-separated base URLs
in ``$FASTNN_TINYSHAKESPEARE_URLS``, else :data:`DEFAULT_MIRRORS` (see :mod:`fastnn.datasets._fetch`). A copy put
there by hand is used as it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .. import _validate
from . import _fetch

__all__ = ["load_tinyshakespeare", "TINYSHAKESPEARE_FILES", "DEFAULT_MIRRORS"]

#: The file and its MD5 (the char-rnn repository's ``data/tinyshakespeare/input.txt``).
TINYSHAKESPEARE_FILES: dict[str, str] = {"input.txt": "6fb458f1232090904fb40fe944165e91"}

#: Karpathy's char-rnn repository, where the corpus was published, directly and through a CDN.
DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/",
    "https://cdn.jsdelivr.net/gh/karpathy/char-rnn@master/data/tinyshakespeare/",
)

_FILES = _fetch.Files("tinyshakespeare", TINYSHAKESPEARE_FILES, __name__, "DEFAULT_MIRRORS",
                      "FASTNN_TINYSHAKESPEARE_URLS")
#: Fraction of the text (from its start) in the "train" split; "valid" is the rest (nanoGPT's and char-rnn's
#: common 90/10 split).
TRAIN_FRACTION = 0.9
_SPLITS = ("train", "valid", "all")


def load_tinyshakespeare(split: str = "all", *, data_dir: str | os.PathLike | None = None, download: bool = True,
                         urls: str | Sequence[str] | None = None,
                         progress: bool | None = None) -> tuple[np.ndarray, dict[str, int], dict[int, str]]:
    """Tiny Shakespeare as character ids, in the form of DLFS-2's ``load_data``: ``corpus, char_to_id, id_to_char``.

    Parameters
    ----------
    split : {"all", "train", "valid"}
        The whole text, its first 90% (``int(0.9 * len(text))`` characters), or the remaining 10%. ``"val"`` is
        taken for ``"valid"``, as DLFS-2 does.
    data_dir : str or os.PathLike, optional
        Folder of ``input.txt`` (default ``$FASTNN_DATA/tinyshakespeare``, else the user cache directory).
    download : bool
        Fetch the file when it is missing (MD5-checked). With False, a missing file raises FileNotFoundError.
    urls : str or sequence of str, optional
        Mirror base URLs tried in order (default ``$FASTNN_TINYSHAKESPEARE_URLS``, else :data:`DEFAULT_MIRRORS`).
    progress : bool, optional
        Download progress bar (default: when tqdm is installed and stderr is a terminal).

    Returns
    -------
    corpus : numpy.ndarray of int64, shape (n,)
        The characters of the split as ids.
    char_to_id : dict of str -> int
        Vocabulary of the whole text (whatever the split, so ids agree across splits): the distinct characters in
        sorted order, ids 0, 1, ... (65 characters; ``"\\n"`` is 0, ``" "`` is 1).
    id_to_char : dict of int -> str
        The inverse mapping.

    Raises
    ------
    DownloadError
        The file is missing and no mirror delivered it intact (the message lists the URLs tried and what to do).
    FileNotFoundError
        The file is missing and ``download=False``.
    ValueError
        The file is empty or not UTF-8 text.
    """
    where = "load_tinyshakespeare"
    split = _check_split(split, _SPLITS, where)
    download = _validate.flag(download, where, "download")
    path = _fetch.ensure(_FILES, ["input.txt"], data_dir, urls, progress, download, where)["input.txt"]
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where}: {path} must be UTF-8 text, got a byte {raw[exc.start]:#x} at offset "
                         f"{exc.start}; delete it to download it again") from exc
    if not text:
        raise ValueError(f"{where}: {path} must hold the corpus, got an empty file; delete it to download it again")
    chars = sorted(set(text))
    char_to_id = {c: i for i, c in enumerate(chars)}
    id_to_char = dict(enumerate(chars))
    if raw.isascii():  # one byte per character: a table lookup instead of a Python loop over a million characters
        table = np.zeros(128, np.int64)
        table[[ord(c) for c in chars]] = np.arange(len(chars))
        corpus = table[np.frombuffer(raw, np.uint8)]
    else:
        corpus = np.array([char_to_id[c] for c in text], np.int64)
    cut = int(TRAIN_FRACTION * len(corpus))
    corpus = {"all": corpus, "train": corpus[:cut], "valid": corpus[cut:]}[split]
    return corpus, char_to_id, id_to_char


def _check_split(split: object, splits: tuple[str, ...], where: str) -> str:
    """``split`` as one of ``splits``; DLFS-2's ``"val"`` means ``"valid"``."""
    if not isinstance(split, str):
        raise TypeError(f"{where}: split must be one of {', '.join(map(repr, splits))}, got "
                        f"{type(split).__name__} {split!r}")
    if split == "val":
        split = "valid"
    if split not in splits:
        raise ValueError(f"{where}: split must be one of {', '.join(map(repr, splits))}, got {split!r}")
    return split
