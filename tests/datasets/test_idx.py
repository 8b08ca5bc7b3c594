"""fastnn.datasets.idx on synthetic IDX files: every type code, gzip or not, and every kind of damage."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from fastnn.datasets.idx import IDX_DTYPES, parse_idx, read_idx


def idx_bytes(array: np.ndarray, code: int | None = None) -> bytes:
    """Encode ``array`` as IDX (big-endian), as the MNIST files are written."""
    if code is None:
        code = next(c for c, d in IDX_DTYPES.items() if d.newbyteorder("=") == array.dtype)
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_DTYPES[code]).tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5,), (3, 4, 2), (2, 1, 3, 3), (0, 28, 28)])
def test_round_trip_all_types(tmp_path, dtype, shape):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    else:
        a = rng.standard_normal(shape).astype(dtype)
    data = idx_bytes(a)
    out = parse_idx(data)
    assert out.dtype == np.dtype(dtype)  # native byte order
    assert out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, a)
    out[...] = 0  # writeable, not a view of the bytes
    raw, gz = tmp_path / "a-idx", tmp_path / "a-idx.gz"
    raw.write_bytes(data)
    gz.write_bytes(gzip.compress(data))
    np.testing.assert_array_equal(read_idx(raw), a)
    np.testing.assert_array_equal(read_idx(gz), a)


def test_big_endian_values_are_decoded():
    data = bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + bytes([0, 0, 1, 0]) + bytes([0xFF, 0xFF, 0xFF, 0xFE])
    np.testing.assert_array_equal(parse_idx(data), np.array([256, -2], np.int32))


def test_mnist_like_header():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    data = idx_bytes(images)
    assert int.from_bytes(data[:4], "big") == 2051  # the magic number of MNIST's image files
    assert int.from_bytes(idx_bytes(np.zeros(3, np.uint8))[:4], "big") == 2049  # labels


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"", "must start with a 4-byte IDX magic number, got 0 bytes"),
        (GOOD[:3], "got 3 bytes"),
        (b"\x1f\x8b\x08\x03" + GOOD[4:], "must start with two zero bytes (IDX magic), got 1f8b0803"),
        (b"\x00\x01" + GOOD[2:], "must start with two zero bytes"),
        (GOOD[:2] + b"\x0a" + GOOD[3:], "must have an IDX type code in {0x8, 0x9, 0xb, 0xc, 0xd, 0xe}, got 0xa"),
        (GOOD[:3] + b"\x00", "must have at least 1 dimension, got 0"),
        (GOOD[:10], "must have a 16-byte header for 3 dimensions, got 10 bytes (truncated file)"),
        (GOOD[:-1], "must hold 24 data bytes for shape (2, 3, 4) of uint8, got 23 (truncated file)"),
        (GOOD + b"\x00", "got 25 (trailing bytes after the data)"),
        (GOOD[:16], "must hold 24 data bytes for shape (2, 3, 4) of uint8, got 0 (truncated file)"),
    ],
)
def test_corrupt_bytes_are_refused(data, fragment):
    with pytest.raises(ValueError) as info:
        parse_idx(data, name="f.idx", where="test")
    assert str(info.value).startswith("test: f.idx ")
    assert fragment in str(info.value)


def test_truncated_gzip_file(tmp_path):
    big = idx_bytes(np.random.default_rng(0).integers(0, 255, (50, 28, 28)).astype(np.uint8))
    packed = gzip.compress(big)
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match=r"read_idx: .*cut.gz must be a complete gzip file, got a corrupt or "
                                         r"truncated one \(EOFError"):
        read_idx(path)


def test_gzip_crc_mismatch(tmp_path):
    packed = bytearray(gzip.compress(GOOD))
    packed[-8] ^= 0xFF  # the stored CRC32 of the uncompressed data
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(ValueError, match="must be a complete gzip file.*delete it and download it again"):
        read_idx(path)


def test_gzip_holding_a_corrupt_idx(tmp_path):
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(GOOD[:-5]))
    with pytest.raises(ValueError, match=r"short.gz must hold 24 data bytes .* got 19 \(truncated file\)"):
        read_idx(path)


def test_missing_file_and_bad_type(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.gz")
    with pytest.raises(TypeError, match="parse_idx: data must be bytes, got str"):
        parse_idx("0000")
