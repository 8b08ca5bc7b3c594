"""The one registry of benchmark cases, shared by ``python -m fastnn.bench``, ``asv_bench/`` and the tests.

A :class:`Case` is one timed operation (``conv2d_forward``, ``adam_step``, a whole training step) with

* ``sizes``: named shape parameters -- ``"tiny"`` (tests), ``"mnist"`` and ``"cifar"`` (benchmarks);
* ``make(p, dtype)``: seeded inputs for the shape parameters ``p`` as NumPy arrays of ``dtype``;
* ``impls``: for each implementation (``"fastnn"`` = :mod:`fastnn.kernels`, ``"numpy"`` = :mod:`fastnn.reference`,
  ``"torch"`` = the equivalent PyTorch CPU op, only when torch imports), a function turning the inputs into a
  :class:`Run`: a zero-argument ``call`` that is timed, and ``result`` that turns what a call returned into the
  tuple of arrays the implementations must agree on.

Everything an implementation needs besides the timed call (copies of state it updates in place, torch tensors,
the autograd graph a backward pass walks) is built when the run is prepared, so timings hold the operation only.
torch computes fewer by-products than fastnn (no ``mean``/``inv_std`` from a norm forward, flat indices rather
than window offsets from max pooling): a torch result is the *leading* part of the canonical tuple and is compared
on that part.

This is numbagg's ``COMPARISONS`` idea: one table drives both the correctness check and the benchmarks, so a
benchmark cannot time something the tests do not check.
"""

from __future__ import annotations

import importlib
import importlib.util
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

IMPLS = ("fastnn", "numpy", "torch")
SIZES = ("mnist", "cifar")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class Run:
    """A prepared benchmark: ``call()`` is the timed operation, ``result(call())`` its canonical outputs."""

    call: Callable[[], Any]
    result: Callable[[Any], tuple[np.ndarray, ...]] = field(default=lambda r: to_numpy(r))


@dataclass(frozen=True)
class Case:
    """One benchmarked operation and its implementations (see the module docstring)."""

    name: str
    module: str  # the asv_bench module it belongs to (a kernel family)
    sizes: Mapping[str, Mapping[str, Any]]
    make: Callable[[Mapping[str, Any], np.dtype], dict[str, Any]]
    impls: Mapping[str, Callable[[dict[str, Any]], Run]]
    #: Bytes a call must read and write at least (each input read once, each output written once), for the
    #: achieved-bandwidth column; None where the operation is compute-bound.
    traffic: Callable[[Mapping[str, Any], np.dtype], int] | None = None
    dtypes: tuple[str, ...] = DTYPES

    def params(self, size: str) -> Mapping[str, Any]:
        if size not in self.sizes:
            raise NotImplementedError(f"{self.name} has no size {size!r} (it has {sorted(self.sizes)})")
        return self.sizes[size]

    def inputs(self, size: str, dtype: str | np.dtype) -> dict[str, Any]:
        """The seeded inputs of ``size`` in ``dtype`` (the same arrays for every implementation)."""
        dt = np.dtype(dtype)
        if dt.name not in self.dtypes:
            raise NotImplementedError(f"{self.name} is not benchmarked in {dt.name}")
        return self.make(self.params(size), dt)

    def prepare(self, impl: str, size: str, dtype: str | np.dtype, inputs: dict[str, Any] | None = None) -> Run:
        """A :class:`Run` of ``impl``; raises NotImplementedError when that implementation is unavailable here."""
        if impl not in self.impls:
            raise NotImplementedError(f"{self.name} has no {impl} implementation")
        if impl == "torch" and not torch_available():
            raise NotImplementedError("torch is not installed")
        return self.impls[impl](self.inputs(size, dtype) if inputs is None else inputs)

    def bytes_moved(self, size: str, dtype: str | np.dtype) -> int | None:
        return None if self.traffic is None else self.traffic(self.params(size), np.dtype(dtype))

    def describe(self, size: str) -> str:
        """Shape parameters of ``size`` in one short string, for tables."""
        return " ".join(f"{k}={_short(v)}" for k, v in self.params(size).items())


def _short(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return "x".join(str(i) for i in v)
    return str(v)


# ---------------------------------------------------------------------------------------------------------------
# Implementations

class _Namespace:
    """fastnn.kernels or fastnn.reference, looked up lazily: a name not written yet skips its case, not the rest."""

    def __init__(self, module: str) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        mod = importlib.import_module(self._module)
        obj = getattr(mod, name, None)
        # before fastnn.kernels.im2col (the function) exists, the name is its submodule
        if obj is None or isinstance(obj, types.ModuleType):
            raise NotImplementedError(f"{self._module}.{name} is not available")
        return obj


FASTNN = _Namespace("fastnn.kernels")
NUMPY = _Namespace("fastnn.reference")


def torch_available() -> bool:
    """Whether torch can be imported (looked up without importing it: the import costs a second or two)."""
    return importlib.util.find_spec("torch") is not None


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:  # found but broken
        raise NotImplementedError(f"torch does not import: {exc}") from exc
    return torch


def to_numpy(r: Any) -> tuple[np.ndarray, ...]:
    """A call's return value as a flat tuple of NumPy arrays (torch tensors detached, scalars as 0-d arrays)."""
    if r is None:
        return ()
    if isinstance(r, (tuple, list)):
        return tuple(a for item in r for a in to_numpy(item))
    if hasattr(r, "detach"):
        return (r.detach().cpu().numpy(),)
    return (np.asarray(r),)


def twins(build: Callable[[Any, dict[str, Any]], Run | Callable[[], Any]]) -> dict[str, Callable[[dict], Run]]:
    """The ``fastnn`` and ``numpy`` implementations of a case from one builder taking the kernel namespace."""

    def prepare(ns: _Namespace, d: dict[str, Any]) -> Run:
        r = build(ns, d)
        return r if isinstance(r, Run) else Run(r)

    return {"fastnn": partial(prepare, FASTNN), "numpy": partial(prepare, NUMPY)}


def _t(a: np.ndarray, grad: bool = False) -> Any:
    """A torch tensor of ``a`` (its own copy: torch must not write into the shared inputs)."""
    t = _torch().from_numpy(np.array(a, copy=True))
    return t.requires_grad_(True) if grad else t


def _torch_backward(forward: Callable[..., Any], grads_of: tuple[Any, ...], dout: np.ndarray) -> Run:
    """Autograd backward of ``forward()`` w.r.t. ``grads_of``, graph built once: each call walks it again."""
    torch = _torch()
    out = forward()
    if isinstance(out, tuple):
        out = out[0]
    g = _t(dout)
    return Run(partial(torch.autograd.grad, out, grads_of, g, retain_graph=True))


def _rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _rng(salt: int) -> np.random.Generator:
    return np.random.default_rng(20240 + salt)


def _out_hw(p: Mapping[str, Any], fh: int, fw: int) -> tuple[int, int]:
    sh, sw = _pair(p["stride"])
    ph, pw = _pair(p["pad"])
    return (p["H"] + 2 * ph - fh) // sh + 1, (p["W"] + 2 * pw - fw) // sw + 1


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


# ---------------------------------------------------------------------------------------------------------------
# im2col / col2im and convolution (fastnn/kernels/im2col.py, conv.py)

CONV_SIZES = {
    "tiny": {"N": 2, "C": 3, "H": 7, "W": 6, "FN": 4, "FH": 3, "FW": 2, "stride": (2, 1), "pad": 1},
    # Deep Learning from Scratch SimpleConvNet's convolution on an MNIST batch
    "mnist": {"N": 100, "C": 1, "H": 28, "W": 28, "FN": 30, "FH": 5, "FW": 5, "stride": 1, "pad": 0},
    # a VGG-style 3x3 layer on CIFAR-sized feature maps
    "cifar": {"N": 64, "C": 64, "H": 32, "W": 32, "FN": 64, "FH": 3, "FW": 3, "stride": 1, "pad": 1},
}


def _conv_inputs(p: Mapping[str, Any], dtype: np.dtype) -> dict[str, Any]:
    rng = _rng(1)
    oh, ow = _out_hw(p, p["FH"], p["FW"])
    fan_in = p["C"] * p["FH"] * p["FW"]
    return {
        "x": _rand(rng, (p["N"], p["C"], p["H"], p["W"]), dtype),
        "weight": _rand(rng, (p["FN"], p["C"], p["FH"], p["FW"]), dtype, np.sqrt(2.0 / fan_in)),
        "b": _rand(rng, (p["FN"],), dtype, 0.1),
        "dout": _rand(rng, (p["N"], p["FN"], oh, ow), dtype),
        "col": _rand(rng, (p["N"] * oh * ow, fan_in), dtype),
        **p,
    }


def _torch_im2col(d: dict[str, Any]) -> Run:
    F = _torch().nn.functional
    x = _t(d["x"])
    k = d["C"] * d["FH"] * d["FW"]

    def im2col() -> Any:
        # unfold gives (N, C*FH*FW, OH*OW); DLFS's layout is (N*OH*OW, C*FH*FW), so the transpose copy counts
        return F.unfold(x, (d["FH"], d["FW"]), padding=d["pad"], stride=d["stride"]).transpose(1, 2).reshape(-1, k)

    return Run(im2col)


def _torch_col2im(d: dict[str, Any]) -> Run:
    F = _torch().nn.functional
    n = d["N"]
    col = _t(d["col"])
    k = d["C"] * d["FH"] * d["FW"]

    def col2im() -> Any:
        return F.fold(col.reshape(n, -1, k).transpose(1, 2), (d["H"], d["W"]), (d["FH"], d["FW"]),
                      padding=d["pad"], stride=d["stride"])

    return Run(col2im)


def _torch_conv_forward(d: dict[str, Any]) -> Run:
    F = _torch().nn.functional
    return Run(partial(F.conv2d, _t(d["x"]), _t(d["weight"]), _t(d["b"]), stride=d["stride"], padding=d["pad"]))


def _torch_conv_backward(d: dict[str, Any]) -> Run:
    F = _torch().nn.functional
    x, w, b = _t(d["x"], True), _t(d["weight"], True), _t(d["b"], True)
    return _torch_backward(lambda: F.conv2d(x, w, b, stride=d["stride"], padding=d["pad"]), (x, w, b), d["dout"])


def _cases_conv() -> Iterator[Case]:
    yield Case("im2col", "im2col_conv", CONV_SIZES, _conv_inputs, {
        **twins(lambda k, d: partial(k.im2col, d["x"], d["FH"], d["FW"], d["stride"], d["pad"])),
        "torch": _torch_im2col,
    })
    yield Case("col2im", "im2col_conv", CONV_SIZES, _conv_inputs, {
        **twins(lambda k, d: partial(k.col2im, d["col"], d["x"].shape, d["FH"], d["FW"], d["stride"], d["pad"])),
        "torch": _torch_col2im,
    })
    yield Case("conv2d_forward", "im2col_conv", CONV_SIZES, _conv_inputs, {
        **twins(lambda k, d: partial(k.conv2d_forward, d["x"], d["weight"], d["b"], d["stride"], d["pad"])),
        "torch": _torch_conv_forward,
    })
    yield Case("conv2d_backward", "im2col_conv", CONV_SIZES, _conv_inputs, {
        **twins(lambda k, d: partial(k.conv2d_backward, d["dout"], d["x"], d["weight"], d["stride"], d["pad"])),
        "torch": _torch_conv_backward,
    })


# ---------------------------------------------------------------------------------------------------------------
# Matrix product (fastnn/kernels/linalg.py)

MATMUL_SIZES = {
    "tiny": {"M": 5, "K": 7, "N": 3},
    # SimpleConvNet's first affine layer on an MNIST batch: (100, 4320) @ (4320, 100)
    "mnist": {"M": 100, "K": 4320, "N": 100},
    # a classifier head on CIFAR-sized features: (64, 4096) @ (4096, 512)
    "cifar": {"M": 64, "K": 4096, "N": 512},
}


def _matmul_inputs(p: Mapping[str, Any], dtype: np.dtype) -> dict[str, Any]:
    rng = _rng(7)
    return {"a": _rand(rng, (p["M"], p["K"]), dtype), "b": _rand(rng, (p["K"], p["N"]), dtype), **p}


def _cases_linalg() -> Iterator[Case]:
    yield Case("matmul", "linalg", MATMUL_SIZES, _matmul_inputs, {
        **twins(lambda k, d: partial(k.matmul, d["a"], d["b"])),
        "torch": lambda d: Run(partial(_torch().mm, _t(d["a"]), _t(d["b"])))})


# ---------------------------------------------------------------------------------------------------------------
# Pooling (fastnn/kernels/pooling.py)

POOL_SIZES = {
    "tiny": {"N": 2, "C": 3, "H": 7, "W": 8, "P": 3, "stride": 2, "pad": 1},
    # after SimpleConvNet's convolution: 30 maps of 24x24, 2x2 pool stride 2
    "mnist": {"N": 100, "C": 30, "H": 24, "W": 24, "P": 2, "stride": 2, "pad": 0},
    "cifar": {"N": 64, "C": 64, "H": 32, "W": 32, "P": 2, "stride": 2, "pad": 0},
}


def _pool_inputs(p: Mapping[str, Any], dtype: np.dtype) -> dict[str, Any]:
    rng = _rng(2)
    oh, ow = _out_hw(p, p["P"], p["P"])
    x = _rand(rng, (p["N"], p["C"], p["H"], p["W"]), dtype)
    d = {"x": x, "dout": _rand(rng, (p["N"], p["C"], oh, ow), dtype), **p}
    d["argmax"] = NUMPY.maxpool2d_forward(x, p["P"], p["P"], p["stride"], p["pad"])[1]
    return d


def _torch_pool(kind: str, backward: bool, d: dict[str, Any]) -> Run:
    F = _torch().nn.functional
    x = _t(d["x"], backward)
    if kind == "max":
        fwd = partial(F.max_pool2d, x, d["P"], d["stride"], d["pad"], return_indices=True)
    else:
        fwd = partial(F.avg_pool2d, x, d["P"], d["stride"], d["pad"], count_include_pad=True)
    if backward:
        return _torch_backward(fwd, (x,), d["dout"])
    # the indices torch returns are flat offsets into H*W, fastnn's are window offsets: compare outputs only
    return Run(fwd, lambda r: to_numpy(r[0] if isinstance(r, tuple) else r))


def _cases_pool() -> Iterator[Case]:
    traffic_fwd = traffic_bwd = _pool_traffic
    yield Case("maxpool2d_forward", "pooling", POOL_SIZES, _pool_inputs, {
        **twins(lambda k, d: partial(k.maxpool2d_forward, d["x"], d["P"], d["P"], d["stride"], d["pad"])),
        "torch": partial(_torch_pool, "max", False),
    }, traffic_fwd)
    yield Case("maxpool2d_backward", "pooling", POOL_SIZES, _pool_inputs, {
        **twins(lambda k, d: partial(k.maxpool2d_backward, d["dout"], d["argmax"], d["x"].shape, d["P"], d["P"],
                                     d["stride"], d["pad"])),
        "torch": partial(_torch_pool, "max", True),
    }, traffic_bwd)
    yield Case("avgpool2d_forward", "pooling", POOL_SIZES, _pool_inputs, {
        **twins(lambda k, d: partial(k.avgpool2d_forward, d["x"], d["P"], d["P"], d["stride"], d["pad"])),
        "torch": partial(_torch_pool, "avg", False),
    }, traffic_fwd)
    yield Case("avgpool2d_backward", "pooling", POOL_SIZES, _pool_inputs, {
        **twins(lambda k, d: partial(k.avgpool2d_backward, d["dout"], d["x"].shape, d["P"], d["P"], d["stride"],
                                     d["pad"])),
        "torch": partial(_torch_pool, "avg", True),
    }, traffic_bwd)


def _pool_traffic(p: Mapping[str, Any], dtype: np.dtype) -> int:
    """Forward reads x and writes out; backward reads dout and writes dx (argmax, a byte an output, left out)."""
    oh, ow = _out_hw(p, p["P"], p["P"])
    return p["N"] * p["C"] * (p["H"] * p["W"] + oh * ow) * dtype.itemsize


# ---------------------------------------------------------------------------------------------------------------
# Normalization (fastnn/kernels/normalization.py)

NORM2D_SIZES = {
    "tiny": {"shape": (3, 4, 5, 3), "groups": 2},
    "mnist": {"shape": (100, 30, 24, 24), "groups": 5},
    "cifar": {"shape": (64, 64, 32, 32), "groups": 32},
}
NORM1D_SIZES = {
    "tiny": {"shape": (5, 7)},
    # MultiLayerNetExtend's hidden layers: 100 features, batch 100
    "mnist": {"shape": (100, 100)},
    "cifar": {"shape": (256, 4096)},
}
MOMENTUM = 0.9
EPS = 1e-5


def _norm_inputs(kind: str) -> Callable[[Mapping[str, Any], np.dtype], dict[str, Any]]:
    def make(p: Mapping[str, Any], dtype: np.dtype) -> dict[str, Any]:
        rng = _rng(3)
        shape = tuple(p["shape"])
        pshape = shape[1:] if kind == "layer" else (shape[1],)
        x = _rand(rng, shape, dtype, 2.0) + dtype.type(0.5)
        d = {
            "x": x, "dout": _rand(rng, shape, dtype),
            "gamma": (1 + _rand(rng, pshape, dtype, 0.1)).astype(dtype), "beta": _rand(rng, pshape, dtype, 0.1),
            "running_mean": np.zeros(pshape, dtype), "running_var": np.ones(pshape, dtype), **p,
        }
        ref = NUMPY
        if kind == "batch":
            _, d["mean"], d["inv_std"] = ref.batchnorm_forward_train(
                x, d["gamma"], d["beta"], d["running_mean"].copy(), d["running_var"].copy(), MOMENTUM, EPS)
        elif kind == "layer":
            _, d["mean"], d["inv_std"] = ref.layernorm_forward(x, d["gamma"], d["beta"], EPS)
        else:
            _, d["mean"], d["inv_std"] = ref.groupnorm_forward(x, d["gamma"], d["beta"], p["groups"], EPS)
        return d

    return make


def _batchnorm_forward(k: Any, d: dict[str, Any]) -> Run:
    rm, rv = d["running_mean"].copy(), d["running_var"].copy()  # updated in place by every call
    return Run(partial(k.batchnorm_forward_train, d["x"], d["gamma"], d["beta"], rm, rv, MOMENTUM, EPS))


def _torch_norm(kind: str, backward: bool, d: dict[str, Any]) -> Run:
    F = _torch().nn.functional
    x, gamma, beta = _t(d["x"], backward), _t(d["gamma"], backward), _t(d["beta"], backward)
    if kind == "batch":
        rm, rv = _t(d["running_mean"]), _t(d["running_var"])
        # torch's momentum weighs the batch statistic, fastnn's (DLFS's) the running one
        fwd = partial(F.batch_norm, x, rm, rv, gamma, beta, training=True, momentum=1 - MOMENTUM, eps=EPS)
    elif kind == "layer":
        fwd = partial(F.layer_norm, x, tuple(x.shape[1:]), gamma, beta, EPS)
    else:
        fwd = partial(F.group_norm, x, d["groups"], gamma, beta, EPS)
    if backward:
        return _torch_backward(fwd, (x, gamma, beta), d["dout"])
    return Run(fwd)


def _norm_traffic(forward: bool) -> Callable[[Mapping[str, Any], np.dtype], int]:
    def traffic(p: Mapping[str, Any], dtype: np.dtype) -> int:
        # forward: read x, write out; backward: read dout and x, write dx (per-channel vectors are negligible)
        return (2 if forward else 3) * int(np.prod(p["shape"])) * dtype.itemsize

    return traffic


def _cases_norm() -> Iterator[Case]:
    for name, sizes in (("batchnorm2d", NORM2D_SIZES), ("batchnorm1d", NORM1D_SIZES)):
        make = _norm_inputs("batch")
        yield Case(f"{name}_forward", "normalization", sizes, make, {
            **twins(_batchnorm_forward), "torch": partial(_torch_norm, "batch", False)}, _norm_traffic(True))
        yield Case(f"{name}_backward", "normalization", sizes, make, {
            **twins(lambda k, d: partial(k.batchnorm_backward, d["dout"], d["x"], d["gamma"], d["mean"],
                                         d["inv_std"])),
            "torch": partial(_torch_norm, "batch", True)}, _norm_traffic(False))
    make = _norm_inputs("layer")
    yield Case("layernorm_forward", "normalization", NORM2D_SIZES, make, {
        **twins(lambda k, d: partial(k.layernorm_forward, d["x"], d["gamma"], d["beta"], EPS)),
        "torch": partial(_torch_norm, "layer", False)})
    yield Case("layernorm_backward", "normalization", NORM2D_SIZES, make, {
        **twins(lambda k, d: partial(k.layernorm_backward, d["dout"], d["x"], d["gamma"], d["mean"], d["inv_std"])),
        "torch": partial(_torch_norm, "layer", True)})
    make = _norm_inputs("group")
    yield Case("groupnorm_forward", "normalization", NORM2D_SIZES, make, {
        **twins(lambda k, d: partial(k.groupnorm_forward, d["x"], d["gamma"], d["beta"], d["groups"], EPS)),
        "torch": partial(_torch_norm, "group", False)})
    yield Case("groupnorm_backward", "normalization", NORM2D_SIZES, make, {
        **twins(lambda k, d: partial(k.groupnorm_backward, d["dout"], d["x"], d["gamma"], d["groups"], d["mean"],
                                     d["inv_std"])),
        "torch": partial(_torch_norm, "group", True)})


# ---------------------------------------------------------------------------------------------------------------
# Activations and losses (fastnn/kernels/activations.py, losses.py)

ACT_SIZES = {
    "tiny": {"shape": (3, 5, 7)},
    "mnist": {"shape": (100, 30, 24, 24)},
    "cifar": {"shape": (64, 64, 32, 32)},
}
LOSS_SIZES = {
    "tiny": {"N": 6, "K": 5},
    "mnist": {"N": 100, "K": 10},
    "cifar": {"N": 128, "K": 100},  # CIFAR-100
}


def _act_inputs(p: Mapping[str, Any], dtype: np.dtype) -> dict[str, Any]:
    rng = _rng(4)
    return {"x": _rand(rng, p["shape"], dtype), "dout": _rand(rng, p["shape"], dtype), **p}


def _loss_inputs(p: Mapping[str, Any], dtype: np.dtype) -> dict[str, Any]:
    rng = _rng(5)
    x = _rand(rng, (p["N"], p["K"]), dtype, 3.0)
    t = rng.integers(0, p["K"], p["N"])
    _, probs = NUMPY.softmax_cross_entropy_forward(x, t)
    return {"x": x, "t": t, "probs": probs, **p}


def _torch_relu(backward: bool, d: dict[str, Any]) -> Run:
    F = _torch().nn.functional
    x = _t(d["x"], backward)
    if backward:
        return _torch_backward(partial(F.relu, x), (x,), d["dout"])
    return Run(partial(F.relu, x))


def _torch_ce(backward: bool, d: dict[str, Any]) -> Run:
    torch = _torch()
    x, t = _t(d["x"], backward), torch.from_numpy(d["t"])
    fwd = partial(torch.nn.functional.cross_entropy, x, t)
    if backward:
        loss = fwd()
        return Run(partial(torch.autograd.grad, loss, (x,), retain_graph=True))
    return Run(fwd)


def _elementwise_traffic(streams: int) -> Callable[[Mapping[str, Any], np.dtype], int]:
    return lambda p, dtype: streams * int(np.prod(p["shape"])) * dtype.itemsize


def _cases_act() -> Iterator[Case]:
    yield Case("relu_forward", "activations_losses", ACT_SIZES, _act_inputs, {
        **twins(lambda k, d: partial(k.relu_forward, d["x"])), "torch": partial(_torch_relu, False)},
        _elementwise_traffic(2))
    yield Case("relu_backward", "activations_losses", ACT_SIZES, _act_inputs, {
        **twins(lambda k, d: partial(k.relu_backward, d["dout"], d["x"])), "torch": partial(_torch_relu, True)},
        _elementwise_traffic(3))
    yield Case("softmax_ce_forward", "activations_losses", LOSS_SIZES, _loss_inputs, {
        **twins(lambda k, d: partial(k.softmax_cross_entropy_forward, d["x"], d["t"])),
        "torch": partial(_torch_ce, False)})
    yield Case("softmax_ce_backward", "activations_losses", LOSS_SIZES, _loss_inputs, {
        **twins(lambda k, d: partial(k.softmax_cross_entropy_backward, d["probs"], d["t"])),
        "torch": partial(_torch_ce, True)})


# ---------------------------------------------------------------------------------------------------------------
# Optimizer steps (fastnn/kernels/optimizers.py)

OPT_SIZES = {
    "tiny": {"n": 1000},
    "mnist": {"n": 433_890},  # SimpleConvNet's parameter count
    "cifar": {"n": 10_000_000},
}
LR, BETA1, BETA2, ADAM_EPS = 1e-3, 0.9, 0.999, 1e-8


def _opt_inputs(p: Mapping[str, Any], dtype: np.dtype) -> dict[str, Any]:
    rng = _rng(6)
    n = p["n"]
    return {"param": _rand(rng, (n,), dtype), "grad": _rand(rng, (n,), dtype, 0.01),
            "m": _rand(rng, (n,), dtype, 0.001), "v": np.abs(_rand(rng, (n,), dtype, 1e-4)), **p}


def _fastnn_opt(kind: str, k: Any, d: dict[str, Any]) -> Run:
    p, g, m, v = d["param"].copy(), d["grad"], d["m"].copy(), d["v"].copy()  # state is updated in place
    if kind == "sgd":
        return Run(partial(k.sgd_step, p, g, LR), lambda _: (p,))
    if kind == "momentum":
        m[:] = 0  # a fresh velocity, as torch's first momentum step starts from
        return Run(partial(k.momentum_step, p, g, m, LR, 0.9), lambda _: (p, m))
    # step 1's bias corrections on every call: the cost does not depend on t, and the result stays comparable
    bc1, bc2 = 1 - BETA1, 1 - BETA2
    m[:] = 0
    v[:] = 0
    return Run(partial(k.adam_step, p, g, m, v, LR, BETA1, BETA2, ADAM_EPS, bc1, bc2), lambda _: (p, m, v))


def _torch_opt(kind: str, d: dict[str, Any]) -> Run:
    torch = _torch()
    p = _t(d["param"], True)
    p.grad = _t(d["grad"])
    if kind == "sgd":
        opt = torch.optim.SGD([p], lr=LR, fused=True)
        return Run(opt.step, lambda _: to_numpy(p))
    if kind == "momentum":
        # torch's buf = m*buf + g; p -= lr*buf is fastnn's v = m*v - lr*g; p += v with v = -lr*buf
        opt = torch.optim.SGD([p], lr=LR, momentum=0.9, fused=True)
        return Run(opt.step, lambda _: (p.detach().numpy(), -LR * opt.state[p]["momentum_buffer"].numpy()))
    opt = torch.optim.Adam([p], lr=LR, betas=(BETA1, BETA2), eps=ADAM_EPS, fused=True)
    return Run(opt.step, lambda _: (p.detach().numpy(), opt.state[p]["exp_avg"].numpy(),
                                    opt.state[p]["exp_avg_sq"].numpy()))


def _cases_opt() -> Iterator[Case]:
    # reads param, grad and each state array, writes param and each state array
    for kind, name, arrays in (("sgd", "sgd_step", 1), ("momentum", "momentum_step", 2), ("adam", "adam_step", 3)):
        streams = 2 * arrays + 1
        yield Case(name, "optimizers", OPT_SIZES, _opt_inputs, {
            **twins(partial(_fastnn_opt, kind)), "torch": partial(_torch_opt, kind)},
            lambda p, dtype, s=streams: s * p["n"] * dtype.itemsize)


# ---------------------------------------------------------------------------------------------------------------
# Whole training steps: forward, backward and an Adam update of the book's nets (fastnn.nets, fastnn.optim)

SIMPLE_CONVNET_SIZES = {
    "tiny": {"batch": 5, "input_dim": (1, 10, 10), "filter_num": 4, "filter_size": 3, "hidden": 8},
    # the book's ch07 SimpleConvNet on MNIST
    "mnist": {"batch": 100, "input_dim": (1, 28, 28), "filter_num": 30, "filter_size": 5, "hidden": 100},
    # the same net on CIFAR-10 images
    "cifar": {"batch": 100, "input_dim": (3, 32, 32), "filter_num": 30, "filter_size": 5, "hidden": 100},
}
MULTILAYER_BN_SIZES = {
    "tiny": {"batch": 7, "input_size": 12, "hidden": (6, 5)},
    # the book's ch06 batch-normalization experiment: five hidden layers of 100 on MNIST
    "mnist": {"batch": 100, "input_size": 784, "hidden": (100,) * 5},
    "cifar": {"batch": 100, "input_size": 3072, "hidden": (100,) * 5},
}
CLASSES = 10
TRAIN_LR, TRAIN_ADAM_EPS, BOOK_BN_EPS = 1e-3, 1e-7, 1e-6  # fastnn.optim.Adam's and the book's BatchNorm eps


def _train_inputs(p: Mapping[str, Any], dtype: np.dtype) -> dict[str, Any]:
    rng = _rng(7)
    shape = (p["batch"], *p["input_dim"]) if "input_dim" in p else (p["batch"], p["input_size"])
    return {"x": rng.random(shape).astype(dtype), "t": rng.integers(0, CLASSES, p["batch"]), "dtype": dtype, **p}


def _simple_convnet(d: dict[str, Any]) -> Any:
    from fastnn.nets import SimpleConvNet

    conv = {"filter_num": d["filter_num"], "filter_size": d["filter_size"], "pad": 0, "stride": 1}
    return SimpleConvNet(d["input_dim"], conv, d["hidden"], CLASSES, 0.01, dtype=d["dtype"], seed=0)


def _multilayer_bn(d: dict[str, Any]) -> Any:
    from fastnn.nets import MultiLayerNetExtend

    return MultiLayerNetExtend(d["input_size"], list(d["hidden"]), CLASSES, use_batchnorm=True, dtype=d["dtype"],
                               seed=0)


def _kernel_users() -> list[types.ModuleType]:
    """The fastnn modules that call kernels as ``kernels.<name>`` (layers, optimizers)."""
    import sys

    import fastnn.kernels
    import fastnn.nets
    import fastnn.optim  # noqa: F401 -- imported so that its modules are found

    return [m for name, m in list(sys.modules.items())
            if name.startswith("fastnn.") and getattr(m, "kernels", None) is fastnn.kernels]


def _with_kernels(namespace: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run with every layer and optimizer calling ``namespace`` (fastnn.reference) instead of fastnn.kernels.

    The NumPy training step is then the same network, the same optimizer and the same Python around the kernels:
    what differs from fastnn's step is the kernels alone. The swap costs a few attribute stores a call.
    """
    if namespace == "fastnn.kernels":
        return fn
    users = _kernel_users()
    replacement = importlib.import_module(namespace)
    original = importlib.import_module("fastnn.kernels")

    def call() -> Any:
        for m in users:
            m.kernels = replacement
        try:
            return fn()
        finally:
            for m in users:
                m.kernels = original

    return call


def _fastnn_train(build: Callable[[dict[str, Any]], Any], ns: _Namespace, d: dict[str, Any]) -> Run:
    from fastnn.layers import SoftmaxWithLoss
    from fastnn.optim import Adam

    net = build(d)
    # the operation torch runs: the exact cross-entropy (F.cross_entropy) and Adam in PyTorch's form; the book's
    # defaults (log(y + 1e-7), eps_hat) cost the same
    net.last_layer = SoftmaxWithLoss(exact=True)
    opt = Adam(lr=TRAIN_LR, eps=TRAIN_ADAM_EPS, eps_hat=False)
    x, t = d["x"], d["t"]

    def step() -> Any:
        opt.update(net.params, net.gradient(x, t))
        return net.last_layer.loss

    def result(loss: Any) -> tuple[np.ndarray, ...]:
        after = _with_kernels(ns._module, lambda: net.loss(x, t, train_flg=True))()
        return (np.asarray(loss), np.asarray(after), *(net.params[k] for k in _compared(net.params)))

    return Run(_with_kernels(ns._module, step), result)


def _compared(params: Mapping[str, Any]) -> list[str]:
    """Parameter keys whose update the implementations must agree on.

    A bias right before batch normalization has a zero gradient in exact arithmetic (normalization subtracts it
    again), so its computed gradient is rounding noise, which Adam scales up to steps of up to ``lr``: such biases
    are left out. The loss after the step checks that they change nothing.
    """
    return [k for k in params if not (k[0] == "b" and k[1:].isdigit() and f"gamma{k[1:]}" in params)]


def _torch_train(build: Callable[[dict[str, Any]], Any], d: dict[str, Any]) -> Run:
    """The same architecture in torch.nn (eager), started from the fastnn net's initial weights."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    net = build(d)  # for its initial weights and its parameter keys
    p = net.params
    tdtype = torch.float32 if d["dtype"] == np.float32 else torch.float64
    layers: list[Any] = []
    # fastnn key -> (torch parameter, stored transposed): Affine's W is (in, out), Linear's weight (out, in)
    keys: dict[str, tuple[Any, bool]] = {}
    if "input_dim" in d:
        conv = nn.Conv2d(d["input_dim"][0], d["filter_num"], d["filter_size"])
        fc1, fc2 = nn.Linear(*p["W2"].shape), nn.Linear(*p["W3"].shape)
        layers = [conv, nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(), fc1, nn.ReLU(), fc2]
        keys = {"W1": (conv.weight, False), "b1": (conv.bias, False), "W2": (fc1.weight, True),
                "b2": (fc1.bias, False), "W3": (fc2.weight, True), "b3": (fc2.bias, False)}
    else:
        n_affine = len(d["hidden"]) + 1
        for i in range(1, n_affine + 1):
            fc = nn.Linear(*p[f"W{i}"].shape)
            layers.append(fc)
            keys[f"W{i}"], keys[f"b{i}"] = (fc.weight, True), (fc.bias, False)
            if i < n_affine:
                # the book's momentum weighs the running statistic, torch's the batch one
                bn = nn.BatchNorm1d(p[f"W{i}"].shape[1], eps=BOOK_BN_EPS, momentum=0.1)
                layers += [bn, nn.ReLU()]
                keys[f"gamma{i}"], keys[f"beta{i}"] = (bn.weight, False), (bn.bias, False)
    model = nn.Sequential(*layers).to(tdtype).train()
    with torch.no_grad():
        for key, (param, transposed) in keys.items():
            param.copy_(torch.from_numpy(p[key].T.copy() if transposed else p[key]))
    opt = torch.optim.Adam(model.parameters(), lr=TRAIN_LR, eps=TRAIN_ADAM_EPS, fused=True)
    x, t = _t(d["x"]), torch.from_numpy(d["t"])

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), t)
        loss.backward()
        opt.step()
        return loss

    def result(loss: Any) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            after = F.cross_entropy(model(x), t)
        arrays = {k: param.detach().numpy() for k, (param, _) in keys.items()}
        return (loss.detach().numpy(), after.numpy(),
                *(arrays[k].T if keys[k][1] else arrays[k] for k in _compared(p)))

    return Run(step, result)


def _cases_training() -> Iterator[Case]:
    for name, sizes, build in (("train_simpleconvnet", SIMPLE_CONVNET_SIZES, _simple_convnet),
                               ("train_multilayer_bn", MULTILAYER_BN_SIZES, _multilayer_bn)):
        yield Case(name, "training", sizes, _train_inputs, {
            **twins(partial(_fastnn_train, build)), "torch": partial(_torch_train, build)})


# ---------------------------------------------------------------------------------------------------------------

def _all_cases() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for group in (_cases_conv, _cases_linalg, _cases_pool, _cases_norm, _cases_act, _cases_opt, _cases_training):
        for case in group():
            assert case.name not in cases, case.name
            cases[case.name] = case
    return cases


#: Every benchmark case by name, in table order.
CASES: dict[str, Case] = _all_cases()


def cases_of(module: str) -> list[Case]:
    """The cases an ``asv_bench`` module times."""
    return [c for c in CASES.values() if c.module == module]
