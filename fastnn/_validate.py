"""Checks at the Python boundary, one helper per concept.

Numba kernels trust their inputs and do not bounds-check, so every public kernel, layer and optimizer calls
these before any kernel runs (one check, the labels' range, is itself a small compiled loop that only reads).
Each failure raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right kind, wrong value) with a
message of one form::

    <where>: <argument> must be <expected>, got <what came>

``where`` names the public function or layer (``"conv2d_forward"``, ``"Convolution.forward"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from typing import Any, NamedTuple

import numpy as np

from ._numba_cache import njit as _njit

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_FLOAT32, _FLOAT64 = FLOAT_DTYPES


def fail(where: str, name: str, expected: str, got: Any, exc: type[Exception] = ValueError) -> None:
    """Raise ``exc`` with fastnn's message form."""
    raise exc(f"{where}: {name} must be {expected}, got {got}")


def describe(x: Any) -> str:
    """How an unexpected value is named in an error message: an array by shape and dtype, else type and repr."""
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    return f"{type(x).__name__} {x!r}"


def float_dtype_of(dtype: np.dtype) -> np.dtype:
    """The float dtype NumPy arithmetic gives ``dtype``: float32/64 stay, ints and bools become float64."""
    if dtype in FLOAT_DTYPES:
        return dtype
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype == np.float16:
        return np.dtype(np.float32)  # compiled kernels have no half precision; float32 is the nearest
    raise TypeError(dtype)


def float_array(x: Any, where: str, name: str, *, ndim: int | tuple[int, ...] | None = None,
                dtype: np.dtype | None = None) -> np.ndarray:
    """``x`` as a float32 or float64 ndarray (promoted as NumPy promotes), optionally of given ``ndim``.

    Never copies a float32/float64 array that needs no cast; the result may be non-contiguous.
    ``dtype`` forces the float dtype (used to bring several arrays to their common type).
    """
    if x.__class__ is np.ndarray and dtype is None and (ndim is None or ndim.__class__ is int and x.ndim == ndim):
        d = x.dtype  # the usual case first: NumPy's native float dtypes are these two objects (~0.12 us less)
        if d is _FLOAT32 or d is _FLOAT64:
            return x
    if isinstance(x, np.ndarray):
        arr = x
    elif isinstance(x, (list, tuple, int, float, np.generic)) and not isinstance(x, (str, bytes)):
        arr = np.asarray(x)
    else:
        fail(where, name, "a NumPy array of floats", describe(x), TypeError)
    try:
        target = float_dtype_of(arr.dtype) if dtype is None else np.dtype(dtype)
    except TypeError:
        fail(where, name, "a real numeric array (float32, float64, int or bool)", f"dtype {arr.dtype}", TypeError)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            fail(where, name, f"{want}", f"{arr.ndim}-D array of shape {arr.shape}")
    return arr if arr.dtype == target else arr.astype(target)


def float_arrays(where: str, **arrays: Any) -> list[np.ndarray]:
    """Several arrays as floats of one common dtype (NumPy promotion), in the order given.

    Arrays that are not of a real numeric dtype raise TypeError naming the argument.
    """
    checked = {name: float_array(a, where, name) for name, a in arrays.items()}
    dtype = np.result_type(*checked.values())
    return [a if a.dtype == dtype else a.astype(dtype) for a in checked.values()]


def shape(a: np.ndarray, expected: tuple[int | None, ...], where: str, name: str) -> None:
    """Check ``a.shape`` against ``expected``; ``None`` entries match any size."""
    if a.shape == expected:  # the usual case, one tuple comparison (~0.6 us less than the general test below)
        return
    ok = a.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected, a.shape, strict=False))
    if not ok:
        want = "(" + ", ".join("any" if e is None else str(e) for e in expected) + (",)" if len(expected) == 1
                                                                                  else ")")
        fail(where, name, f"of shape {want}", f"shape {a.shape}")


def integer(v: Any, where: str, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``v`` as a Python int (bools refused), within ``[minimum, maximum]``."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        fail(where, name, "an int", describe(v), TypeError)
    v = int(v)
    if minimum is not None and v < minimum:
        fail(where, name, f">= {minimum}", v)
    if maximum is not None and v > maximum:
        fail(where, name, f"<= {maximum}", v)
    return v


def flag(v: Any, where: str, name: str) -> bool:
    """A yes/no switch: a bool (or NumPy bool), as a Python bool."""
    if not isinstance(v, (bool, np.bool_)):
        fail(where, name, "True or False", describe(v), TypeError)
    return bool(v)


#: Largest size, stride or padding accepted: compiled kernels index with machine integers, and a value past this
#: would overflow their index arithmetic (or NumPy's allocation) instead of failing clearly.
MAX_SIZE = 2**31 - 1


def int_pair(v: Any, where: str, name: str, *, minimum: int) -> tuple[int, int]:
    """A size given as one int or a pair ``(vertical, horizontal)``, each at least ``minimum``."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            fail(where, name, "an int or a pair of ints", describe(v), TypeError)
        return (integer(v[0], where, name, minimum=minimum, maximum=MAX_SIZE),
                integer(v[1], where, name, minimum=minimum, maximum=MAX_SIZE))
    i = integer(v, where, name, minimum=minimum, maximum=MAX_SIZE)
    return i, i


def window_output_size(size: int, window: int, stride: int, pad: int, where: str, axis: str) -> int:
    """Output length of a sliding window along one axis; the window must fit the padded input."""
    if window > size + 2 * pad:
        fail(where, f"{axis} window", f"<= padded input size {size + 2 * pad} (input {size} + 2*pad {pad})",
             window)
    return _output_size(size, window, stride, pad)


def _output_size(size: int, window: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - window) // stride + 1


def scalar(v: Any, where: str, name: str, *, gt: float | None = None, ge: float | None = None,
           lt: float | None = None, le: float | None = None) -> float:
    """A finite real hyperparameter within bounds, as a Python float."""
    if v.__class__ is float:  # the usual case, without the isinstance chain (~0.1 us of a small loss call)
        f = v
    elif isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        fail(where, name, "a real number", describe(v), TypeError)
    else:
        f = float(v)
    if not math.isfinite(f) or (gt is not None and not f > gt) or (ge is not None and not f >= ge) or (
            lt is not None and not f < lt) or (le is not None and not f <= le):
        bounds = [b for b, on in ((f"> {gt}", gt is not None), (f">= {ge}", ge is not None),
                                  (f"< {lt}", lt is not None), (f"<= {le}", le is not None)) if on]
        fail(where, name, "a finite number" + (" " + " and ".join(bounds) if bounds else ""), v)
    return f


_INT64 = np.dtype(np.int64)

#: The unsigned dtype of each signed integer dtype (a view as it makes a negative label a huge one).
_UNSIGNED = {np.dtype(s): np.dtype(s.replace("i", "u")) for s in ("<i1", "<i2", "<i4", "<i8", ">i2", ">i4", ">i8")}


def _unsigned(dtype: np.dtype) -> np.dtype | str:
    u = _UNSIGNED.get(dtype)
    return dtype.str.replace("i", "u") if u is None else u


def _max(a: np.ndarray) -> Any:
    """The largest element of a non-empty 1-D integer array, read at ``a.argmax()``: ndarray.argmax is one C
    call, where a ufunc reduction pays the ufunc machinery (measured on 128 int64 labels: 0.26 us against 0.64 us
    for np.maximum.reduce and 0.73 us for a.max())."""
    return a[a.argmax()]


def _labels_below(t, classes):
    """Whether every label of the 1-D integer array ``t`` is in [0, classes): one compiled pass over the labels as
    unsigned integers (a negative one is a huge one). Called from Python: ~0.26 us for 128 int64 labels, against
    ~0.7 us for NumPy's view, argmax and index (a third of what a small loss call spends outside its kernel). It
    reads the labels and writes nothing; no kernel runs before it returns.
    """
    bound = np.uint64(classes)
    for v in t:
        if np.uint64(v) >= bound:
            return False
    return True


_labels_below = _njit(_labels_below)


def labels(t: Any, n: int, classes: int, where: str, name: str = "t") -> np.ndarray:
    """Class labels for ``n`` samples of ``classes`` classes: int array (n,) in range, or one-hot (n, classes).

    Returns an int64 label vector (one-hot rows are converted with argmax after checking they are one-hot).
    """
    if t.__class__ is np.ndarray and t.dtype is _INT64 and t.ndim == 1 and t.shape[0] == n and n:
        # the usual case (int64 labels of the right length), returned as they are when in range; anything else, an
        # out-of-range label included, takes the general path below and its messages
        if _labels_below(t, classes):
            return t
    t = np.asarray(t)
    kind = t.dtype.kind
    if kind == "b" or kind not in "iuf":
        fail(where, name, "integer class labels or a one-hot float array", f"dtype {t.dtype}", TypeError)
    if t.ndim == 1:
        if t.shape[0] != n:
            fail(where, name, f"of shape ({n},) to match {n} samples", f"shape {t.shape}")
        if kind == "f":
            if not np.all(np.isfinite(t)) or not np.all(t == np.round(t)):
                fail(where, name, "whole-number class labels", "non-integer values")
        # integers: one maximum over the unsigned view (a negative label is a huge unsigned one), ~1.2 us less
        # than min() and max() on a batch of 128; the message still names both ends
        if n and (_max(t.view(_unsigned(t.dtype))) >= classes if kind in "iu" else
                  t.min() < 0 or t.max() >= classes):
            fail(where, name, f"labels in [0, {classes})", f"values in [{t.min()}, {t.max()}]")
        return t.astype(np.int64, copy=False)
    if t.ndim == 2:
        if t.shape != (n, classes):
            fail(where, name, f"one-hot of shape ({n}, {classes})", f"shape {t.shape}")
        if not np.all((t == 0) | (t == 1)) or not np.all(t.sum(axis=1) == 1):
            fail(where, name, "one-hot rows (a single 1, zeros elsewhere)", "other values")
        return np.argmax(t, axis=1).astype(np.int64)
    fail(where, name, "1-D labels or a 2-D one-hot array", f"{t.ndim}-D array of shape {t.shape}")
    raise AssertionError  # unreachable


def _number_dtype(v: Any) -> np.dtype | None:
    """The float dtype an optimizer keeps a number parameter in (float64; a NumPy float32 scalar stays float32),
    or None when ``v`` is not a real number (bools, complex, float16 and long double are not accepted)."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, np.floating):
        return v.dtype if v.dtype in FLOAT_DTYPES else None
    if isinstance(v, (int, float, np.integer)):
        return np.dtype(np.float64)
    return None


def params_grads(params: Mapping[str, Any], grads: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """Every parameter has a gradient of its shape, and nothing else is given; the parameters as arrays.

    A parameter is a writeable float32/float64 ndarray (of any shape, 0-d included), updated in place, or a real
    number (Python int or float, NumPy integer, float32 or float64 scalar), which an optimizer replaces in the dict
    as the book's ``params[key] -= ...`` does (so ``params`` must then be a mutable mapping). Returns
    ``{key: array}``: the ndarray itself, or a new 0-d array holding the number (float64, or float32 for a NumPy
    float32 scalar). A number's gradient must be a number or a 0-d array too.
    """
    if not isinstance(params, Mapping) or not isinstance(grads, Mapping):
        fail(where, "params and grads", "dicts of arrays", f"{type(params).__name__} and {type(grads).__name__}",
             TypeError)
    missing = [k for k in params if k not in grads]
    extra = [k for k in grads if k not in params]
    if missing or extra:
        fail(where, "grads", f"the same keys as params {sorted(params)}",
             f"missing {sorted(missing)}, unexpected {sorted(extra)}")
    arrays: dict[str, np.ndarray] = {}
    for k, p in params.items():
        if isinstance(p, np.ndarray):
            if p.dtype not in FLOAT_DTYPES:
                fail(where, f"params[{k!r}]", "a float32 or float64 ndarray (updated in place) or a real number",
                     describe(p), TypeError)
            if not p.flags.writeable:
                fail(where, f"params[{k!r}]", "writeable (it is updated in place)", "a read-only array")
            arrays[k] = p
        else:
            dtype = _number_dtype(p)
            if dtype is None:
                fail(where, f"params[{k!r}]", "a float32 or float64 ndarray (updated in place) or a real number",
                     describe(p), TypeError)
            if not isinstance(params, MutableMapping):
                fail(where, "params", f"a mutable dict (the number params[{k!r}] is replaced)",
                     type(params).__name__, TypeError)
            try:
                arrays[k] = np.array(p, dtype=dtype)
            except OverflowError:
                fail(where, f"params[{k!r}]", f"representable as {dtype}", describe(p))
        g = grads[k]
        gshape = np.shape(g)
        if gshape != arrays[k].shape:
            fail(where, f"grads[{k!r}]", f"of shape {arrays[k].shape} like params[{k!r}]", f"shape {gshape}")
        float_array(g, where, f"grads[{k!r}]")
    return arrays


class WindowGeometry(NamedTuple):
    """Sizes of a sliding-window op (convolution, pooling, im2col) on NCHW input."""

    N: int
    C: int
    H: int
    W: int
    FH: int  # window height
    FW: int  # window width
    SH: int  # stride
    SW: int
    PH: int  # padding
    PW: int
    OH: int  # output height
    OW: int  # output width


def window_geometry(input_shape: Any, window_h: Any, window_w: Any, stride: Any, pad: Any, where: str,
                    *, name: str = "x") -> WindowGeometry:
    """Validate a sliding window over a 4-D input shape and compute the output size.

    ``stride`` and ``pad`` are an int or a (vertical, horizontal) pair; stride >= 1, pad >= 0, the window must
    fit the padded input. ``name`` is the argument the input shape came from (for messages).
    """
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 4:
        fail(where, name, "4-D (N, C, H, W)", f"shape {input_shape!r}")
    n, c, h, w = (integer(s, where, f"{name}.shape[{i}]", minimum=0, maximum=MAX_SIZE)
                  for i, s in enumerate(input_shape))
    fh = integer(window_h, where, "window height", minimum=1, maximum=MAX_SIZE)
    fw = integer(window_w, where, "window width", minimum=1, maximum=MAX_SIZE)
    sh, sw = int_pair(stride, where, "stride", minimum=1)
    ph, pw = int_pair(pad, where, "pad", minimum=0)
    oh = window_output_size(h, fh, sh, ph, where, "vertical")
    ow = window_output_size(w, fw, sw, pw, where, "horizontal")
    return WindowGeometry(n, c, h, w, fh, fw, sh, sw, ph, pw, oh, ow)


def _pair(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def geometry(input_shape: tuple[int, ...], window_h: int, window_w: int, stride: Any, pad: Any) -> WindowGeometry:
    """:func:`window_geometry` (and :func:`pool_geometry`: ``stride=None`` is the window size) without its checks.

    For arguments that have passed them: the body of a sliding-window kernel computes its geometry with it, so that
    the body has its public function's signature and a caller that checked the arguments skips the check.
    """
    n, c, h, w = (int(s) for s in input_shape)
    fh, fw = int(window_h), int(window_w)
    sh, sw = _pair((fh, fw) if stride is None else stride)
    ph, pw = _pair(pad)
    return WindowGeometry(n, c, h, w, fh, fw, sh, sw, ph, pw, _output_size(h, fh, sh, ph), _output_size(w, fw, sw, pw))


def adopt_cached(cache: dict | None, key: str, held: Any, x: np.ndarray) -> None:
    """Let the entry ``cache[key]``, when it names array ``held``, name ``x`` instead.

    A convolution's public function hands its body ``x`` as the check returns it: a cast copy when the caller's
    array had another dtype. The forward pass's columns are kept for the caller's array (which the backward pass
    is called with again), and the backward pass looks them up for the copy its own check made.
    """
    if cache is not None and held is not x and cache.get(key) is held:
        cache[key] = x


def pool_index_dtype(window_size: int) -> np.dtype:
    """The smallest unsigned integer dtype holding a window index ``0 .. window_size - 1`` (pooling argmax)."""
    return np.min_scalar_type(max(window_size - 1, 0))


def pool_geometry(input_shape: Any, pool_h: Any, pool_w: Any, stride: Any, pad: Any, where: str,
                  *, name: str = "x") -> WindowGeometry:
    """:func:`window_geometry` for pooling: ``stride=None`` means the pool size, and ``pad <= pool // 2``.

    The padding limit is PyTorch's; it guarantees that every window overlaps the input in at least one element
    whenever the input is non-empty, so a max-pool output is never made of padding alone.
    """
    fh = integer(pool_h, where, "pool_h", minimum=1)
    fw = integer(pool_w, where, "pool_w", minimum=1)
    ph, pw = int_pair(pad, where, "pad", minimum=0)
    if ph > fh // 2 or pw > fw // 2:
        fail(where, "pad", f"<= half the pool size ({fh // 2}, {fw // 2}) per axis", pad)
    return window_geometry(input_shape, fh, fw, (fh, fw) if stride is None else stride, (ph, pw), where, name=name)


def pool_argmax(argmax: Any, expected_shape: tuple[int, ...], window_size: int, where: str,
                name: str = "argmax") -> np.ndarray:
    """A max-pool argmax: integer array of ``expected_shape``, values in ``[0, window_size)``.

    Returned C-contiguous in :func:`pool_index_dtype` (values are checked first, so the cast is exact). The value
    check matters: compiled kernels scatter through these indices without bounds checks.
    """
    if not isinstance(argmax, np.ndarray):
        fail(where, name, "a NumPy integer array (the argmax returned by the forward pass)", describe(argmax),
             TypeError)
    if argmax.dtype.kind not in "iu":
        fail(where, name, "an integer array (the argmax returned by the forward pass)", f"dtype {argmax.dtype}",
             TypeError)
    shape(argmax, expected_shape, where, name)
    if argmax.size and (argmax.min() < 0 or argmax.max() >= window_size):
        fail(where, name, f"window indices in [0, {window_size})", f"values in [{argmax.min()}, {argmax.max()}]")
    return np.ascontiguousarray(argmax, dtype=pool_index_dtype(window_size))


def inplace_array(a: Any, where: str, name: str, *, like: np.ndarray | None = None) -> np.ndarray:
    """An array the caller lets us update in place (a parameter or optimizer state).

    It must be a writeable float32/float64 ndarray (no cast is possible: a cast copy would not be the caller's
    array); with ``like``, it must also have ``like``'s shape and dtype.
    """
    if not isinstance(a, np.ndarray) or a.dtype not in FLOAT_DTYPES:
        want = "a float32 or float64 ndarray (updated in place)" if like is None else (
            f"a {like.dtype} ndarray like param (updated in place)")
        fail(where, name, want, describe(a), TypeError)
    if like is not None and a.dtype != like.dtype:
        fail(where, name, f"of dtype {like.dtype} like param", f"dtype {a.dtype}", TypeError)
    if like is not None and a.shape != like.shape:
        fail(where, name, f"of shape {like.shape} like param", f"shape {a.shape}")
    if not a.flags.writeable:
        fail(where, name, "writeable (it is updated in place)", "a read-only array")
    return a


def bool_array(a: Any, where: str, name: str, *, shape_of: tuple[int, ...] | None = None) -> np.ndarray:
    """A boolean ndarray (a mask), optionally of a given shape."""
    if not isinstance(a, np.ndarray) or a.dtype != np.bool_:
        fail(where, name, "a bool ndarray", describe(a), TypeError)
    if shape_of is not None and a.shape != tuple(shape_of):
        fail(where, name, f"of shape {tuple(shape_of)}", f"shape {a.shape}")
    return a


def shape_tuple(s: Any, where: str, name: str = "shape") -> tuple[int, ...]:
    """An array shape given as an int or a sequence of ints >= 0, as a tuple."""
    if isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)):
        s = (s,)
    if not isinstance(s, (tuple, list)):
        fail(where, name, "an int or a tuple of ints", describe(s), TypeError)
    return tuple(integer(v, where, f"{name}[{i}]", minimum=0, maximum=MAX_SIZE) for i, v in enumerate(s))


def optimizer_arrays(where: str, param: Any, grad: Any, **states: Any) -> np.ndarray:
    """Check the arrays of one optimizer step; return ``grad`` as an array of param's dtype.

    ``param`` and every state array must be writeable float ndarrays of one shape and dtype (they are updated in
    place); ``grad`` any real array of param's shape (cast to param's dtype, copying only when needed).
    """
    inplace_array(param, where, "param")
    g = float_array(grad, where, "grad")
    if g.shape != param.shape:
        fail(where, "grad", f"of shape {param.shape} like param", f"shape {g.shape}")
    for name, s in states.items():
        inplace_array(s, where, name, like=param)
    return g if g.dtype == param.dtype else g.astype(param.dtype)


_NOT_GIVEN: Any = object()  # distinguishes "argument absent" from a caller's None (which is an error)


def conv_arrays(where: str, x: Any, W: Any, stride: Any, pad: Any, *, b: Any = _NOT_GIVEN,
                dout: Any = _NOT_GIVEN) -> tuple[list[np.ndarray], WindowGeometry]:
    """Check the arrays of a 2-D convolution and return them in one float dtype with the window geometry.

    ``x`` (N, C, H, W) and ``W`` (FN, C, FH, FW) must be 4-D with the same C; ``b`` (when given) of shape (FN,);
    ``dout`` (when given) of shape (N, FN, OH, OW). Returns ``[x, W]`` followed by ``b`` and/or ``dout`` in the
    order given, all cast to their common dtype (NumPy promotion), and the geometry.
    """
    x = float_array(x, where, "x", ndim=4)
    W = float_array(W, where, "W", ndim=4)
    if W.shape[1] != x.shape[1]:
        fail(where, "W", f"of shape (FN, {x.shape[1]}, FH, FW) to match the {x.shape[1]} channels of x",
             f"shape {W.shape}")
    g = window_geometry(x.shape, W.shape[2], W.shape[3], stride, pad, where)
    arrays = {"x": x, "W": W}
    if b is not _NOT_GIVEN:
        arrays["b"] = float_array(b, where, "b")
        shape(arrays["b"], (W.shape[0],), where, "b")
    if dout is not _NOT_GIVEN:
        arrays["dout"] = float_array(dout, where, "dout")
        shape(arrays["dout"], (g.N, W.shape[0], g.OH, g.OW), where, "dout")
    dtype = np.result_type(*arrays.values())
    return [a if a.dtype == dtype else a.astype(dtype) for a in arrays.values()], g


def divisor(v: Any, total: int, where: str, name: str, total_name: str) -> int:
    """``v`` as an int >= 1 that divides ``total`` (e.g. a group count dividing the channel count C)."""
    v = integer(v, where, name, minimum=1)
    if total % v:
        fail(where, name, f"a divisor of {total_name}={total}", v)
    return v


def time_loss_divisor(t: np.ndarray, ignore_label: int, average: str) -> int:
    """The divisor of a time-distributed loss's sum: the positions counted (``average='valid'``, DLFS-2's
    TimeSoftmaxWithLoss) or N (``'batch'``, cs231n's temporal_softmax_loss)."""
    return t.shape[0] if average == "batch" else int(np.count_nonzero(t != ignore_label))


def norm_dtype(arrays: list) -> np.dtype:
    """The dtype of a norm over several float arrays: their common dtype (float32 for none)."""
    return np.result_type(*arrays) if arrays else np.dtype(np.float32)
