"""Where layers and nets draw their randomness from.

``seed=None`` means NumPy's global random state, as the book's ``np.random.randn``/``np.random.rand`` calls:
a book script that calls ``np.random.seed(0)`` first is reproducible on fastnn too. An int or a
``np.random.Generator`` gives a private stream instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _validate


class RandomSource:
    """A seed as given to a layer or net: ``None`` (global NumPy state), an int >= 0, or a ``np.random.Generator``.

    A Generator is used as is (not copied), so several layers given one Generator draw from one stream.
    """

    def __init__(self, seed: Any, where: str, name: str = "seed") -> None:
        if seed is None or isinstance(seed, np.random.Generator):
            self.generator = seed
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
            self.generator = np.random.default_rng(_validate.integer(seed, where, name, minimum=0))
        else:
            _validate.fail(where, name, "None, an int or a numpy.random.Generator", f"{type(seed).__name__}",
                           TypeError)

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """float64 draws from N(0, 1) (the global state's ``randn`` when no Generator: the book's numbers)."""
        if self.generator is None:
            return np.random.randn(*shape)  # noqa: NPY002 -- the global state on purpose (book compatibility)
        return self.generator.standard_normal(shape)

    def seed64(self) -> int:
        """A fresh seed in [0, 2**64) for the counter-based kernels (dropout masks)."""
        draw = np.random.randint if self.generator is None else self.generator.integers
        return int(draw(0, 2**64, dtype=np.uint64))

    def get_state(self) -> Any:
        """The state of the stream, for :meth:`set_state`."""
        if self.generator is None:
            return np.random.get_state()  # noqa: NPY002
        return self.generator.bit_generator.state

    def set_state(self, state: Any) -> None:
        if self.generator is None:
            np.random.set_state(state)  # noqa: NPY002
        else:
            self.generator.bit_generator.state = state
