"""Fixtures shared by the compat tests."""

from __future__ import annotations

import collections
import collections.abc
import warnings

import pytest


@pytest.fixture(scope="module")
def nml():
    """numpy-ml's neural_nets package (PyPI's 0.1.2, installed by the ``test`` extra), or skip.

    numpy-ml, at 0.1.2 and at its GitHub head alike, does ``from collections import Hashable``, which Python 3.10
    removed; the fixture lends ``collections`` that one alias for the import and takes it back afterwards.
    """
    added = not hasattr(collections, "Hashable")
    if added:
        collections.Hashable = collections.abc.Hashable
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its rl_models warn that gym is missing
            return pytest.importorskip("numpy_ml.neural_nets", exc_type=ImportError,
                                       reason="numpy-ml is not installed (pip install numpy-ml)")
    finally:
        if added:
            del collections.Hashable
