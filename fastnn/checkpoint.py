"""Saving and loading named arrays (network parameters, optimizer state) as ``.npz`` files, safely.

* No pickle by default: object arrays are refused on save and on load, so loading a file cannot run code. The
  one exception is opt-in: a net's ``load_params(path, allow_pickle=True)`` also reads Deep Learning from
  Scratch's ``save_params`` format (a pickled dict of name -> ndarray, e.g. the book's ``ch07/params.pkl``),
  through an unpickler that builds NumPy arrays and dicts only (see :func:`_load`).
* Saving is atomic: the archive is written to a temporary file in the destination's directory, flushed and
  fsync'ed, then renamed over the destination with :func:`os.replace`. A crash or an error mid-write leaves
  the previous file untouched and no temporary file behind.
* Loading can check every name, shape and dtype against what the caller expects, so a checkpoint of another
  network (or another dtype) is refused with a message saying what differs, instead of failing later inside a
  kernel.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _io, _validate

__all__ = ["save_arrays", "load_arrays"]

#: ``expected`` entries of :func:`load_arrays`: a shape (``None`` entries match any size) and a dtype.
Expected = Mapping[str, tuple[tuple[int | None, ...], Any]]


def _check_path(path: Any, where: str) -> str:
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        _validate.fail(where, "path", "a str or os.PathLike", f"{type(path).__name__} {path!r}", TypeError)
    path = os.fspath(path)
    if not path:
        _validate.fail(where, "path", "a non-empty path", "''")
    return path


def _check_arrays(arrays: Any, where: str) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping):
        _validate.fail(where, "arrays", "a dict of name -> ndarray", type(arrays).__name__, TypeError)
    checked: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key:
            _validate.fail(where, "every key of arrays", "a non-empty str", repr(key), TypeError)
        if not isinstance(value, np.ndarray):
            _validate.fail(where, f"arrays[{key!r}]", "a NumPy ndarray", type(value).__name__, TypeError)
        if value.dtype.hasobject:
            # Object arrays could only be stored with pickle, which load_arrays refuses to read.
            _validate.fail(where, f"arrays[{key!r}]", "an array of a plain (non-object) dtype",
                           f"dtype {value.dtype}", TypeError)
        checked[key] = value
    return checked


def save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write named arrays to an uncompressed ``.npz`` archive at ``path``, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        Destination file, written exactly there (no ``.npz`` suffix is added). Its directory must exist.
        An existing file is replaced only once the new archive is complete and on disk.
    arrays : dict of str -> ndarray
        Arrays of any shape and any non-object dtype (dtypes are kept: float32 stays float32).

    Raises
    ------
    TypeError
        ``arrays`` is not a mapping of non-empty str to ndarray, or holds an object array.
    OSError
        Writing failed; the previous file at ``path`` (if any) is unchanged and no temporary file is left.

    Notes
    -----
    The archive is what ``np.savez(path, **arrays)`` writes (readable by ``np.load``), built here with
    :mod:`zipfile` directly so that no key can collide with ``np.savez``'s own argument names.
    """
    where = "save_arrays"
    path = _check_path(path, where)
    arrays = _check_arrays(arrays, where)
    with _io.atomic_write(path) as f:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, value in arrays.items():
                with zf.open(key + ".npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(member, value, allow_pickle=False)


def _describe_shape(shape: tuple[int | None, ...]) -> str:
    inner = ", ".join("any" if s is None else str(s) for s in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def _check_expected(expected: Any, where: str) -> dict[str, tuple[tuple[int | None, ...], np.dtype]]:
    if not isinstance(expected, Mapping):
        _validate.fail(where, "expected", "a dict of name -> (shape, dtype) or None", type(expected).__name__,
                       TypeError)
    out = {}
    for key, spec in expected.items():
        if not isinstance(spec, tuple) or len(spec) != 2:
            _validate.fail(where, f"expected[{key!r}]", "a (shape, dtype) pair", repr(spec), TypeError)
        shape, dtype = spec
        if not isinstance(shape, tuple) or not all(
                s is None or (isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0)
                for s in shape):
            _validate.fail(where, f"expected[{key!r}] shape", "a tuple of sizes >= 0 or None", repr(shape),
                           TypeError)
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            _validate.fail(where, f"expected[{key!r}] dtype", "a NumPy dtype", repr(dtype), TypeError)
        out[key] = (tuple(None if s is None else int(s) for s in shape), dtype)
    return out


def load_arrays(path: str | os.PathLike, expected: Expected | None = None,
                where: str = "load_arrays") -> dict[str, np.ndarray]:
    """Read the arrays of an ``.npz`` archive written by :func:`save_arrays` (or ``np.savez``), without pickle.

    Parameters
    ----------
    path : str or os.PathLike
        The archive.
    expected : dict of str -> (shape, dtype), optional
        What the archive must hold: exactly these names, each with this shape (a tuple; ``None`` entries match
        any size) and this dtype. ``None`` (default) accepts whatever is there.
    where : str
        Name used at the start of error messages (e.g. ``"SimpleConvNet.load_params"``).

    Returns
    -------
    dict of str -> ndarray
        The arrays, fully read into memory (the file is closed), in archive order.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not a readable ``.npz`` archive, holds an object (pickled) array, or does not match
        ``expected``: the message names the key, what was expected and what came.
    """
    return _load(path, expected, where, allow_pickle=None)


#: The callables a pickled dict of NumPy arrays refers to (ndarray.__reduce_ex__ of NumPy 1 and 2, protocols 2-5;
#: protocol 2 encodes bytes with _codecs.encode), and OrderedDict for a dict saved as one. Nothing else is built.
_PICKLE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"), ("collections", "OrderedDict"),
})

#: The first byte of a pickle of protocol 2 or later (the PROTO opcode; Python 3 writes 3 or later by default).
#: An .npz archive starts with b"PK", an .npy file with b"\x93NUMPY".
_PICKLE_MAGIC = b"\x80"


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain data, dicts and NumPy arrays; any other global is refused before it is looked up."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not part of a dict of NumPy arrays")


def _is_pickle(path: str) -> bool:
    """Whether the file starts like a pickle rather than like an .npz archive or an .npy file."""
    try:
        with open(path, "rb") as f:
            head = f.read(1)
    except FileNotFoundError:
        raise
    except OSError:
        return False  # np.load reports an unreadable path (a directory, no permission) as for any archive
    return head == _PICKLE_MAGIC


def _load_pickle(path: str, where: str) -> dict[str, np.ndarray]:
    """The book's ``save_params`` file: a pickled dict of name -> ndarray (read fully, the file closed)."""
    book = "a pickled dict of name -> ndarray (the book's save_params format)"
    try:
        with open(path, "rb") as f:
            data = _ArrayUnpickler(f).load()
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 -- unpickling damaged data raises about any exception type
        raise ValueError(f"{where}: the file {path!r} must be {book}, got an unreadable or refused pickle "
                         f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        _validate.fail(where, f"the file {path!r}", book, f"a pickled {type(data).__name__}")
    for key, value in data.items():
        if not isinstance(key, str) or not key:
            _validate.fail(where, f"every key in {path!r}", "a non-empty str", repr(key), ValueError)
        if not isinstance(value, np.ndarray) or value.dtype.hasobject:
            got = f"dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__
            _validate.fail(where, f"{key!r} in {path!r}", "an ndarray of a plain (non-object) dtype", got)
    return dict(data)


def _load(path: Any, expected: Expected | None, where: str, *, allow_pickle: bool | None) -> dict[str, np.ndarray]:
    """:func:`load_arrays`, plus the book's pickles when ``allow_pickle`` is True.

    ``allow_pickle``: None for callers without the option (:func:`load_arrays`); False for those with it
    (``load_params``), whose error for a pickle then says how to opt in; True reads a pickle with
    :class:`_ArrayUnpickler`, then checks it against ``expected`` as an archive. An .npz archive is read the same
    way whatever ``allow_pickle`` is (object arrays in it are always refused).
    """
    path = _check_path(path, where)
    spec = None if expected is None else _check_expected(expected, where)
    if allow_pickle is not None and _is_pickle(path):
        if not allow_pickle:
            _validate.fail(where, f"the file {path!r}", "an .npz archive written by save_params (a pickle is read "
                           "only with allow_pickle=True: unpickling can run code, so pass it for a file you trust)",
                           "a pickle (the book's save_params format)")
        arrays = _load_pickle(path, where)
        if spec is not None:
            _match(arrays, spec, where, path)
        return arrays
    arrays: dict[str, np.ndarray] = {}
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            _validate.fail(where, f"the file {path!r}", "an .npz archive of named arrays", "a single .npy array")
        with archive:
            for key in archive.files:
                arrays[key] = archive[key]
    except FileNotFoundError:
        raise
    except ValueError as exc:
        if str(exc).startswith(where + ":"):
            raise
        # np.load says "Object arrays cannot be loaded when allow_pickle=False" or "Cannot load file ... as a
        # pickle" for pickled content, and raises other ValueErrors for damaged .npy headers.
        raise ValueError(f"{where}: the file {path!r} must be an .npz archive of plain arrays (no pickle), "
                         f"got an unreadable file or pickled data ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{where}: the file {path!r} must be a complete .npz archive, "
                         f"got an unreadable or truncated file ({type(exc).__name__}: {exc})") from exc
    if spec is not None:
        _match(arrays, spec, where, path)
    return arrays


def _match(arrays: dict[str, np.ndarray], spec: dict[str, tuple[tuple[int | None, ...], np.dtype]], where: str,
           path: str) -> None:
    missing = [k for k in spec if k not in arrays]
    extra = [k for k in arrays if k not in spec]
    if missing or extra:
        _validate.fail(where, f"the arrays in {path!r}", f"exactly the keys {sorted(spec)}",
                       f"missing {sorted(missing)}, unexpected {sorted(extra)}")
    for key, (shape, dtype) in spec.items():
        a = arrays[key]
        shape_ok = a.ndim == len(shape) and all(e is None or e == s for e, s in zip(shape, a.shape, strict=True))
        if not shape_ok or a.dtype != dtype:
            _validate.fail(where, f"{key!r} in {path!r}", f"of shape {_describe_shape(shape)} and dtype {dtype}",
                           f"shape {a.shape} and dtype {a.dtype}")
