"""The constants of the dropout mask's counter-based hash, shared by the kernel and its NumPy twin.

The mask and the formula are specified in :mod:`fastnn.reference.dropout`; the constants live here, outside both
implementations, so that neither imports the other and the two cannot drift apart.
"""

from __future__ import annotations

import math

#: SplitMix64's increment (the golden ratio in 64 bits) and its finaliser's multipliers (Vigna's ``splitmix64.c``).
GAMMA = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
MASK64 = (1 << 64) - 1


def mix64_int(z: int) -> int:
    """The SplitMix64 finaliser on one Python int (for the per-call key)."""
    z = ((z ^ (z >> 30)) * MIX1) & MASK64
    z = ((z ^ (z >> 27)) * MIX2) & MASK64
    return z ^ (z >> 31)


def stream_key(seed: int) -> int:
    """The key of a mask's stream: the first output of a SplitMix64 generator seeded with ``seed``."""
    return mix64_int((seed + GAMMA) & MASK64)


def keep_threshold(drop_ratio: float) -> int:
    """The integer an element's top 53 hash bits must reach to be kept: ``ceil(drop_ratio * 2**53)``."""
    return math.ceil(drop_ratio * 2.0**53)
