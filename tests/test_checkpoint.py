"""fastnn.checkpoint: round trips, refusal of mismatched or unsafe files, atomic replacement."""

from __future__ import annotations

import os
import pathlib
import zipfile

import numpy as np
import pytest

from fastnn import checkpoint
from fastnn.checkpoint import load_arrays, save_arrays


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "W1": rng.standard_normal((30, 1, 5, 5)).astype(np.float32),
        "b1": np.zeros(30, np.float32),
        "W2": rng.standard_normal((4, 3)),  # float64 stays float64
        "step": np.array(7, np.int64),  # 0-d
        "empty": np.zeros((0, 4), np.float32),
        "file": np.arange(3, dtype=np.uint8),  # np.savez's own argument name: must not collide
        "fortran": np.asfortranarray(rng.standard_normal((3, 5)).astype(np.float32)),
    }


def test_round_trip_keeps_values_shapes_dtypes(tmp_path):
    arrays = _arrays()
    path = tmp_path / "ckpt.npz"
    save_arrays(path, arrays)
    loaded = load_arrays(path)
    assert list(loaded) == list(arrays)
    for k, a in arrays.items():
        assert loaded[k].dtype == a.dtype, k
        assert loaded[k].shape == a.shape, k
        np.testing.assert_array_equal(loaded[k], a)
    # The archive is a standard .npz numpy can read without pickle.
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["W1"], arrays["W1"])


def test_round_trip_with_expected_and_wildcards(tmp_path):
    arrays = _arrays()
    path = str(tmp_path / "c.npz")
    save_arrays(path, arrays)
    expected = {k: (a.shape, a.dtype) for k, a in arrays.items()}
    expected["W1"] = ((None, 1, 5, None), "float32")
    loaded = load_arrays(path, expected)
    np.testing.assert_array_equal(loaded["b1"], arrays["b1"])


def test_save_writes_exactly_the_path_given(tmp_path):
    save_arrays(tmp_path / "weights.bin", {"a": np.ones(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.bin"]
    np.testing.assert_array_equal(load_arrays(tmp_path / "weights.bin")["a"], [1.0, 1.0])


def test_save_does_not_modify_inputs(tmp_path):
    arrays = _arrays()
    copies = {k: a.copy() for k, a in arrays.items()}
    save_arrays(tmp_path / "c.npz", arrays)
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], copies[k])


@pytest.mark.parametrize(
    "expected, fragment",
    [
        ({"a": ((2, 3), np.float32), "b": ((4,), np.int64)},
         "'a' in '{p}' must be of shape (2, 3) and dtype float32, got shape (2, 3) and dtype float64"),
        ({"a": ((3, 2), np.float64), "b": ((4,), np.int64)},
         "'a' in '{p}' must be of shape (3, 2) and dtype float64, got shape (2, 3) and dtype float64"),
        ({"a": ((2, 3, 1), np.float64), "b": ((4,), np.int64)},
         "must be of shape (2, 3, 1) and dtype float64, got shape (2, 3)"),
        ({"a": ((2, 3), np.float64), "b": ((5,), np.int64)},
         "'b' in '{p}' must be of shape (5,) and dtype int64, got shape (4,) and dtype int64"),
        ({"a": ((2, 3), np.float64)},
         "the arrays in '{p}' must be exactly the keys ['a'], got missing [], unexpected ['b']"),
        ({"a": ((2, 3), np.float64), "b": ((4,), np.int64), "c": ((1,), np.float32)},
         "must be exactly the keys ['a', 'b', 'c'], got missing ['c'], unexpected []"),
    ],
)
def test_mismatch_is_refused_naming_key_expected_and_got(tmp_path, expected, fragment):
    path = tmp_path / "c.npz"
    save_arrays(path, {"a": np.zeros((2, 3)), "b": np.arange(4, dtype=np.int64)})
    with pytest.raises(ValueError) as info:
        load_arrays(path, expected, where="Net.load_params")
    msg = str(info.value)
    assert msg.startswith("Net.load_params: ")
    assert fragment.format(p=str(path)) in msg


def test_object_arrays_refused_on_save_and_load(tmp_path):
    bad = np.array([{"x": 1}], dtype=object)
    with pytest.raises(TypeError, match=r"save_arrays: arrays\['o'\] must be an array of a plain"):
        save_arrays(tmp_path / "o.npz", {"o": bad})
    assert list(tmp_path.iterdir()) == []
    np.savez(tmp_path / "pickled.npz", o=bad)  # what an unsafe writer produces
    with pytest.raises(ValueError, match="no pickle"):
        load_arrays(tmp_path / "pickled.npz")


def test_garbage_and_truncated_files_raise_valueerror(tmp_path):
    (tmp_path / "garbage.npz").write_bytes(b"not an archive at all")
    with pytest.raises(ValueError, match="load_arrays: the file"):
        load_arrays(tmp_path / "garbage.npz")
    good = tmp_path / "good.npz"
    save_arrays(good, {"a": np.arange(1000, dtype=np.float32)})
    data = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="load_arrays: the file"):
        load_arrays(tmp_path / "cut.npz")
    np.save(tmp_path / "single.npy", np.ones(3))
    with pytest.raises(ValueError, match="must be an .npz archive of named arrays, got a single .npy array"):
        load_arrays(tmp_path / "single.npy")


def test_missing_file_is_filenotfound(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_arrays(tmp_path / "nope.npz")


@pytest.mark.parametrize(
    "call, exc, fragment",
    [
        (lambda p: save_arrays(p, [np.ones(2)]), TypeError, "save_arrays: arrays must be a dict"),
        (lambda p: save_arrays(p, {"a": [1, 2]}), TypeError, "save_arrays: arrays['a'] must be a NumPy ndarray"),
        (lambda p: save_arrays(p, {1: np.ones(2)}), TypeError, "save_arrays: every key of arrays must be"),
        (lambda p: save_arrays(p, {"": np.ones(2)}), TypeError, "save_arrays: every key of arrays must be"),
        (lambda p: save_arrays(3, {"a": np.ones(2)}), TypeError, "save_arrays: path must be a str or os.PathLike"),
        (lambda p: load_arrays(p, {"a": (2, np.float32)}), TypeError, "expected['a'] shape must be a tuple"),
        (lambda p: load_arrays(p, {"a": ((2,), "nodtype")}), TypeError, "expected['a'] dtype must be a NumPy"),
        (lambda p: load_arrays(p, {"a": (2,)}), TypeError, "expected['a'] must be a (shape, dtype) pair"),
    ],
)
def test_bad_arguments(tmp_path, call, exc, fragment):
    path = tmp_path / "c.npz"
    if "load_arrays" in fragment or "expected" in fragment:
        save_arrays(path, {"a": np.ones(2)})
    before = sorted(tmp_path.iterdir())
    with pytest.raises(exc) as info:
        call(path)
    assert fragment in str(info.value)
    assert sorted(tmp_path.iterdir()) == before  # nothing written on bad input


def _boom(*args, **kwargs):
    raise OSError("disk full (simulated)")


@pytest.mark.parametrize("fail_at", ["write_array_second", "fsync", "replace", "interrupt"])
def test_failure_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "ckpt.npz"
    old = {"a": np.arange(5, dtype=np.float32)}
    save_arrays(path, old)
    old_bytes = path.read_bytes()

    real_write = np.lib.format.write_array
    calls = []

    def write_then_fail(fh, array, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            real_write(fh, array[: array.size // 2], *a, **k)  # half of the data reaches the temporary file
            if fail_at == "interrupt":
                raise KeyboardInterrupt
            raise OSError("disk full (simulated)")
        return real_write(fh, array, *a, **k)

    if fail_at in ("write_array_second", "interrupt"):
        monkeypatch.setattr(checkpoint.np.lib.format, "write_array", write_then_fail)
    elif fail_at == "fsync":
        monkeypatch.setattr(checkpoint.os, "fsync", _boom)
    else:
        monkeypatch.setattr(checkpoint.os, "replace", _boom)

    new = {"a": np.full(5, 9, np.float32), "b": np.ones(100_000, np.float32)}
    with pytest.raises(KeyboardInterrupt if fail_at == "interrupt" else OSError):
        save_arrays(path, new)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temporary file left
    assert path.read_bytes() == old_bytes
    monkeypatch.undo()
    np.testing.assert_array_equal(load_arrays(path)["a"], old["a"])


def test_failure_on_first_save_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint.os, "replace", _boom)
    with pytest.raises(OSError, match="simulated"):
        save_arrays(tmp_path / "new.npz", {"a": np.ones(3)})
    assert list(tmp_path.iterdir()) == []


def test_temp_file_is_created_beside_destination(tmp_path, monkeypatch):
    # os.replace is atomic only within one file system: the temporary file must live in the same directory.
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append((pathlib.Path(src).parent, pathlib.Path(dst).parent))
        return real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", spy)
    sub = tmp_path / "sub"
    sub.mkdir()
    save_arrays(sub / "c.npz", {"a": np.ones(1)})
    assert seen == [(sub, sub)]
    assert zipfile.is_zipfile(sub / "c.npz")
