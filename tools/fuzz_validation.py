"""Fuzz the argument checks of every public kernel with arbitrary bytes (atheris if installed, else random bytes).

Each input picks a kernel, starts from its valid call (``tests/robustness/cases.py``) and replaces some arguments
by values decoded from the bytes: other arrays (any small shape, float16/32/64, ints, bools, complex, object,
datetime, 0-d, empty, read-only, non-contiguous), numbers (0, -1, huge, NaN, +-Inf, bools), strings, None,
tuples and lists. The call then goes to ``fastnn.kernels`` and to ``fastnn.reference``. Accepted outcomes:

* both raise the same ``ValueError``/``TypeError`` with fastnn's message form, or
* both succeed with the same result (within the float32 tolerance; NaN equal to NaN).

Anything else (another exception type, a crash, the twins disagreeing, a message in another form) is a
finding: atheris stops and prints the input, the fallback driver raises with the kernel and arguments.

Sizes are bounded (dimensions <= 6, windows and pads <= 64) so that a valid call can never allocate much.

Usage::

    pip install atheris            # optional, not a dependency of fastnn
    python tools/fuzz_validation.py CORPUS_DIR -max_total_time=600 -rss_limit_mb=4096 -max_len=64  # atheris
    python tools/fuzz_validation.py --runs 20000 --seed 1     # without atheris: random bytes
"""

from __future__ import annotations

import argparse
import math
import pathlib
import random
import re
import sys
import warnings
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

MESSAGE = re.compile(r"(?P<where>\w+): .+ must be .+, got .+", re.S)

#: Findings already reported to their owners, matched against a finding's first line (which carries the tags
#: of :func:`_tags`). They are listed apart, and under atheris they do not stop the run, so it looks further.
#: Remove an entry when its fix lands.
KNOWN = {
    # fastnn/_validate.py: integer/int_pair/shape_tuple have no upper bound, so a stride, pad or shape >= 2**63
    # reaches NumPy or Numba: OverflowError, NumPy's own ValueError, or (stride 2**63) silently wrong windows.
    "huge int": re.compile(r".*\[huge int argument\]"),
    # fastnn/kernels/normalization.py: folded coefficients turn an infinite gamma/beta/running stat/inv_std into
    # NaN where the reference has +-inf (or the reverse).
    "normalization non-finite": re.compile(r"(batchnorm|layernorm|groupnorm|instancenorm)_\w+: kernels and "
                                           r"reference disagree \(non-finite only\).*\[non-finite argument\]"),
    # fastnn/kernels/winograd.py: the transforms add and subtract a tile's entries, so +-inf in an input can come
    # out as NaN where the direct sum has +-inf (documented for conv2d_*; the fused conv2d_relu_* share the path).
    "winograd non-finite": re.compile(r"conv2d_\w+: kernels and reference disagree \(non-finite only\)"
                                      r".*\[non-finite argument\]"),
}


def known(first_line: str) -> str | None:
    return next((k for k, rx in KNOWN.items() if rx.match(first_line)), None)


class Bytes:
    """Consume a byte string as small integers and choices (atheris' FuzzedDataProvider, minimally)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        b = self.data[self.pos]
        self.pos += 1
        return b

    def below(self, n: int) -> int:
        return self.byte() % n if n > 1 else 0

    def choice(self, items: list | tuple) -> Any:
        return items[self.below(len(items))]


# No valid size above 64 (a valid call must stay small); 2**62 and up probe overflow, and fail fast.
_NUMBERS = [0, 1, 2, 3, 5, 64, -1, -2, 2**62, 2**63, 2**64, -(2**63), 0.0, 0.5, 1.5, -0.5, 1e-300, 1e300,
            math.nan, math.inf, -math.inf, True, False, np.int8(3), np.uint64(2**63), np.float32(0.25),
            np.float16(2.0)]
_DTYPES = [np.float32, np.float64, np.float16, np.int64, np.int8, np.uint16, np.bool_, np.complex128, object,
           "datetime64[D]", "U3"]


def _array(b: Bytes, like: np.ndarray | None) -> Any:
    """An array decoded from the bytes: often ``like`` reshaped or retyped, sometimes anything small."""
    kind = b.below(8)
    base = like if isinstance(like, np.ndarray) else np.zeros(3)
    if kind == 0:
        shape = tuple(b.below(7) for _ in range(b.below(6)))
    elif kind == 1 and base.ndim:
        shape = list(base.shape)
        shape[b.below(base.ndim)] += b.choice([-1, 1, 2])
        shape = tuple(max(s, 0) for s in shape)
    elif kind == 2:
        shape = base.shape[:-1] if base.ndim else (1,)
    elif kind == 3:
        shape = (*base.shape, 1)
    else:
        shape = base.shape
    dtype = b.choice(_DTYPES) if kind != 4 else base.dtype
    rng = np.random.default_rng(b.byte())
    values = np.asarray(rng.standard_normal(shape) * 3)
    if b.below(4) == 0 and values.size:
        values.flat[b.below(values.size)] = b.choice([np.nan, np.inf, -np.inf])
    try:
        if dtype == "datetime64[D]":
            arr = np.zeros(shape, dtype)
        elif dtype == "U3":
            arr = np.full(shape, "ab")
        elif np.dtype(dtype).kind in "iub":
            arr = np.nan_to_num(np.round(values)).clip(0 if np.dtype(dtype).kind in "ub" else -100, 100)
            arr = arr.astype(dtype)
        else:
            arr = values.astype(dtype)
    except (ValueError, TypeError):
        arr = values
    arr = np.asarray(arr)
    layout = b.below(5)
    if layout == 1 and arr.ndim:
        arr = np.asfortranarray(arr)
    elif layout == 2 and arr.ndim:
        arr = arr[::-1]
    elif layout == 3:
        arr = arr.copy()
        arr.flags.writeable = False
    elif layout == 4:
        return arr.tolist()
    return arr


def _value(b: Bytes, old: Any) -> Any:
    kind = b.below(10)
    if kind <= 3:
        return _array(b, old)
    if kind <= 6:
        return b.choice(_NUMBERS)
    if kind == 7:
        return tuple(b.choice(_NUMBERS[:8]) for _ in range(b.below(5)))
    return b.choice([None, "2", b"x", [], {}, object(), slice(1), np.array(2.0)])


def one_input(data: bytes) -> None:
    """One fuzz case (the atheris entry point)."""
    import fastnn.kernels as K
    import fastnn.reference as R
    from tests.robustness.cases import CALLS

    b = Bytes(data)
    name = b.choice(sorted(CALLS))
    kw = CALLS[name](np.dtype(b.choice([np.float32, np.float64])), np.random.default_rng(b.byte()))
    keys = sorted(kw)
    for _ in range(1 + b.below(3)):
        key = b.choice(keys)
        kw[key] = _value(b, kw[key])
    tags = _tags(kw)
    outcomes = []
    for impl in (K, R):
        args = {k: _fresh(v) for k, v in kw.items()}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                outcomes.append(("ok", getattr(impl, name)(**args), args))
        except (ValueError, TypeError) as e:
            m = MESSAGE.fullmatch(str(e))
            if m is None or m.group("where") != name:
                raise AssertionError(f"{impl.__name__}.{name}: message not in fastnn's form: {e!r}{tags}\n"
                                     f"{kw!r:.2000}") from e
            outcomes.append((type(e).__name__, str(e), None))
        except Exception as e:  # noqa: BLE001 -- every other exception is the finding
            brief = " ".join(str(e)[:80].split())
            raise AssertionError(f"{impl.__name__}.{name}: raised {type(e).__name__}: {brief}{tags}\n"
                                 f"{kw!r:.2000}") from e
    (k_kind, k_val, k_args), (r_kind, r_val, r_args) = outcomes
    if k_kind != r_kind or (k_kind != "ok" and k_val != r_val):
        raise AssertionError(f"{name}: kernels {k_kind} but reference {r_kind}{tags}\n"
                             f"{k_val if k_kind != 'ok' else ''!s:.500}\n{r_val if r_kind != 'ok' else ''!s:.500}\n"
                             f"{kw!r:.2000}")
    if k_kind == "ok":
        got = k_val if isinstance(k_val, tuple) else (k_val,)
        want = r_val if isinstance(r_val, tuple) else (r_val,)
        if k_val is None:  # in-place optimizer step: compare the updated arrays
            got = tuple(v for v in k_args.values() if isinstance(v, np.ndarray))
            want = tuple(v for v in r_args.values() if isinstance(v, np.ndarray))
        try:
            for g, w in zip(got, want, strict=True):
                g, w = np.asarray(g), np.asarray(w)
                assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, w.dtype, g.shape, w.shape)
                if g.dtype.kind == "f":
                    # sums reordered: an element may be the small difference of large terms, so the absolute
                    # tolerance scales with the largest result (garbage is off by O(1), not by rounding)
                    rtol = 2e-5 if g.dtype == np.float32 else 1e-11
                    finite = np.abs(w[np.isfinite(w)])
                    atol = rtol * (1.0 + (float(finite.max()) if finite.size else 0.0))
                    np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)
                else:
                    np.testing.assert_array_equal(g, w)
        except AssertionError as e:
            raise AssertionError(f"{name}: kernels and reference disagree{_how(got, want)}{tags}\n{kw!r:.3000}\n"
                                 f"{e}") from None


def _fresh(v):
    """A copy of an argument a kernel may update in place (an array, or a list of them: clip_grads), so both
    twins see the same inputs; read-only arrays stay as they are (they test the refusal)."""
    if isinstance(v, np.ndarray) and v.flags.writeable:
        return v.copy()
    if isinstance(v, list):
        return [_fresh(a) for a in v]
    return v


def _tags(kw: dict) -> str:
    """Marks for a finding's first line: a huge int argument, a non-finite array argument."""
    tags = ""
    ints = [v for a in kw.values() for v in (a if isinstance(a, tuple) else (a,))
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool)]
    if any(abs(int(v)) >= 2**30 for v in ints):
        tags += " [huge int argument]"
    arrays = []
    for a in kw.values():
        if isinstance(a, (np.ndarray, list)):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # complex to float, in this test only
                    arrays.append(np.asarray(a, dtype=float))
            except (ValueError, TypeError):
                pass
    if any(not np.isfinite(a).all() for a in arrays):
        tags += " [non-finite argument]"
    return tags


def _how(got: tuple, want: tuple) -> str:
    """' (non-finite only)' when every mismatching element is NaN or infinite in one of the two results."""
    for g, w in zip(got, want, strict=True):
        g, w = np.asarray(g), np.asarray(w)
        if g.shape != w.shape or g.dtype.kind != "f" or w.dtype.kind != "f":
            return ""
        with np.errstate(invalid="ignore"):
            bad = ~np.isclose(g, w, rtol=2e-5, atol=2e-6, equal_nan=True)
        if bad.any() and np.isfinite(g[bad]).any() & np.isfinite(w[bad]).any():
            if (np.isfinite(g[bad]) & np.isfinite(w[bad])).any():
                return ""
    return " (non-finite only)"


def _instrument(atheris: Any) -> None:
    """Coverage instrumentation for fastnn's Python code (wrappers, ``_validate``, the reference twins), but not
    for loop bodies Numba compiles: Numba cannot type instrumented bytecode."""
    import types

    import fastnn.kernels
    import fastnn.reference  # noqa: F401

    modules = [m for n, m in sorted(sys.modules.items()) if n.startswith("fastnn.") and m is not None]
    compiled = set()
    for m in modules:
        for obj in vars(m).values():
            for f in (obj, getattr(obj, "serial", None), getattr(obj, "parallel", None)):
                if hasattr(f, "py_func"):
                    compiled.add(id(f.py_func))
    for m in modules:
        if not m.__name__.startswith(("fastnn.kernels", "fastnn.reference", "fastnn._validate")):
            continue
        for obj in list(vars(m).values()):
            if isinstance(obj, types.FunctionType) and obj.__module__ == m.__name__ and id(obj) not in compiled:
                atheris.instrument_func(obj)


def _skip_known(data: bytes) -> None:
    try:
        one_input(data)
    except AssertionError as e:
        if known(str(e).split("\n")[0]) is None:
            raise


def _limit_memory(nbytes: int) -> None:
    """Cap the address space, so an input that asks for a huge array raises MemoryError here instead of making
    the kernel's out-of-memory killer end this process (or a neighbour)."""
    try:
        import resource
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > nbytes:
        resource.setrlimit(resource.RLIMIT_AS, (nbytes, hard))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    try:
        import atheris
    except ImportError:
        atheris = None
    if atheris is not None and not any(a.startswith("--runs") for a in argv):
        _limit_memory(6 << 30)
        _instrument(atheris)
        atheris.Setup(argv, _skip_known)
        atheris.Fuzz()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv[1:])
    _limit_memory(8 << 30)
    rnd = random.Random(args.seed)
    findings: dict[str, tuple[int, str]] = {}
    seen_known: dict[str, int] = {}
    for _ in range(args.runs):
        data = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(4, 64)))
        try:
            one_input(data)
        except AssertionError as e:
            text = str(e)
            first_line = text.split("\n")[0]
            k = known(first_line)
            if k is not None:
                seen_known[k] = seen_known.get(k, 0) + 1
                continue
            count, first = findings.get(first_line[:160], (0, f"input {data!r}\n{text}"))
            findings[first_line[:160]] = (count + 1, first)
    for key, (count, first) in findings.items():
        print(f"FINDING x{count}: {key}\n{first}\n")
    print(f"known (reported) findings: {seen_known or 'none'}")
    print(f"{args.runs} random inputs, {len(findings)} new findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
