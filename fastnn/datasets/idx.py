"""A small reader for the IDX file format of MNIST (and Fashion-MNIST, EMNIST, KMNIST).

An IDX file is a 4-byte magic number -- two zero bytes, a type code, the number of dimensions -- then each
dimension as a big-endian uint32, then the data in C order, big-endian. The files are usually gzip-compressed.
Format: http://yann.lecun.com/exdb/mnist/ (bottom of the page).

Everything is checked before it is trusted: magic, type code, dimensions, and that the data is exactly as long
as the dimensions say. A truncated, corrupt or foreign file raises :class:`ValueError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

__all__ = ["read_idx", "parse_idx", "IDX_DTYPES"]

#: IDX type codes and the big-endian dtypes they stand for.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


def parse_idx(data: bytes, name: str = "<bytes>", where: str = "parse_idx") -> np.ndarray:
    """Parse the (already decompressed) bytes of an IDX file.

    Parameters
    ----------
    data : bytes
        The whole file.
    name : str
        What to call the data in error messages (usually the file path).
    where : str
        Function name at the start of error messages.

    Returns
    -------
    ndarray
        Of the shape the header gives and the native-endian version of its type (uint8 for MNIST); a fresh,
        writeable array.

    Raises
    ------
    ValueError
        Bad magic, unknown type code, zero dimensions, or data shorter or longer than the header says.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{where}: data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 4:
        raise ValueError(f"{where}: {name} must start with a 4-byte IDX magic number, got {len(data)} bytes "
                         "(truncated or empty file)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{where}: {name} must start with two zero bytes (IDX magic), got {data[:4].hex()} "
                         "(not an IDX file, or still compressed)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{where}: {name} must have an IDX type code in "
                         f"{{{', '.join(hex(c) for c in IDX_DTYPES)}}}, got {hex(code)}")
    if ndim == 0:
        raise ValueError(f"{where}: {name} must have at least 1 dimension, got 0")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{where}: {name} must have a {header}-byte header for {ndim} dimensions, got "
                         f"{len(data)} bytes (truncated file)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated file" if got < expected else "trailing bytes after the data"
        raise ValueError(f"{where}: {name} must hold {expected} data bytes for shape {dims} of {dtype.name}, got "
                         f"{got} ({what})")
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # a native-endian, writeable copy


def read_idx(path: str | os.PathLike, where: str = "read_idx") -> np.ndarray:
    """Read an IDX file, gzip-compressed (detected by its content, not its name) or not.

    Parameters
    ----------
    path : str or os.PathLike
        The file (``train-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte``, ...).
    where : str
        Function name at the start of error messages.

    Returns
    -------
    ndarray
        See :func:`parse_idx`.

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        The file is truncated, its gzip stream is corrupt (CRC or length check), or its IDX content is invalid.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; EOFError: cut short
            raise ValueError(f"{where}: {path} must be a complete gzip file, got a corrupt or truncated one "
                             f"({type(exc).__name__}: {exc}); delete it and download it again") from exc
    return parse_idx(raw, name=path, where=where)
