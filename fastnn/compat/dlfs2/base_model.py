"""Deep Learning from Scratch 2's ``common/base_model.py``: ``BaseModel`` with ``save_params``/``load_params``.

The book's semantics are kept: every array of ``self.params`` is stored in float16, in list order, and loading
converts to float32 and writes into the existing arrays (``param[...] = saved``), so the layers, the optimizer and
tied weights keep seeing the same arrays. The file is an ``.npz`` archive (keys ``'0'``, ``'1'`` ... in list
order; :func:`fastnn.checkpoint.save_arrays`, written atomically), not a pickle: loading it cannot run code. The
default file name is the book's, ``<ClassName>.pkl``. A pickle written by the book's own ``save_params`` is read
only with ``load_params(..., allow_pickle=True)`` (through fastnn's restricted unpickler). Everything is checked
(count, shapes) before the first array is written.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ... import _validate, checkpoint

__all__ = ["BaseModel"]


class BaseModel:
    """Base class of the book's models: ``params`` and ``grads`` lists, ``forward``/``backward`` to override."""

    def __init__(self) -> None:
        self.params, self.grads = None, None

    def forward(self, *args: Any) -> Any:
        raise NotImplementedError

    def backward(self, *args: Any) -> Any:
        raise NotImplementedError

    def _file(self, file_name: Any) -> str:
        if file_name is None:
            file_name = self.__class__.__name__ + '.pkl'
        if not isinstance(file_name, (str, os.PathLike)):
            _validate.fail(f"{type(self).__name__}.save_params", "file_name", "a path",
                           _validate.describe(file_name), TypeError)
        return os.fspath(file_name).replace('/', os.sep)

    def save_params(self, file_name: str | os.PathLike | None = None) -> None:
        """Write ``self.params`` in float16 to ``file_name`` (default ``<ClassName>.pkl``) as an ``.npz`` archive."""
        checkpoint.save_arrays(self._file(file_name),
                               {str(i): np.asarray(p).astype(np.float16) for i, p in enumerate(self.params)})

    def load_params(self, file_name: str | os.PathLike | None = None, *, allow_pickle: bool = False) -> None:
        """Read what :meth:`save_params` wrote into the existing arrays of ``self.params`` (as float32, the book's
        ``'f'``), after checking that the file holds one array of the right shape per parameter."""
        where = f"{type(self).__name__}.load_params"
        path = self._file(file_name)
        if not os.path.exists(path):
            raise OSError('No file: ' + path)  # the book's IOError
        expected = {str(i): (tuple(p.shape), np.dtype(np.float16)) for i, p in enumerate(self.params)}
        if allow_pickle and checkpoint._is_pickle(path):
            saved = _book_pickle(path, where)
            arrays = {str(i): a for i, a in enumerate(saved)}
            checkpoint._match({k: a.astype(np.float16) for k, a in arrays.items()}, expected, where, path)
        else:
            arrays = checkpoint._load(path, expected, where, allow_pickle=False)
        for i, param in enumerate(self.params):
            param[...] = arrays[str(i)].astype('f')


def _book_pickle(path: str, where: str) -> list[np.ndarray]:
    """The book's file: a pickled list of float16 arrays, read with fastnn's restricted unpickler."""
    try:
        with open(path, "rb") as f:
            data = checkpoint._ArrayUnpickler(f).load()
    except Exception as exc:  # noqa: BLE001 -- unpickling damaged data raises about any exception type
        raise ValueError(f"{where}: the file {path!r} must be the book's pickled list of arrays, got an unreadable "
                         f"or refused pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, list) or not all(isinstance(a, np.ndarray) and not a.dtype.hasobject for a in data):
        _validate.fail(where, f"the file {path!r}", "the book's pickled list of arrays", type(data).__name__)
    return data
