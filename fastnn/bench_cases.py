"""The one registry of fastnn's kernels: every public kernel, its benchmark shapes, its PyTorch equivalent.

Everything that exercises the kernels as a set reads this table and nothing else: the kernel-vs-twin and
kernel-vs-torch agreement tests (``tests/kernels/test_registry.py``), the valid calls of ``tests/robustness`` (the
bad-input variants are derived from them), ``python -m fastnn.bench``, the asv suite's parameters and the speed
targets (``python -m fastnn.bench --targets``). This is numbagg's ``COMPARISONS`` idea: a benchmark cannot time
something the tests do not check, and a new kernel cannot land without an entry (a test asserts that every name in
``fastnn.kernels.__all__`` is one).

A :class:`Case` is one timed operation. Most are one kernel call: ``kernel`` names the function (the same in
:mod:`fastnn.kernels` and :mod:`fastnn.reference`), ``args`` the keyword arguments taken from the inputs. The case
named after its kernel is that kernel's *entry*; further cases time the same kernel at another layout (the 1-D
batch norm). A case has

* ``sizes``: named shape parameters -- ``"tiny"`` (tests and robustness), ``"mnist"`` and ``"cifar"`` (benchmarks);
* ``make(p, dtype, rng)``: the inputs for the shape parameters ``p`` as NumPy arrays of ``dtype`` (drawn from
  ``rng``, seeded by default), plus the scalar arguments, under the kernel's argument names;
* ``variants``: other keyword forms of the call, checked against the twin too; ``"book"`` is the form fastnn's
  own layers and optimizers call (the book's ``log(p + 1e-7)``, Adam's ``eps_hat``), which the robustness tests
  use when PyTorch has no equivalent to time it against;
* ``inplace``: the arguments the kernel updates by contract (each run updates its own copies);
* ``torch``: the equivalent PyTorch CPU operation, as a function of the inputs returning a :class:`Run`;
* ``goal``: for the speed targets, the size timed and fastnn's time as a fraction of PyTorch's to stay under.

A case that is not one kernel call (a forward and its backward, a whole training step) gives ``steps`` instead,
a function of the kernel module (:mod:`fastnn.kernels` or :mod:`fastnn.reference`) and the inputs.

Everything an implementation needs besides the timed call (copies of state it updates in place, torch tensors,
the autograd graph a backward pass walks) is built when the run is prepared, so timings hold the operation only.
torch computes fewer by-products than fastnn (no ``mean``/``inv_std`` from a norm forward, flat indices rather
than window offsets from max pooling): a torch result is the *leading* part of the canonical tuple and is compared
on that part.
"""

from __future__ import annotations

import importlib.util
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from . import backend, kernels, reference
from .layers import SoftmaxWithLoss
from .nets import DeepConvNet, MultiLayerNetExtend, SimpleConvNet
from .optim import Adam

IMPLS = ("fastnn", "numpy", "torch")
SIZES = ("mnist", "cifar")
DTYPES = ("float32", "float64")
#: The seed of every case's inputs unless a caller passes its own generator.
SEED = 20240

Inputs = dict[str, Any]


@dataclass(frozen=True)
class Run:
    """A prepared benchmark: ``call()`` is the timed operation, ``result(call())`` its canonical outputs."""

    call: Callable[[], Any]
    result: Callable[[Any], tuple[np.ndarray, ...]] = field(default=lambda r: to_numpy(r))


@dataclass(frozen=True)
class Goal:
    """A speed target: ``title`` is its row in the targets table, timed at ``size`` in float32; fastnn's time
    should be at most ``ratio`` times PyTorch's."""

    title: str
    size: str
    ratio: float = 1.0


@dataclass(frozen=True)
class Case:
    """One benchmarked and tested operation (see the module docstring)."""

    name: str
    module: str  # the kernel family, and the asv_bench module whose classes time it
    sizes: Mapping[str, Mapping[str, Any]]
    make: Callable[[Mapping[str, Any], np.dtype, np.random.Generator], Inputs]
    kernel: str | None = None
    args: tuple[str, ...] = ()
    variants: Mapping[str, Callable[[Inputs], Inputs]] = field(default_factory=dict)
    inplace: tuple[str, ...] = ()
    torch: Callable[[Inputs], Run] | None = None
    steps: Callable[[types.ModuleType, Inputs], Run] | None = None
    #: Bytes a call must read and write at least (each input read once, each output written once), for the
    #: achieved-bandwidth column; None where the operation is compute-bound.
    traffic: Callable[[Mapping[str, Any], np.dtype], int] | None = None
    dtypes: tuple[str, ...] = DTYPES
    goal: Goal | None = None

    @property
    def impls(self) -> tuple[str, ...]:
        """The implementations this case has: ``fastnn`` and ``numpy`` always, ``torch`` where one exists."""
        return ("fastnn", "numpy", "torch") if self.torch is not None else ("fastnn", "numpy")

    def params(self, size: str) -> Mapping[str, Any]:
        if size not in self.sizes:
            raise NotImplementedError(f"{self.name} has no size {size!r} (it has {sorted(self.sizes)})")
        return self.sizes[size]

    def inputs(self, size: str, dtype: str | np.dtype, rng: np.random.Generator | None = None) -> Inputs:
        """The inputs of ``size`` in ``dtype`` (the same arrays for every implementation; seeded unless ``rng``)."""
        dt = np.dtype(dtype)
        if dt.name not in self.dtypes:
            raise NotImplementedError(f"{self.name} is not benchmarked in {dt.name}")
        return self.make(self.params(size), dt, np.random.default_rng(SEED) if rng is None else rng)

    def kwargs(self, inputs: Inputs, variant: str | None = None) -> Inputs:
        """The kernel's keyword arguments from ``inputs`` (in the form ``variant`` when given)."""
        kw = {a: inputs[a] for a in self.args}
        if variant is not None:
            kw.update(self.variants[variant](inputs))
        return kw

    def prepare(self, impl: str, size: str, dtype: str | np.dtype, inputs: Inputs | None = None,
                variant: str | None = None) -> Run:
        """A :class:`Run` of ``impl``; raises NotImplementedError when that implementation is unavailable here."""
        if impl not in self.impls:
            raise NotImplementedError(f"{self.name} has no {impl} implementation")
        if impl == "torch" and not torch_available():
            raise NotImplementedError("torch is not installed")
        d = self.inputs(size, dtype) if inputs is None else inputs
        if impl == "torch":
            return self.torch(d)
        ns = kernels if impl == "fastnn" else reference
        if self.steps is not None:
            return self.steps(ns, d)
        kw = self.kwargs(d, variant)
        for a in self.inplace:
            kw[a] = kw[a].copy()  # each run updates its own state
        state = tuple(kw[a] for a in self.inplace)
        return Run(partial(getattr(ns, self.kernel), **kw), lambda r: (*to_numpy(r), *state))

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
# Helpers

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
    return Run(partial(torch.autograd.grad, out, grads_of, _t(dout), retain_graph=True))


def _fwd_bwd(forward: Callable[..., Any], leaves: tuple[Any, ...], dout: np.ndarray) -> Run:
    """A torch forward and its backward in one call (the graph rebuilt each time, as in training); the result is
    the leaves' gradients after one call."""
    td = _t(dout)

    def step() -> None:
        out = forward()
        (out[0] if isinstance(out, tuple) else out).backward(td)

    return Run(step, lambda _: tuple(leaf.grad.numpy() for leaf in leaves))


def _rand(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _out_hw(p: Mapping[str, Any], fh: int, fw: int) -> tuple[int, int]:
    sh, sw = _pair(p["stride"])
    ph, pw = _pair(p["pad"])
    return (p["H"] + 2 * ph - fh) // sh + 1, (p["W"] + 2 * pw - fw) // sw + 1


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _streams(n: int) -> Callable[[Mapping[str, Any], np.dtype], int]:
    """Traffic of ``n`` passes over an array of ``p["shape"]`` (elementwise kernels, norms, optimizer steps)."""
    return lambda p, dtype: n * int(np.prod(p["shape"])) * dtype.itemsize


# ---------------------------------------------------------------------------------------------------------------
# im2col / col2im and convolution (fastnn/kernels/im2col.py, conv.py)

CONV_SIZES = {
    "tiny": {"N": 2, "C": 3, "H": 6, "W": 6, "FN": 4, "FH": 3, "FW": 3, "stride": 1, "pad": 1},
    # Deep Learning from Scratch SimpleConvNet's convolution on an MNIST batch
    "mnist": {"N": 100, "C": 1, "H": 28, "W": 28, "FN": 30, "FH": 5, "FW": 5, "stride": 1, "pad": 0},
    # a VGG-style 3x3 layer on CIFAR-sized feature maps
    "cifar": {"N": 64, "C": 64, "H": 32, "W": 32, "FN": 64, "FH": 3, "FW": 3, "stride": 1, "pad": 1},
}
# windows that overlap and are clipped by the padding at the tiny size
IM2COL_SIZES = {**CONV_SIZES, "tiny": {"N": 2, "C": 3, "H": 5, "W": 5, "FN": 4, "FH": 3, "FW": 3, "stride": 2,
                                       "pad": 1}}


def _conv_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    oh, ow = _out_hw(p, p["FH"], p["FW"])
    fan_in = p["C"] * p["FH"] * p["FW"]
    x = _rand(rng, (p["N"], p["C"], p["H"], p["W"]), dtype)
    return {
        "x": x, "W": _rand(rng, (p["FN"], p["C"], p["FH"], p["FW"]), dtype, np.sqrt(2.0 / fan_in)),
        "b": _rand(rng, (p["FN"],), dtype, 0.1), "dout": _rand(rng, (p["N"], p["FN"], oh, ow), dtype),
        "col": _rand(rng, (p["N"] * oh * ow, fan_in), dtype),
        "filter_h": p["FH"], "filter_w": p["FW"], "input_shape": x.shape, "stride": p["stride"], "pad": p["pad"],
    }


def _torch_im2col(d: Inputs) -> Run:
    F = _torch().nn.functional
    x = _t(d["x"])
    fh, fw = d["filter_h"], d["filter_w"]
    k = x.shape[1] * fh * fw

    def im2col() -> Any:
        # unfold gives (N, C*FH*FW, OH*OW); DLFS's layout is (N*OH*OW, C*FH*FW), so the transpose copy counts
        return F.unfold(x, (fh, fw), padding=d["pad"], stride=d["stride"]).transpose(1, 2).reshape(-1, k)

    return Run(im2col)


def _torch_col2im(d: Inputs) -> Run:
    F = _torch().nn.functional
    n, _, h, w = d["input_shape"]
    col = _t(d["col"])
    fh, fw = d["filter_h"], d["filter_w"]

    def col2im() -> Any:
        return F.fold(col.reshape(n, -1, col.shape[1]).transpose(1, 2), (h, w), (fh, fw), padding=d["pad"],
                      stride=d["stride"])

    return Run(col2im)


def _torch_conv(d: Inputs, grad: bool = False) -> tuple[Callable[[], Any], tuple[Any, ...]]:
    F = _torch().nn.functional
    x, w, b = _t(d["x"], grad), _t(d["W"], grad), _t(d["b"], grad)
    return partial(F.conv2d, x, w, b, stride=d["stride"], padding=d["pad"]), (x, w, b)


def _conv_steps(k: types.ModuleType, d: Inputs) -> Run:
    """Forward then backward sharing the workspace a Convolution layer keeps (``cache``)."""
    x, w, b, dout, s, p = d["x"], d["W"], d["b"], d["dout"], d["stride"], d["pad"]
    ws: dict = {}

    def step() -> Any:
        k.conv2d_forward(x, w, b, s, p, cache=ws)
        return k.conv2d_backward(dout, x, w, s, p, cache=ws)

    return Run(step)


def _cases_conv() -> Iterator[Case]:
    yield Case("im2col", "im2col_conv", IM2COL_SIZES, _conv_inputs, "im2col",
               ("x", "filter_h", "filter_w", "stride", "pad"), torch=_torch_im2col)
    yield Case("col2im", "im2col_conv", IM2COL_SIZES, _conv_inputs, "col2im",
               ("col", "input_shape", "filter_h", "filter_w", "stride", "pad"), torch=_torch_col2im)
    yield Case("conv2d_forward", "im2col_conv", CONV_SIZES, _conv_inputs, "conv2d_forward",
               ("x", "W", "b", "stride", "pad"), torch=lambda d: Run(_torch_conv(d)[0]))
    yield Case("conv2d_backward", "im2col_conv", CONV_SIZES, _conv_inputs, "conv2d_backward",
               ("dout", "x", "W", "stride", "pad"), variants={"no_dx": lambda d: {"need_dx": False}},
               torch=lambda d: _torch_backward(*_torch_conv(d, True), d["dout"]))
    yield Case("conv2d_forward_backward", "im2col_conv", CONV_SIZES, _conv_inputs, steps=_conv_steps,
               torch=lambda d: _fwd_bwd(*_torch_conv(d, True), d["dout"]),
               goal=Goal("conv 3x3 pad 1, N64 C64 32x32, 64 filters, fwd+bwd", "cifar"))


# ---------------------------------------------------------------------------------------------------------------
# Convolution + ReLU (+ 2x2 max-pool), the fused runs of the book's conv nets (fastnn/kernels/conv.py)

CONV_RELU_SIZES = {
    # odd output (7x9): the last row and column are in no pooling window
    "tiny": {"N": 2, "C": 3, "H": 7, "W": 9, "FN": 4, "FH": 3, "FW": 3, "stride": 1, "pad": 1},
    # DeepConvNet's second convolution on an MNIST batch (Winograd path)
    "mnist": {"N": 100, "C": 16, "H": 28, "W": 28, "FN": 16, "FH": 3, "FW": 3, "stride": 1, "pad": 1},
    # SimpleConvNet's convolution on a CIFAR batch (im2col path)
    "cifar": {"N": 100, "C": 3, "H": 32, "W": 32, "FN": 30, "FH": 5, "FW": 5, "stride": 1, "pad": 0},
}


def _conv_relu_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator, pool: bool = False
                      ) -> Inputs:
    """The convolution's inputs, and the forward's results ``out`` (and ``argmax``) with a ``dout`` of their shape."""
    d = _conv_inputs(p, dtype, rng)
    if pool:
        d["out"], d["argmax"] = reference.conv2d_relu_maxpool_forward(d["x"], d["W"], d["b"], d["stride"], d["pad"])
    else:
        d["out"] = reference.conv2d_relu_forward(d["x"], d["W"], d["b"], d["stride"], d["pad"])
    d["dout"] = _rand(rng, d["out"].shape, dtype)
    return d


def _torch_conv_relu(d: Inputs, grad: bool = False, pool: bool = False) -> tuple[Callable[[], Any], tuple[Any, ...]]:
    F = _torch().nn.functional
    conv, leaves = _torch_conv(d, grad)
    if pool:
        return lambda: F.max_pool2d(F.relu(conv()), 2, 2), leaves
    return lambda: F.relu(conv()), leaves


def _cases_conv_relu() -> Iterator[Case]:
    conv = ("x", "W", "b", "stride", "pad")
    grad = ("x", "W", "stride", "pad")
    for pool, stem in ((False, "conv2d_relu"), (True, "conv2d_relu_maxpool")):
        make = partial(_conv_relu_inputs, pool=pool)
        yield Case(f"{stem}_forward", "im2col_conv", CONV_RELU_SIZES, make, f"{stem}_forward", conv,
                   torch=lambda d, pool=pool: Run(_torch_conv_relu(d, pool=pool)[0]))
        yield Case(f"{stem}_backward", "im2col_conv", CONV_RELU_SIZES, make, f"{stem}_backward",
                   ("dout", "out", *(("argmax",) if pool else ()), *grad),
                   variants={"no_dx": lambda d: {"need_dx": False}},
                   torch=lambda d, pool=pool: _torch_backward(*_torch_conv_relu(d, True, pool), d["dout"]))


# ---------------------------------------------------------------------------------------------------------------
# Matrix product (fastnn/kernels/linalg.py)

MATMUL_SIZES = {
    "tiny": {"M": 4, "K": 6, "N": 3},
    # SimpleConvNet's first affine layer on an MNIST batch: (100, 4320) @ (4320, 100)
    "mnist": {"M": 100, "K": 4320, "N": 100},
    # a classifier head on CIFAR-sized features: (64, 4096) @ (4096, 512)
    "cifar": {"M": 64, "K": 4096, "N": 512},
}


def _matmul_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    return {"a": _rand(rng, (p["M"], p["K"]), dtype), "b": _rand(rng, (p["K"], p["N"]), dtype)}


def _cases_linalg() -> Iterator[Case]:
    yield Case("matmul", "linalg", MATMUL_SIZES, _matmul_inputs, "matmul", ("a", "b"),
               torch=lambda d: Run(partial(_torch().mm, _t(d["a"]), _t(d["b"]))))


# ---------------------------------------------------------------------------------------------------------------
# Pooling (fastnn/kernels/pooling.py)

POOL_SIZES = {
    "tiny": {"N": 2, "C": 3, "H": 5, "W": 5, "P": 3, "stride": 2, "pad": 1},
    # after SimpleConvNet's convolution: 30 maps of 24x24, 2x2 pool stride 2
    "mnist": {"N": 100, "C": 30, "H": 24, "W": 24, "P": 2, "stride": 2, "pad": 0},
    "cifar": {"N": 64, "C": 64, "H": 32, "W": 32, "P": 2, "stride": 2, "pad": 0},
}


def _pool_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    oh, ow = _out_hw(p, p["P"], p["P"])
    x = _rand(rng, (p["N"], p["C"], p["H"], p["W"]), dtype)
    d = {"x": x, "dout": _rand(rng, (p["N"], p["C"], oh, ow), dtype), "input_shape": x.shape, "pool_h": p["P"],
         "pool_w": p["P"], "stride": p["stride"], "pad": p["pad"]}
    d["argmax"] = reference.maxpool2d_forward(x, p["P"], p["P"], p["stride"], p["pad"])[1]
    return d


def _torch_pool(kind: str, d: Inputs, grad: bool = False) -> tuple[Callable[[], Any], tuple[Any, ...]]:
    F = _torch().nn.functional
    x = _t(d["x"], grad)
    if kind == "max":
        return partial(F.max_pool2d, x, d["pool_h"], d["stride"], d["pad"], return_indices=True), (x,)
    return partial(F.avg_pool2d, x, d["pool_h"], d["stride"], d["pad"], count_include_pad=True), (x,)


def _torch_pool_forward(kind: str, d: Inputs) -> Run:
    # the indices torch returns are flat offsets into H*W, fastnn's are window offsets: compare outputs only
    return Run(_torch_pool(kind, d)[0], lambda r: to_numpy(r[0] if isinstance(r, tuple) else r))


def _maxpool_steps(k: types.ModuleType, d: Inputs) -> Run:
    x, dout, s, p = d["x"], d["dout"], d["stride"], d["pad"]

    def step() -> Any:
        _, arg = k.maxpool2d_forward(x, d["pool_h"], d["pool_w"], s, p)
        return k.maxpool2d_backward(dout, arg, x.shape, d["pool_h"], d["pool_w"], s, p)

    return Run(step)


def _pool_traffic(p: Mapping[str, Any], dtype: np.dtype) -> int:
    """Forward reads x and writes out; backward reads dout and writes dx (argmax, a byte an output, left out)."""
    oh, ow = _out_hw(p, p["P"], p["P"])
    return p["N"] * p["C"] * (p["H"] * p["W"] + oh * ow) * dtype.itemsize


def _cases_pool() -> Iterator[Case]:
    window = ("pool_h", "pool_w", "stride", "pad")
    yield Case("maxpool2d_forward", "pooling", POOL_SIZES, _pool_inputs, "maxpool2d_forward", ("x", *window),
               torch=partial(_torch_pool_forward, "max"), traffic=_pool_traffic)
    yield Case("maxpool2d_backward", "pooling", POOL_SIZES, _pool_inputs, "maxpool2d_backward",
               ("dout", "argmax", "input_shape", *window),
               # cs231n's reshape layer: equal maxima share the gradient, found from x
               variants={"split": lambda d: {"argmax": None, "ties": "split", "x": d["x"]}},
               torch=lambda d: _torch_backward(*_torch_pool("max", d, True), d["dout"]), traffic=_pool_traffic)
    yield Case("maxpool2d_forward_backward", "pooling", POOL_SIZES, _pool_inputs, steps=_maxpool_steps,
               torch=lambda d: _fwd_bwd(*_torch_pool("max", d, True), d["dout"]),
               traffic=lambda p, dtype: 2 * _pool_traffic(p, dtype),
               goal=Goal("max-pool 2x2 s2, N64 C64 32x32, fwd+bwd", "cifar", 0.5))
    yield Case("avgpool2d_forward", "pooling", POOL_SIZES, _pool_inputs, "avgpool2d_forward", ("x", *window),
               torch=partial(_torch_pool_forward, "avg"), traffic=_pool_traffic)
    yield Case("avgpool2d_backward", "pooling", POOL_SIZES, _pool_inputs, "avgpool2d_backward",
               ("dout", "input_shape", *window),
               torch=lambda d: _torch_backward(*_torch_pool("avg", d, True), d["dout"]), traffic=_pool_traffic)


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

_NORM_ARGS = ("gamma", "beta")
_NORM_BACKWARD = ("dout", "x", "gamma", "mean", "inv_std")


def _norm_inputs(kind: str) -> Callable[[Mapping[str, Any], np.dtype, np.random.Generator], Inputs]:
    def make(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
        shape = tuple(p["shape"])
        pshape = shape[1:] if kind == "layer" else (shape[1],)
        x = _rand(rng, shape, dtype, 2.0) + dtype.type(0.5)
        d = {
            "x": x, "dout": _rand(rng, shape, dtype),
            "gamma": (1 + _rand(rng, pshape, dtype, 0.1)).astype(dtype), "beta": _rand(rng, pshape, dtype, 0.1),
            "running_mean": np.zeros(pshape, dtype), "running_var": np.ones(pshape, dtype),
            "momentum": MOMENTUM, "eps": EPS, "groups": p.get("groups"),
        }
        if kind == "batch":
            _, d["mean"], d["inv_std"] = reference.batchnorm_forward_train(
                x, d["gamma"], d["beta"], d["running_mean"].copy(), d["running_var"].copy(), MOMENTUM, EPS)
        elif kind == "group":
            _, d["mean"], d["inv_std"] = reference.groupnorm_forward(x, d["gamma"], d["beta"], p["groups"], EPS)
        else:
            _, d["mean"], d["inv_std"] = getattr(reference, f"{kind}norm_forward")(x, d["gamma"], d["beta"], EPS)
        return d

    return make


def _torch_norm(kind: str, d: Inputs, grad: bool = False, training: bool = True
                ) -> tuple[Callable[[], Any], tuple[Any, ...]]:
    F = _torch().nn.functional
    x, gamma, beta = _t(d["x"], grad), _t(d["gamma"], grad), _t(d["beta"], grad)
    if kind == "batch":
        rm, rv = _t(d["running_mean"]), _t(d["running_var"])
        # torch's momentum weighs the batch statistic, fastnn's (DLFS's) the running one
        fwd = partial(F.batch_norm, x, rm, rv, gamma, beta, training=training, momentum=1 - MOMENTUM, eps=EPS)
    elif kind == "layer":
        fwd = partial(F.layer_norm, x, tuple(x.shape[1:]), gamma, beta, EPS)
    elif kind == "group":
        fwd = partial(F.group_norm, x, d["groups"], gamma, beta, EPS)
    else:
        fwd = partial(F.instance_norm, x, weight=gamma, bias=beta, eps=EPS)
    return fwd, (x, gamma, beta)


def _bn_steps(k: types.ModuleType, d: Inputs) -> Run:
    """A training forward then its backward, as a BatchNormalization layer runs them."""
    x, gamma, beta, dout = d["x"], d["gamma"], d["beta"], d["dout"]
    rm, rv = d["running_mean"].copy(), d["running_var"].copy()  # updated in place by every call

    def step() -> Any:
        _, mean, inv_std = k.batchnorm_forward_train(x, gamma, beta, rm, rv, MOMENTUM, EPS)
        return k.batchnorm_backward(dout, x, gamma, mean, inv_std)

    return Run(step)


def _norm_pair(kind: str, stem: str, sizes: Mapping[str, Any], forward_args: tuple[str, ...],
               backward_args: tuple[str, ...] = _NORM_BACKWARD) -> Iterator[Case]:
    """The forward and backward entries of one normalization, torch's equivalents from ``_torch_norm``."""
    make = _norm_inputs(kind)
    yield Case(f"{stem}_forward", "normalization", sizes, make, f"{stem}_forward", forward_args,
               torch=lambda d: Run(_torch_norm(kind, d)[0]), traffic=_streams(2))
    yield Case(f"{stem}_backward", "normalization", sizes, make, f"{stem}_backward", backward_args,
               torch=lambda d: _torch_backward(*_torch_norm(kind, d, True), d["dout"]), traffic=_streams(3))


def _cases_norm() -> Iterator[Case]:
    train = ("x", *_NORM_ARGS, "running_mean", "running_var", "momentum", "eps")
    # per channel of (N, C, H, W) feature maps, and per feature of (N, D) activations
    for layout, sizes in (("2d", {**NORM2D_SIZES, "tiny": {"shape": (4, 3, 2, 2)}}), ("1d", NORM1D_SIZES)):
        make = _norm_inputs("batch")
        entry = layout == "2d"
        yield Case("batchnorm_forward_train" if entry else "batchnorm1d_forward", "normalization", sizes, make,
                   "batchnorm_forward_train", train, inplace=("running_mean", "running_var"),
                   torch=lambda d: Run(_torch_norm("batch", d)[0]), traffic=_streams(2))
        if entry:
            yield Case("batchnorm_forward_infer", "normalization", sizes, make, "batchnorm_forward_infer",
                       ("x", *_NORM_ARGS, "running_mean", "running_var", "eps"),
                       torch=lambda d: Run(_torch_norm("batch", d, training=False)[0]), traffic=_streams(2))
        yield Case("batchnorm_backward" if entry else "batchnorm1d_backward", "normalization", sizes, make,
                   "batchnorm_backward", _NORM_BACKWARD,
                   torch=lambda d: _torch_backward(*_torch_norm("batch", d, True), d["dout"]), traffic=_streams(3))
        shape = "(64,64,32,32) per channel" if entry else "(256,4096)"
        yield Case(f"batchnorm{layout}_forward_backward", "normalization", sizes, make, steps=_bn_steps,
                   torch=lambda d: _fwd_bwd(*_torch_norm("batch", d, True), d["dout"]), traffic=_streams(5),
                   goal=Goal(f"batchnorm train {shape}, fwd+bwd", "cifar"))
    yield from _norm_pair("layer", "layernorm", {**NORM2D_SIZES, "tiny": {"shape": (4, 3, 2)}},
                          ("x", *_NORM_ARGS, "eps"))
    groups = {**NORM2D_SIZES, "tiny": {"shape": (2, 4, 3, 3), "groups": 2}}
    yield from _norm_pair("group", "groupnorm", groups, ("x", *_NORM_ARGS, "groups", "eps"),
                          ("dout", "x", "gamma", "groups", "mean", "inv_std"))
    yield from _norm_pair("instance", "instancenorm", {k: {"shape": v["shape"]} for k, v in groups.items()},
                          ("x", *_NORM_ARGS, "eps"))


# ---------------------------------------------------------------------------------------------------------------
# Activations, dropout and losses (fastnn/kernels/activations.py, dropout.py, losses.py)

ACT_SIZES = {
    "tiny": {"shape": (2, 3, 4, 5)},
    "mnist": {"shape": (100, 30, 24, 24)},
    "cifar": {"shape": (64, 64, 32, 32)},
}
LOSS_SIZES = {
    "tiny": {"N": 4, "K": 5},
    "mnist": {"N": 100, "K": 10},
    "cifar": {"N": 128, "K": 100},  # CIFAR-100
}
LEAKY_ALPHA = 0.1
DROP_RATIO, DROP_SEED, DROP_SCALE = 0.3, 12345, 2.0
BOOK_DELTA = 1e-7  # the book's log(p + 1e-7) (fastnn.layers.SoftmaxWithLoss's default)


def _act_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    shape = tuple(p["shape"])
    return {"x": _rand(rng, shape, dtype), "dout": _rand(rng, shape, dtype),
            "out": np.tanh(_rand(rng, shape, dtype)),  # a sigmoid's or tanh's output lies in (-1, 1)
            "mask": rng.random(shape) >= DROP_RATIO, "alpha": LEAKY_ALPHA, "shape": shape, "drop_ratio": DROP_RATIO,
            "seed": DROP_SEED, "scale": DROP_SCALE}


def _loss_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    x = _rand(rng, (p["N"], p["K"]), dtype, 3.0)
    t = rng.integers(0, p["K"], p["N"])
    return {"x": x, "t": t, "y": t, "probs": reference.softmax_forward(x), "dout": 1.0}


def _torch_act(op: str, d: Inputs, grad: bool = False) -> tuple[Callable[[], Any], tuple[Any, ...]]:
    x = _t(d["x"], grad)
    fn = getattr(_torch().nn.functional, op)
    return (partial(fn, x, d["alpha"]) if op == "leaky_relu" else partial(fn, x)), (x,)


def _torch_act_backward(op: str, d: Inputs) -> Run:
    """sigmoid and tanh backward from the forward's output, as fastnn's take it (ATen's own backward ops)."""
    return Run(partial(getattr(_torch().ops.aten, f"{op}_backward"), _t(d["dout"]), _t(d["out"])))


def _torch_ce(d: Inputs) -> Run:
    torch = _torch()
    x, t = _t(d["x"], True), torch.from_numpy(d["t"])
    loss = torch.nn.functional.cross_entropy(x, t)
    return Run(partial(torch.autograd.grad, loss, (x,), retain_graph=True))


def _torch_svm(d: Inputs) -> Run:
    torch = _torch()
    x, y = _t(d["x"], True), torch.from_numpy(d["y"])

    def svm() -> tuple[Any, Any]:
        # multi_margin_loss averages over the K classes too; cs231n's hinge loss sums over them
        loss = x.shape[1] * torch.nn.functional.multi_margin_loss(x, y)
        return loss, torch.autograd.grad(loss, x)[0]

    return Run(svm)


def _cases_act() -> Iterator[Case]:
    for op in ("relu", "leaky_relu"):
        fwd_args = ("x", "alpha") if op == "leaky_relu" else ("x",)
        yield Case(f"{op}_forward", "activations_losses", ACT_SIZES, _act_inputs, f"{op}_forward", fwd_args,
                   torch=lambda d, op=op: Run(_torch_act(op, d)[0]), traffic=_streams(2))
        yield Case(f"{op}_backward", "activations_losses", ACT_SIZES, _act_inputs, f"{op}_backward",
                   ("dout", *fwd_args), torch=lambda d, op=op: _torch_backward(*_torch_act(op, d, True), d["dout"]),
                   traffic=_streams(3))
    for op in ("sigmoid", "tanh"):
        yield Case(f"{op}_forward", "activations_losses", ACT_SIZES, _act_inputs, f"{op}_forward", ("x",),
                   torch=lambda d, op=op: Run(_torch_act(op, d)[0]), traffic=_streams(2))
        yield Case(f"{op}_backward", "activations_losses", ACT_SIZES, _act_inputs, f"{op}_backward",
                   ("dout", "out"), torch=partial(_torch_act_backward, op), traffic=_streams(3))
    # dropout: torch draws its masks from its own generator, so there is nothing to compare with
    drop = {**ACT_SIZES, "tiny": {"shape": (3, 4, 5)}}
    yield Case("dropout_mask", "activations_losses", drop, _act_inputs, "dropout_mask",
               ("shape", "drop_ratio", "seed"), traffic=lambda p, dtype: int(np.prod(p["shape"])))
    yield Case("dropout_forward", "activations_losses", drop, _act_inputs, "dropout_forward", ("x", "mask", "scale"))
    yield Case("dropout_backward", "activations_losses", drop, _act_inputs, "dropout_backward",
               ("dout", "mask", "scale"))
    yield Case("softmax_forward", "activations_losses", LOSS_SIZES, _loss_inputs, "softmax_forward", ("x",),
               torch=lambda d: Run(partial(_torch().softmax, _t(d["x"]), 1)))
    yield Case("softmax_cross_entropy_forward", "activations_losses", LOSS_SIZES, _loss_inputs,
               "softmax_cross_entropy_forward", ("x", "t"), variants={"book": lambda d: {"delta": BOOK_DELTA}},
               torch=lambda d: Run(partial(_torch().nn.functional.cross_entropy, _t(d["x"]),
                                           _torch().from_numpy(d["t"]))))
    yield Case("softmax_cross_entropy_backward", "activations_losses", LOSS_SIZES, _loss_inputs,
               "softmax_cross_entropy_backward", ("probs", "t", "dout"), torch=_torch_ce)
    yield Case("svm_loss", "activations_losses", LOSS_SIZES, _loss_inputs, "svm_loss", ("x", "y"), torch=_torch_svm)


# ---------------------------------------------------------------------------------------------------------------
# Optimizer steps (fastnn/kernels/optimizers.py)

OPT_SIZES = {
    # weight decay at the tiny size only: it exercises the decay path in the tests; the benchmarks time the
    # plain step (the torch CPU optimizers take the same path either way)
    "tiny": {"shape": (3, 4), "weight_decay": 0.01},
    "mnist": {"shape": (433_890,), "weight_decay": 0.0},  # SimpleConvNet's parameter count
    "cifar": {"shape": (10_000_000,), "weight_decay": 0.0},
}
LR, BETA1, BETA2, ADAM_EPS = 1e-3, 0.9, 0.999, 1e-8
_ADAM = ("lr", "beta1", "beta2", "eps", "bias_correction1", "bias_correction2", "weight_decay")


def _opt_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    shape = tuple(p["shape"])
    # fresh state, as torch's first step starts from (one array each: a call must never see two aliased)
    state = {k: np.zeros(shape, dtype) for k in ("velocity", "buf", "h", "sq", "m", "v")}
    return {"param": _rand(rng, shape, dtype), "grad": _rand(rng, shape, dtype, 0.01), **state,
            "lr": LR, "momentum": 0.9, "decay_rate": 0.99, "beta1": BETA1, "beta2": BETA2, "eps": ADAM_EPS,
            # step 1's bias corrections on every call: the cost does not depend on t, and torch starts there too
            "bias_correction1": 1 - BETA1, "bias_correction2": 1 - BETA2, "final_lr": 0.1, "gamma": 1e-3,
            "step": 1, "weight_decay": p["weight_decay"]}


def _torch_opt(cls: str, state: tuple[str, ...], d: Inputs, **hyper: Any) -> Run:
    """torch.optim.<cls> on one parameter; the result is the parameter and the ``state`` buffers after a step."""
    torch = _torch()
    p = _t(d["param"], True)
    p.grad = _t(d["grad"])
    opt = getattr(torch.optim, cls)([p], lr=d["lr"], weight_decay=d["weight_decay"], **hyper)
    if cls == "SGD" and "momentum" in hyper and "nesterov" not in hyper:
        # torch's buf = m*buf + g; p -= lr*buf is fastnn's v = m*v - lr*g; p += v with v = -lr*buf
        return Run(opt.step, lambda _: (p.detach().numpy(), -d["lr"] * opt.state[p]["momentum_buffer"].numpy()))
    return Run(opt.step, lambda _: (p.detach().numpy(), *(opt.state[p][s].numpy() for s in state)))


def _cases_opt() -> Iterator[Case]:
    betas = {"betas": (BETA1, BETA2), "eps": ADAM_EPS}
    for name, state, hyper, torch in (
            ("sgd_step", (), ("lr", "weight_decay"), partial(_torch_opt, "SGD", (), fused=True)),
            ("momentum_step", ("velocity",), ("lr", "momentum", "weight_decay"),
             partial(_torch_opt, "SGD", (), momentum=0.9, fused=True)),
            ("nesterov_step", ("buf",), ("lr", "momentum", "weight_decay"),
             partial(_torch_opt, "SGD", ("momentum_buffer",), momentum=0.9, nesterov=True, fused=True)),
            ("adagrad_step", ("h",), ("lr", "eps", "weight_decay"),
             partial(_torch_opt, "Adagrad", ("sum",), eps=ADAM_EPS)),
            ("rmsprop_step", ("sq",), ("lr", "decay_rate", "eps", "weight_decay"),
             partial(_torch_opt, "RMSprop", ("square_avg",), alpha=0.99, eps=ADAM_EPS)),
            ("adam_step", ("m", "v"), _ADAM, partial(_torch_opt, "Adam", ("exp_avg", "exp_avg_sq"), **betas,
                                                     fused=True)),
            ("adamw_step", ("m", "v"), _ADAM, partial(_torch_opt, "AdamW", ("exp_avg", "exp_avg_sq"), **betas,
                                                      fused=True)),
            ("adabound_step", ("m", "v"), ("lr", "final_lr", "gamma", "beta1", "beta2", "eps", "step",
                                           "weight_decay"), None)):
        inplace = ("param", *state)
        variants: dict[str, Callable[[Inputs], Inputs]] = {}
        if name == "adam_step":  # fastnn.optim.Adam's default: the book's (the paper's efficient) form
            variants["book"] = lambda d: {"eps_hat": True}
        elif name == "nesterov_step":  # fastnn.optim.Nesterov's: the book's form, buf the velocity
            variants["book"] = lambda d: {"pytorch_form": False}
        # reads param, grad and each state array, writes param and each state array
        yield Case(name, "optimizers", OPT_SIZES, _opt_inputs, name, ("param", "grad", *state, *hyper),
                   variants=variants, inplace=inplace, torch=torch, traffic=_streams(2 * len(inplace) + 1),
                   goal=Goal("Adam step, 10M float32 params", "cifar") if name == "adam_step" else None)


# ---------------------------------------------------------------------------------------------------------------
# Whole training steps: forward, backward and an Adam update of the book's nets (fastnn.nets, fastnn.optim)

SIMPLE_CONVNET_SIZES = {
    "tiny": {"batch": 5, "input_dim": (1, 10, 10), "filter_num": 4, "filter_size": 3, "hidden": 8},
    # the book's ch07 SimpleConvNet on MNIST
    "mnist": {"batch": 100, "input_dim": (1, 28, 28), "filter_num": 30, "filter_size": 5, "hidden": 100},
    # the same net on CIFAR-10 images
    "cifar": {"batch": 100, "input_dim": (3, 32, 32), "filter_num": 30, "filter_size": 5, "hidden": 100},
}
DEEP_CONVNET_SIZES = {
    # 8x8 keeps every stage (the pad-2 conv makes 4x4 into 6x6, pooled to 3x3, then to 1x1). Adam's eps is
    # larger here only: a tiny batch leaves many filter taps with an exactly zero gradient (dead ReLUs, taps
    # that only meet padding), which the Winograd kernels compute as float32 rounding noise (~1e-9) and which
    # eps=1e-7 would turn into steps of lr/20; the timed sizes use TRAIN_ADAM_EPS
    "tiny": {"batch": 3, "input_dim": (1, 8, 8), "hidden": 6, "adam_eps": 1e-3},
    # the book's ch08 DeepConvNet on MNIST
    "mnist": {"batch": 100, "input_dim": (1, 28, 28), "hidden": 50},
    # the same net on CIFAR-10 images
    "cifar": {"batch": 100, "input_dim": (3, 32, 32), "hidden": 50},
}
MULTILAYER_BN_SIZES = {
    "tiny": {"batch": 7, "input_size": 12, "hidden": (6, 5)},
    # the book's ch06 batch-normalization experiment: five hidden layers of 100 on MNIST
    "mnist": {"batch": 100, "input_size": 784, "hidden": (100,) * 5},
    "cifar": {"batch": 100, "input_size": 3072, "hidden": (100,) * 5},
}
CLASSES = 10
TRAIN_LR, TRAIN_ADAM_EPS, BOOK_BN_EPS = 1e-3, 1e-7, 1e-6  # fastnn.optim.Adam's and the book's BatchNorm eps


def _train_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    shape = (p["batch"], *p["input_dim"]) if "input_dim" in p else (p["batch"], p["input_size"])
    return {"x": rng.random(shape).astype(dtype), "t": rng.integers(0, CLASSES, p["batch"]), "dtype": dtype, **p}


def _simple_convnet(d: Inputs) -> Any:
    conv = {"filter_num": d["filter_num"], "filter_size": d["filter_size"], "pad": 0, "stride": 1}
    return SimpleConvNet(d["input_dim"], conv, d["hidden"], CLASSES, 0.01, dtype=d["dtype"], seed=0)


def _deep_convnet(d: Inputs) -> Any:
    return DeepConvNet(d["input_dim"], hidden_size=d["hidden"], output_size=CLASSES, dtype=d["dtype"], seed=0)


def _multilayer_bn(d: Inputs) -> Any:
    return MultiLayerNetExtend(d["input_size"], list(d["hidden"]), CLASSES, use_batchnorm=True, dtype=d["dtype"],
                               seed=0)


def _on(ns: types.ModuleType, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn``, run on the NumPy twins when ``ns`` is fastnn.reference (:func:`fastnn.backend.using`).

    The NumPy training step is then the same network, the same optimizer and the same Python around the kernels:
    what differs from fastnn's step is the kernels alone. fastnn's own step is ``fn`` itself.
    """
    if ns is kernels:
        return fn

    def call() -> Any:
        with backend.using("reference"):
            return fn()

    return call


def _fastnn_train(build: Callable[[Inputs], Any], ns: types.ModuleType, d: Inputs) -> Run:
    net = build(d)
    # the operation torch runs: the exact cross-entropy (F.cross_entropy) and Adam in PyTorch's form; the book's
    # defaults (log(y + 1e-7), eps_hat) cost the same
    net.last_layer = SoftmaxWithLoss(exact=True)
    opt = Adam(lr=TRAIN_LR, eps=d.get("adam_eps", TRAIN_ADAM_EPS), eps_hat=False)
    x, t = d["x"], d["t"]

    def step() -> Any:
        opt.update(net.params, net.gradient(x, t))
        return net.last_layer.loss

    def result(loss: Any) -> tuple[np.ndarray, ...]:
        after = _on(ns, lambda: net.loss(x, t, train_flg=True))()
        return (np.asarray(loss), np.asarray(after), *(net.params[k] for k in _compared(net.params)))

    return Run(_on(ns, step), result)


def _compared(params: Mapping[str, Any]) -> list[str]:
    """Parameter keys whose update the implementations must agree on.

    A bias right before batch normalization has a zero gradient in exact arithmetic (normalization subtracts it
    again), so its computed gradient is rounding noise, which Adam scales up to steps of up to ``lr``: such biases
    are left out. The loss after the step checks that they change nothing.
    """
    return [k for k in params if not (k[0] == "b" and k[1:].isdigit() and f"gamma{k[1:]}" in params)]


def _torch_train(build: Callable[[Inputs], Any], d: Inputs) -> Run:
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
        layers, keys = _torch_convnet(net)
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
    opt = torch.optim.Adam(model.parameters(), lr=TRAIN_LR, eps=d.get("adam_eps", TRAIN_ADAM_EPS), fused=True)
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


def _torch_convnet(net: Any) -> tuple[list[Any], dict[str, tuple[Any, bool]]]:
    """torch.nn modules for a conv net's layers in order, and fastnn key -> (torch parameter, stored transposed).

    Dropout is the book's (not inverted: the kept elements are not rescaled), with the very masks the fastnn net
    draws: the modules hold a twin of the net's Dropout layers, whose seed streams start where the net's do.
    """
    torch = _torch()
    nn = torch.nn
    from .layers import Affine, Convolution, Dropout, Pooling, Relu

    class BookDropout(nn.Module):
        def __init__(self, layer: Dropout) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, x: Any) -> Any:
            if not self.training:
                return x * (1.0 - self.layer.dropout_ratio)
            mask = kernels.dropout_mask(tuple(x.shape), self.layer.dropout_ratio, self.layer.random.seed64())
            return x * torch.from_numpy(mask)

    owner = {id(layer): key[1:] for key, (layer, name) in net._param_index.items() if name == "W"}
    layers: list[Any] = []
    keys: dict[str, tuple[Any, bool]] = {}
    for layer in net._layer_list:
        if isinstance(layer, Convolution):
            FN, C, FH, FW = layer.W.shape
            m = nn.Conv2d(C, FN, (FH, FW), layer.stride, layer.pad)
            layers.append(m)
        elif isinstance(layer, Affine):
            m = nn.Linear(*layer.W.shape)
            layers += [nn.Flatten(), m]
        elif isinstance(layer, Relu):
            layers.append(nn.ReLU())
        elif isinstance(layer, Pooling):
            layers.append(nn.MaxPool2d((layer.pool_h, layer.pool_w), layer.stride, layer.pad))
        elif isinstance(layer, Dropout):
            layers.append(BookDropout(layer))
        else:
            raise NotImplementedError(f"no torch module for {type(layer).__name__}")
        if isinstance(layer, (Convolution, Affine)):
            i = owner[id(layer)]
            keys[f"W{i}"], keys[f"b{i}"] = (m.weight, isinstance(layer, Affine)), (m.bias, False)
    return layers, keys


def _cases_training() -> Iterator[Case]:
    for name, sizes, build, goal in (
            ("train_simpleconvnet", SIMPLE_CONVNET_SIZES, _simple_convnet,
             Goal("SimpleConvNet training step, batch 100, Adam, CIFAR size", "cifar", 0.7)),
            ("train_deepconvnet", DEEP_CONVNET_SIZES, _deep_convnet,
             Goal("DeepConvNet training step, batch 100, Adam", "mnist", 0.7)),
            ("train_multilayer_bn", MULTILAYER_BN_SIZES, _multilayer_bn, None)):
        yield Case(name, "training", sizes, _train_inputs, steps=partial(_fastnn_train, build),
                   torch=partial(_torch_train, build), goal=goal)


# ---------------------------------------------------------------------------------------------------------------

def _all_cases() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for group in (_cases_conv, _cases_conv_relu, _cases_linalg, _cases_pool, _cases_norm, _cases_act, _cases_opt,
                  _cases_training):
        for case in group():
            assert case.name not in cases, case.name
            assert (case.kernel is None) != (case.steps is None), case.name
            cases[case.name] = case
    return cases


#: Every case by name, in table order.
CASES: dict[str, Case] = _all_cases()


def cases_of(module: str) -> list[Case]:
    """The cases of one kernel family (an ``asv_bench`` module)."""
    return [c for c in CASES.values() if c.module == module]


def valid_call(kernel: str, dtype: str | np.dtype, rng: np.random.Generator) -> Inputs:
    """Keyword arguments of a small valid call of ``kernel`` (its entry at the tiny size, in the form fastnn's own
    layers and optimizers use), freshly drawn from ``rng``: what the robustness tests break one argument at a time.
    """
    case = CASES[kernel]
    return case.kwargs(case.inputs("tiny", dtype, rng), "book" if "book" in case.variants else None)
