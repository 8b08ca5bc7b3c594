"""The collector's thresholds while Numba compiles: raised for fastnn's kernels only, always restored."""

import gc

import numba
import pytest
from numba.core import event
from numba.core.errors import TypingError

from fastnn import _compile_gc


class _Seen(event.Listener):
    """The collector thresholds at the start of each compilation (registered after fastnn's listener)."""

    def __init__(self):
        self.at_start = []

    def on_start(self, ev):
        self.at_start.append(gc.get_threshold())

    def on_end(self, ev):
        pass


@pytest.fixture
def seen():
    _compile_gc.install()
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    listener = _Seen()
    event.register("numba:compile", listener)
    try:
        yield listener
    finally:
        event.unregister("numba:compile", listener)
        gc.set_threshold(*saved)


def _compiled(module, body="return x + 1"):
    namespace = {}
    exec(f"def f(x):\n    {body}\n", namespace)
    fn = namespace["f"]
    fn.__module__ = module
    return numba.njit(cache=False)(fn)


def test_raised_while_a_fastnn_kernel_compiles_and_restored(seen):
    assert _compiled("fastnn.kernels.made_up")(1) == 2
    assert seen.at_start == [_compile_gc.THRESHOLDS]
    assert gc.get_threshold() == (700, 10, 10)


def test_higher_settings_are_kept(seen):
    gc.set_threshold(50_000, 5, 500)
    _compiled("fastnn.kernels.made_up")(1)
    assert seen.at_start == [(50_000, 50, 500)]
    assert gc.get_threshold() == (50_000, 5, 500)


def test_restored_when_the_compilation_fails(seen):
    with pytest.raises(TypingError):
        _compiled("fastnn.kernels.made_up", "return x.no_such_attribute")(1)
    assert seen.at_start == [_compile_gc.THRESHOLDS]
    assert gc.get_threshold() == (700, 10, 10)


def test_other_code_and_a_disabled_collector_are_left_alone(seen):
    _compiled("users_module")(1)
    gc.disable()
    try:
        _compiled("fastnn.kernels.made_up")(1)
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.enable()
    assert seen.at_start == [(700, 10, 10), (700, 10, 10)]


def test_install_is_idempotent():
    _compile_gc.install()
    listener = _compile_gc._listener
    _compile_gc.install()
    assert _compile_gc._listener is listener and listener is not None


def test_held_nests_with_compilations(seen):
    with _compile_gc.held():
        assert gc.get_threshold() == _compile_gc.THRESHOLDS
        _compiled("fastnn.kernels.made_up")(1)
        assert gc.get_threshold() == _compile_gc.THRESHOLDS
    assert gc.get_threshold() == (700, 10, 10)
