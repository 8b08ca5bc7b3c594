"""fastnn.datasets.load_digits (scikit-learn's 8x8 digits) in the book's loader form."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from fastnn.datasets import MissingDependencyError, load_digits


@pytest.fixture
def sklearn_digits():
    datasets = pytest.importorskip("sklearn.datasets", reason="scikit-learn (examples extra) not installed")
    return datasets.load_digits()


def test_default_split_shapes_values(sklearn_digits):
    (x, t), (xt, tt) = load_digits()
    assert x.shape == (1437, 64) and xt.shape == (360, 64)
    assert x.dtype == np.float32 and t.dtype == np.uint8
    assert x.min() == 0.0 and x.max() == 1.0
    # The split is a permutation of the 1,797 images: every (image, label) appears exactly once.
    all_x = np.concatenate([x, xt])
    all_t = np.concatenate([t, tt])
    ref = np.asarray(sklearn_digits.data, np.float32) / np.float32(16)
    order = np.lexsort(all_x.T)
    ref_order = np.lexsort(ref.T)
    np.testing.assert_array_equal(all_x[order], ref[ref_order])
    assert np.bincount(all_t, minlength=10).tolist() == np.bincount(sklearn_digits.target, minlength=10).tolist()


def test_options(sklearn_digits):
    (x, t), (xt, tt) = load_digits(normalize=False, flatten=False, one_hot_label=True, test_size=0.5, seed=3)
    assert x.shape == (898, 1, 8, 8) and xt.shape == (899, 1, 8, 8)
    assert x.dtype == np.uint8 and x.max() == 16
    assert t.shape == (898, 10) and t.dtype == np.float32
    np.testing.assert_array_equal(t.sum(axis=1), np.ones(898, np.float32))


def test_seed_gives_the_same_split_and_another_seed_another(sklearn_digits):
    a = load_digits(seed=5)
    b = load_digits(seed=5)
    c = load_digits(seed=6)
    np.testing.assert_array_equal(a[1][0], b[1][0])
    assert not np.array_equal(a[1][1], c[1][1])


@pytest.mark.parametrize("kwargs, fragment", [
    ({"test_size": 0}, "load_digits: test_size must be a fraction in (0, 1), got 0"),
    ({"test_size": 1.0}, "test_size must be a fraction in (0, 1), got 1.0"),
    ({"test_size": True}, "test_size must be a fraction"),
    ({"seed": -1}, "load_digits: seed must be an int >= 0, got -1"),
    ({"seed": 1.5}, "seed must be an int >= 0, got 1.5"),
])
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        load_digits(**kwargs)
    assert fragment in str(info.value)


def test_missing_scikit_learn_names_the_extra(monkeypatch):
    # A None entry in sys.modules makes "import sklearn..." raise ImportError, as when it is not installed.
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError) as info:
        load_digits()
    assert isinstance(info.value, MissingDependencyError)
    assert str(info.value).startswith('load_digits needs scikit-learn, which is not installed: '
                                      'pip install "fastnn[examples]"')
