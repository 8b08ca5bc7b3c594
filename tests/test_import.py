"""``import fastnn`` is cheap: nothing compiled, Numba not even imported until a kernel or a lazy name is used."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fastnn


def test_import_fastnn_loads_no_numba_and_names_resolve_on_use():
    script = ("import sys, fastnn; assert 'numba' not in sys.modules and 'fastnn.kernels' not in sys.modules; "
              "from fastnn import Trainer, set_num_threads; assert 'numba' in sys.modules; print(Trainer.__name__)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "Trainer", done.stderr


def test_subpackages_are_attributes_on_first_use():
    script = ("import sys, fastnn, numpy as np; assert 'fastnn.kernels' not in sys.modules; "
              "print(fastnn.kernels.relu_forward(np.ones(2)).sum(), fastnn.layers.Relu.__name__, "
              "fastnn.compat.cs231n.__name__)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.split() == ["2.0", "Relu", "fastnn.compat.cs231n"], done.stderr


def test_every_public_name_is_there():
    for name in fastnn.__all__:
        assert getattr(fastnn, name) is not None and name in dir(fastnn)
    with pytest.raises(AttributeError, match="module 'fastnn' has no attribute 'nope'"):
        fastnn.nope  # noqa: B018


def test_every_public_submodule_is_listed_for_attribute_access():
    import pkgutil

    public = {m.name for m in pkgutil.iter_modules(fastnn.__path__) if not m.name.startswith("_")}
    assert public == fastnn._SUBMODULES
