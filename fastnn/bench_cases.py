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
    #: Floating-point operations of the matrix products a call must compute (2 per multiply-add; elementwise work
    #: not counted), for the targets' GFLOP/s column; None where not counted.
    flops: Callable[[Mapping[str, Any]], int] | None = None
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
        for a in self.inplace:  # each run updates its own state (a list of arrays: its own copies of each)
            kw[a] = [v.copy() for v in kw[a]] if isinstance(kw[a], list) else kw[a].copy()
        state = tuple(kw[a] for a in self.inplace)
        return Run(partial(getattr(ns, self.kernel), **kw), lambda r: (*to_numpy(r), *to_numpy(state)))

    def bytes_moved(self, size: str, dtype: str | np.dtype) -> int | None:
        return None if self.traffic is None else self.traffic(self.params(size), np.dtype(dtype))

    def product_flops(self, size: str) -> int | None:
        return None if self.flops is None else self.flops(self.params(size))

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


#: An affine layer's forward and bias gradient: the book's MNIST MLP layer, the TransformerLM's fused (4096, 128) @
#: (128, 384) query-key-value projection (batch 32 of 128 tokens).
AFFINE_SIZES = {"tiny": {"M": 5, "K": 3, "N": 7}, "mnist": {"M": 100, "K": 784, "N": 100},
                "cifar": {"M": 4096, "K": 128, "N": 384}}


def _matmul_bias_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    return {**_matmul_inputs(p, dtype, rng), "bias": _rand(rng, (p["N"],), dtype)}


def _add_into_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    shape = (p["M"], p["N"])  # a block's output and its input, summed by the residual connection
    return {"a": _rand(rng, shape, dtype), "b": _rand(rng, shape, dtype)}


def _column_sum_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    return {"a": _rand(rng, (p["M"], p["N"]), dtype)}  # an output gradient, summed into a bias gradient


def _cases_linalg() -> Iterator[Case]:
    yield Case("matmul", "linalg", MATMUL_SIZES, _matmul_inputs, "matmul", ("a", "b"),
               torch=lambda d: Run(partial(_torch().mm, _t(d["a"]), _t(d["b"]))))
    yield Case("matmul_bias", "linalg", AFFINE_SIZES, _matmul_bias_inputs, "matmul_bias", ("a", "b", "bias"),
               torch=lambda d: Run(partial(_torch().addmm, _t(d["bias"]), _t(d["a"]), _t(d["b"]))))
    yield Case("add_into", "linalg", AFFINE_SIZES, _add_into_inputs, "add_into", ("a", "b"), inplace=("a",),
               torch=lambda d: Run(partial(_torch().Tensor.add_, _t(d["a"].copy()), _t(d["b"]))),
               traffic=lambda p, dtype: 3 * p["M"] * p["N"] * np.dtype(dtype).itemsize)
    yield Case("column_sum", "linalg", AFFINE_SIZES, _column_sum_inputs, "column_sum", ("a",),
               torch=lambda d: Run(partial(_torch().sum, _t(d["a"]), 0)),
               traffic=lambda p, dtype: (p["M"] + 1) * p["N"] * np.dtype(dtype).itemsize)


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
# The normalization zoo of issue 13 (fastnn/kernels/normalization.py): instance norm as a layer's step, batch
# renormalization. Batch renorm has no PyTorch operation to time against.

RENORM_RMAX, RENORM_DMAX = 3.0, 0.25  # the paper's final rmax; a dmax that clips some channels' d at these inputs


def _renorm_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    d = _norm_inputs("batch")(p, dtype, rng)
    C = d["gamma"].shape[0]
    d["running_mean"] = _rand(rng, (C,), dtype, 0.3)
    d["running_std"] = (1 + rng.random(C)).astype(dtype)
    d["rmax"], d["dmax"] = RENORM_RMAX, RENORM_DMAX
    _, d["mean"], d["inv_std"], d["r"], d["d"] = reference.batchrenorm_forward_train(
        d["x"], d["gamma"], d["beta"], d["running_mean"].copy(), d["running_std"].copy(), RENORM_RMAX, RENORM_DMAX,
        MOMENTUM, EPS)
    return d


def _renorm_steps(k: types.ModuleType, d: Inputs) -> Run:
    """A training forward then its backward, as a BatchRenormalization layer runs them."""
    x, gamma, beta, dout = d["x"], d["gamma"], d["beta"], d["dout"]
    rm, rs = d["running_mean"].copy(), d["running_std"].copy()  # updated in place by every call

    def step() -> Any:
        _, mean, inv_std, r, dd = k.batchrenorm_forward_train(x, gamma, beta, rm, rs, RENORM_RMAX, RENORM_DMAX,
                                                              MOMENTUM, EPS)
        return k.batchrenorm_backward(dout, x, gamma, mean, inv_std, r, dd)

    return Run(step)


def _instancenorm_steps(k: types.ModuleType, d: Inputs) -> Run:
    """A forward then its backward, as an InstanceNormalization layer runs them."""
    def step() -> Any:
        _, mean, inv_std = k.instancenorm_forward(d["x"], d["gamma"], d["beta"], EPS)
        return k.instancenorm_backward(d["dout"], d["x"], d["gamma"], mean, inv_std)

    return Run(step)


def _cases_norm_zoo() -> Iterator[Case]:
    train = ("x", *_NORM_ARGS, "running_mean", "running_std", "rmax", "dmax", "momentum", "eps")
    for layout, sizes in (("2d", {**NORM2D_SIZES, "tiny": {"shape": (4, 3, 2, 2)}}), ("1d", NORM1D_SIZES)):
        entry = layout == "2d"
        if entry:
            yield Case("batchrenorm_forward_train", "normalization", sizes, _renorm_inputs,
                       "batchrenorm_forward_train", train, inplace=("running_mean", "running_std"),
                       traffic=_streams(2))
            yield Case("batchrenorm_forward_infer", "normalization", sizes, _renorm_inputs,
                       "batchrenorm_forward_infer", ("x", *_NORM_ARGS, "running_mean", "running_std"),
                       traffic=_streams(2))
            yield Case("batchrenorm_backward", "normalization", sizes, _renorm_inputs, "batchrenorm_backward",
                       (*_NORM_BACKWARD, "r", "d"), traffic=_streams(3))
        yield Case(f"batchrenorm{layout}_forward_backward", "normalization", sizes, _renorm_inputs,
                   steps=_renorm_steps, traffic=_streams(5))
    sizes = {k: {"shape": v["shape"]} for k, v in NORM2D_SIZES.items()}
    yield Case("instancenorm_forward_backward", "normalization", sizes, _norm_inputs("instance"),
               steps=_instancenorm_steps, torch=lambda d: _fwd_bwd(*_torch_norm("instance", d, True), d["dout"]),
               traffic=_streams(5), goal=Goal("InstanceNormalization (64,64,32,32), fwd+bwd", "cifar"))


# ---------------------------------------------------------------------------------------------------------------
# Weight reparametrizations (fastnn/kernels/reparam.py): weight and spectral normalization of an affine W (in, out)
# (units on the last axis) at the matmul sizes, and as whole layer steps against torch's parametrizations

REPARAM_SIZES = {k: {"shape": (p["K"], p["N"]), "M": p["M"]} for k, p in MATMUL_SIZES.items()}
_AFFINE_DIM = -1


def _reparam_inputs(kind: str) -> Callable[[Mapping[str, Any], np.dtype, np.random.Generator], Inputs]:
    """The weight ``W`` (in, out), start vectors ``u0``, ``v0``, a batch for the layer steps, and the arguments of
    the ``kind`` ("weight" or "spectral") kernels under their names (weight norm's v is the weight, spectral
    norm's v a vector)."""
    def make(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
        shape = tuple(p["shape"])
        W = _rand(rng, shape, dtype, 1 / np.sqrt(shape[0]))
        units = shape[_AFFINE_DIM]
        u, v = _rand(rng, (units,), dtype), _rand(rng, (shape[0],), dtype)
        d = {"W": W, "dw": _rand(rng, shape, dtype), "g": (1 + rng.random(units)).astype(dtype),
             "u0": u / dtype.type(np.linalg.norm(u)), "v0": v / dtype.type(np.linalg.norm(v)), "dim": _AFFINE_DIM,
             "n_power_iterations": 1, "eps": 1e-12, "training": True,
             "x": _rand(rng, (p["M"], shape[0]), dtype), "b": _rand(rng, (units,), dtype, 0.1),
             "dout": _rand(rng, (p["M"], units), dtype)}
        if kind == "weight":
            d["v"] = W
            _, d["norm"] = reference.weightnorm_forward(W, d["g"], _AFFINE_DIM)
            d["t"] = d["x"] @ W
        else:
            d["w"], d["u"], d["v"] = W, d["u0"].copy(), d["v0"].copy()
            d["sigma"] = float(reference.spectralnorm_forward(W, d["u0"].copy(), d["v0"].copy(), _AFFINE_DIM)[1])
        return d

    return make


def _torch_weight_norm(d: Inputs, grad: bool = False) -> tuple[Callable[[], Any], tuple[Any, ...]]:
    v, g = _t(d["W"], grad), _t(d["g"].reshape(1, -1), grad)
    return partial(_torch()._weight_norm, v, g, 1), (v, g)


def _torch_weight_norm_backward(d: Inputs) -> Run:
    run = _torch_backward(*_torch_weight_norm(d, True), d["dw"])
    return Run(run.call, lambda r: (r[0].numpy(), r[1].numpy().reshape(-1)))  # torch's g is (1, out)


def _reparam_step(k: types.ModuleType, reparam: str, W: np.ndarray, g: np.ndarray, u: np.ndarray, v: np.ndarray,
                  dim: int, layer_step: Callable[[np.ndarray], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """A layer's forward and backward (``layer_step(w) -> (dx, dW, db)``) with its weight reparametrized, as
    WeightNorm / SpectralNorm run them; returns dx, the parameters' gradients and db."""
    if reparam == "weight":
        w, norm = k.weightnorm_forward(W, g, dim)
        dx, dW, db = layer_step(w)
        return (dx, *k.weightnorm_backward(dW, W, g, norm, dim), db)
    w, sigma = k.spectralnorm_forward(W, u, v, dim)  # u, v updated in place: a training step
    dx, dW, db = layer_step(w)
    return dx, k.spectralnorm_backward(dW, W, u, v, float(sigma), dim), db


def _affine_steps(k: types.ModuleType, d: Inputs, reparam: str) -> Run:
    x, b, dout = d["x"], d["b"], d["dout"]
    if reparam == "weight":  # as WeightNorm(Affine) runs it: one kernel each way, w never formed
        def weight_step() -> tuple[np.ndarray, ...]:
            _, t, norm = k.weightnorm_affine_forward(x, d["W"], d["g"], b)
            return k.weightnorm_affine_backward(dout, x, d["W"], d["g"], norm, t)

        return Run(weight_step)
    u, v = d["u0"].copy(), d["v0"].copy()

    def affine(w: np.ndarray) -> tuple[np.ndarray, ...]:
        k.matmul(x, w) + b  # the forward's output (unused here, as a training step's next layer would use it)
        return k.matmul(dout, w.T), k.matmul(x.T, dout), dout.sum(axis=0)

    return Run(lambda: _reparam_step(k, reparam, d["W"], d["g"], u, v, _AFFINE_DIM, affine))


def _conv_reparam_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    d = _conv_inputs(p, dtype, rng)
    FN = d["W"].shape[0]
    u, v = _rand(rng, (FN,), dtype), _rand(rng, (d["W"].size // FN,), dtype)
    return {**d, "g": (1 + rng.random(FN)).astype(dtype), "u0": u / dtype.type(np.linalg.norm(u)),
            "v0": v / dtype.type(np.linalg.norm(v))}


def _conv_reparam_steps(k: types.ModuleType, d: Inputs, reparam: str) -> Run:
    x, b, dout, s, p = d["x"], d["b"], d["dout"], d["stride"], d["pad"]
    u, v = d["u0"].copy(), d["v0"].copy()
    ws: dict = {}

    def conv(w: np.ndarray) -> tuple[np.ndarray, ...]:
        k.conv2d_forward(x, w, b, s, p, cache=ws)
        return k.conv2d_backward(dout, x, w, s, p, cache=ws)

    return Run(lambda: _reparam_step(k, reparam, d["W"], d["g"], u, v, 0, conv))


def _torch_reparam_steps(d: Inputs, reparam: str, conv: bool) -> Run:
    """nn.Linear / nn.Conv2d with torch's parametrization of the same weights (Affine's W (in, out) transposed to
    Linear's (out, in)); the result: dx, the parameters' gradients in fastnn's layout, db."""
    torch = _torch()
    from torch.nn.utils import parametrizations

    tdtype = torch.float32 if d["W"].dtype == np.float32 else torch.float64
    if conv:
        FN, C, FH, FW = d["W"].shape
        mod = torch.nn.Conv2d(C, FN, (FH, FW), stride=d["stride"], padding=d["pad"], dtype=tdtype)
        W, layout = d["W"], (lambda a: a)
    else:
        mod = torch.nn.Linear(*d["W"].shape, dtype=tdtype)
        W, layout = d["W"].T, (lambda a: a.T)
    with torch.no_grad():
        mod.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
        mod.bias.copy_(torch.from_numpy(d["b"]))
    if reparam == "weight":
        parametrizations.weight_norm(mod)
        with torch.no_grad():
            mod.parametrizations.weight.original0.copy_(torch.from_numpy(d["g"]).reshape(
                mod.parametrizations.weight.original0.shape))
    else:
        parametrizations.spectral_norm(mod)
        with torch.no_grad():
            mod.parametrizations.weight[0]._u.copy_(torch.from_numpy(d["u0"]))
            mod.parametrizations.weight[0]._v.copy_(torch.from_numpy(d["v0"]))
    x, td = _t(d["x"], True), _t(d["dout"])
    leaves = (x, *mod.parameters())

    def step() -> None:
        for leaf in leaves:
            leaf.grad = None
        mod(x).backward(td)

    def result(_: Any) -> tuple[np.ndarray, ...]:
        params = dict(mod.named_parameters())
        if reparam == "weight":
            return (x.grad.numpy(), layout(params["parametrizations.weight.original1"].grad.numpy()),
                    params["parametrizations.weight.original0"].grad.numpy().reshape(-1), params["bias"].grad.numpy())
        return (x.grad.numpy(), layout(params["parametrizations.weight.original"].grad.numpy()),
                params["bias"].grad.numpy())

    return Run(step, result)


def _cases_reparam() -> Iterator[Case]:
    weight, spectral = _reparam_inputs("weight"), _reparam_inputs("spectral")
    yield Case("weightnorm_forward", "normalization", REPARAM_SIZES, weight, "weightnorm_forward", ("v", "g", "dim"),
               torch=lambda d: Run(_torch_weight_norm(d)[0]), traffic=_streams(2))
    yield Case("weightnorm_backward", "normalization", REPARAM_SIZES, weight, "weightnorm_backward",
               ("dw", "v", "g", "norm", "dim"),
               torch=_torch_weight_norm_backward, traffic=_streams(3))
    yield Case("weightnorm_affine_forward", "normalization", REPARAM_SIZES, weight, "weightnorm_affine_forward",
               ("x", "v", "g", "b"))
    yield Case("weightnorm_affine_backward", "normalization", REPARAM_SIZES, weight, "weightnorm_affine_backward",
               ("dout", "x", "v", "g", "norm", "t"))
    yield Case("spectralnorm_forward", "normalization", REPARAM_SIZES, spectral, "spectralnorm_forward",
               ("w", "u", "v", "dim", "n_power_iterations", "eps", "training"), inplace=("u", "v"))
    yield Case("spectralnorm_backward", "normalization", REPARAM_SIZES, spectral, "spectralnorm_backward",
               ("dw", "w", "u", "v", "sigma", "dim"))
    for reparam, title, make in (("weight", "WeightNorm", weight), ("spectral", "SpectralNorm", spectral)):
        yield Case(f"{reparam}norm_affine_forward_backward", "normalization", REPARAM_SIZES, make,
                   steps=partial(_affine_steps, reparam=reparam),
                   torch=partial(_torch_reparam_steps, reparam=reparam, conv=False),
                   goal=Goal(f"{title}(Affine) (64,4096)@(4096,512), fwd+bwd", "cifar"))
        yield Case(f"{reparam}norm_conv_forward_backward", "normalization", CONV_SIZES, _conv_reparam_inputs,
                   steps=partial(_conv_reparam_steps, reparam=reparam),
                   torch=partial(_torch_reparam_steps, reparam=reparam, conv=True),
                   goal=Goal(f"{title}(Convolution) (64,64,32,32) 3x3, fwd+bwd", "cifar"))


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
               goal=Goal("softmax cross-entropy forward (128, 100)", "cifar"),
               torch=lambda d: Run(partial(_torch().nn.functional.cross_entropy, _t(d["x"]),
                                           _torch().from_numpy(d["t"]))))
    yield Case("softmax_cross_entropy_backward", "activations_losses", LOSS_SIZES, _loss_inputs,
               "softmax_cross_entropy_backward", ("probs", "t", "dout"), torch=_torch_ce)
    yield Case("svm_loss", "activations_losses", LOSS_SIZES, _loss_inputs, "svm_loss", ("x", "y"), torch=_torch_svm)


# ---------------------------------------------------------------------------------------------------------------
# Attention, GELU, last-axis softmax, positional encoding (fastnn/kernels/attention.py)

ATTN_SIZES = {
    # S != T, d and dv not multiples of any vector width
    "tiny": {"N": 2, "H": 2, "S": 5, "T": 7, "d": 3, "dv": 4},
    # the speed targets: causal self-attention, 8 heads of 32
    "mnist": {"N": 64, "H": 8, "S": 64, "T": 64, "d": 32, "dv": 32},
    "cifar": {"N": 16, "H": 8, "S": 256, "T": 256, "d": 32, "dv": 32},
    # peak memory (asv_bench/attention.py): the materialised scores would be N*H*S*T = 8M elements
    "long": {"N": 2, "H": 4, "S": 1024, "T": 1024, "d": 32, "dv": 32},
}
ATTN_DROPOUT, ATTN_SEED = 0.2, 77
#: The keyword forms of an attention call besides the plain one (each checked against the twin).
_ATTN_FORMS: dict[str, dict[str, Any]] = {
    "causal": {"causal": True},
    "bool_mask": {"mask": "bool"},
    "additive_mask": {"mask": "additive"},
    "dropout": {"dropout_p": ATTN_DROPOUT, "seed": ATTN_SEED},
}


def _attn_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    N, H, S, T = p["N"], p["H"], p["S"], p["T"]
    q, k = _rand(rng, (N, H, S, p["d"]), dtype), _rand(rng, (N, H, T, p["d"]), dtype)
    v, dout = _rand(rng, (N, H, T, p["dv"]), dtype), _rand(rng, (N, H, S, p["dv"]), dtype)
    masks = {"bool": rng.random((S, T)) < 0.7,  # (S, T): broadcast over batch and heads
             "additive": _rand(rng, (N, 1, S, T), dtype)}
    masks["bool"][0] = False  # one fully masked row: zeros by contract
    d = {"q": q, "k": k, "v": v, "dout": dout, "ones": np.ones_like(dout), "forms": {}}
    if N * H * S * T > 1 << 16:  # benchmark sizes: the plain form only, without materialising the scores
        d["out"], d["lse"] = kernels.attention_forward(q, k, v)
        return d
    for name, form in {"plain": {}, **_ATTN_FORMS}.items():
        kw = {key: masks[val] if key == "mask" else val for key, val in form.items()}
        out, lse = reference.attention_forward(q, k, v, **kw)
        d["forms"][name] = {**kw, "out": out, "lse": lse}
    d["out"], d["lse"] = d["forms"]["plain"]["out"], d["forms"]["plain"]["lse"]
    return d


def _attn_variant(name: str, backward: bool) -> Callable[[Inputs], Inputs]:
    def kwargs(d: Inputs) -> Inputs:
        kw = dict(d["forms"][name])
        if not backward:
            kw.pop("out"), kw.pop("lse")
        return kw
    return kwargs


def _torch_sdpa(d: Inputs, grad: bool = False, causal: bool = False) -> tuple[Callable[[], Any], tuple[Any, ...]]:
    F = _torch().nn.functional
    q, k, v = _t(d["q"], grad), _t(d["k"], grad), _t(d["v"], grad)
    return partial(F.scaled_dot_product_attention, q, k, v, is_causal=causal), (q, k, v)


def _torch_gelu(d: Inputs) -> tuple[Callable[[], Any], tuple[Any, ...]]:
    x = _t(d["x"], True)
    return partial(_torch().nn.functional.gelu, x), (x,)


def _attn_steps(k: types.ModuleType, d: Inputs) -> Run:
    """Causal attention forward, then the backward of the sum of its outputs (dout = 1)."""
    q, kk, v, ones = d["q"], d["k"], d["v"], d["ones"]

    def step() -> Any:
        out, lse = k.attention_forward(q, kk, v, causal=True)
        return k.attention_backward(ones, q, kk, v, out, lse, causal=True)

    return Run(step)


def _cases_attention() -> Iterator[Case]:
    yield Case("attention_forward", "attention", ATTN_SIZES, _attn_inputs, "attention_forward", ("q", "k", "v"),
               variants={name: _attn_variant(name, False) for name in _ATTN_FORMS},
               torch=lambda d: Run(_torch_sdpa(d)[0]))
    yield Case("attention_backward", "attention", ATTN_SIZES, _attn_inputs, "attention_backward",
               ("dout", "q", "k", "v", "out", "lse"),
               variants={name: _attn_variant(name, True) for name in _ATTN_FORMS},
               torch=lambda d: _torch_backward(*_torch_sdpa(d, True), d["dout"]))
    for name, size, title in (("attention_causal_forward_backward", "mnist", "causal attention N64 h8 S64 d32"),
                              ("attention_causal_forward_backward_long", "cifar",
                               "causal attention N16 h8 S256 d32")):
        yield Case(name, "attention", ATTN_SIZES, _attn_inputs, steps=_attn_steps,
                   torch=lambda d: _fwd_bwd(*_torch_sdpa(d, True, causal=True), d["ones"]),
                   goal=Goal(f"{title}, fwd+bwd of the sum", size))
    tanh = {"tanh": lambda d: {"approximate": "tanh"}}
    yield Case("gelu_forward", "attention", ACT_SIZES, _act_inputs, "gelu_forward", ("x",), variants=tanh,
               torch=lambda d: Run(partial(_torch().nn.functional.gelu, _t(d["x"]))), traffic=_streams(2))
    yield Case("gelu_backward", "attention", ACT_SIZES, _act_inputs, "gelu_backward", ("dout", "x"),
               variants=tanh, torch=lambda d: _torch_backward(*_torch_gelu(d), d["dout"]), traffic=_streams(3))
    yield Case("softmax_lastaxis_forward", "attention", ACT_SIZES, _act_inputs, "softmax_lastaxis_forward", ("x",),
               torch=lambda d: Run(partial(_torch().softmax, _t(d["x"]), -1)), traffic=_streams(2))
    yield Case("softmax_lastaxis_backward", "attention", ACT_SIZES, _act_inputs, "softmax_lastaxis_backward",
               ("dout", "out"), torch=lambda d: Run(partial(_torch().ops.aten._softmax_backward_data, _t(d["dout"]),
                                                            _t(d["out"]), -1, _torch().float32 if d["x"].dtype ==
                                                            np.float32 else _torch().float64)),
               traffic=_streams(3))
    yield Case("positional_encoding", "attention", {**ACT_SIZES, "tiny": {"shape": (2, 5, 7)},
                                                    "mnist": {"shape": (32, 128, 128)},
                                                    "cifar": {"shape": (32, 512, 512)}},
               _act_inputs, "positional_encoding", ("x",), traffic=_streams(2))


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


def _cases_swats() -> Iterator[Case]:
    """SWATS' two phases (fastnn.optim.SWATS); PyTorch has no SWATS."""
    yield Case("swats_adam_step", "optimizers", OPT_SIZES, _opt_inputs, "swats_adam_step",
               ("param", "grad", "m", "v", "lr", "beta1", "beta2", "eps", "step", "weight_decay"),
               inplace=("param", "m", "v"), traffic=_streams(7))
    yield Case("swats_sgd_step", "optimizers", OPT_SIZES, _opt_inputs, "swats_sgd_step",
               ("param", "grad", "buf", "lr", "beta1", "weight_decay"), inplace=("param", "buf"), traffic=_streams(5))


# ---------------------------------------------------------------------------------------------------------------
# Sequences: embedding, time-distributed softmax cross-entropy, gradient clipping (fastnn/kernels/sequence.py,
# losses.py)

SEQ_SIZES = {
    # ids repeat (V < N*T) and some positions are ignored, as with padded sequences
    "tiny": {"N": 2, "T": 3, "V": 5, "D": 4},
    # Deep Learning from Scratch 2's Rnnlm on PTB (ch06 train_rnnlm.py): batch 20, 35 steps, 10000 words, D=100
    "mnist": {"N": 20, "T": 35, "V": 10000, "D": 100},
    # its BetterRnnlm (train_better_rnnlm.py): D=H=650
    "cifar": {"N": 20, "T": 35, "V": 10000, "D": 650},
}
CLIP_MAX_NORM = 0.25  # the book's max_grad in ch06; the tiny and benchmark gradients exceed it


def _seq_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    n, steps, v, dim = p["N"], p["T"], p["V"], p["D"]
    idx = rng.integers(0, v, (n, steps))
    t = rng.integers(0, v, (n, steps))
    t[0, -1] = -1  # one ignored position (the book's ignore_label)
    x = _rand(rng, (n, steps, v), dtype, 3.0)
    W = _rand(rng, (v, dim), dtype, 0.01)
    # the book's BetterRnnlm gradients: embedding, LSTM x3, affine
    grads = [_rand(rng, (v, dim), dtype, 0.01), _rand(rng, (dim, 4 * dim), dtype, 0.1),
             _rand(rng, (dim, 4 * dim), dtype, 0.1), _rand(rng, (4 * dim,), dtype, 0.1), _rand(rng, (v,), dtype)]
    return {"W": W, "idx": idx, "dout": _rand(rng, (n, steps, dim), dtype), "vocab_size": v, "x": x, "t": t,
            "probs": reference.time_softmax_cross_entropy_forward(x, t)[1], "ignore_label": -1,
            "grads": grads, "max_norm": CLIP_MAX_NORM}


def _torch_embedding_backward(d: Inputs) -> Run:
    torch = _torch()
    idx, dout = torch.from_numpy(d["idx"].reshape(-1)), _t(d["dout"].reshape(-1, d["dout"].shape[-1]))
    shape = (d["vocab_size"], dout.shape[1])
    return Run(lambda: torch.zeros(shape, dtype=dout.dtype).index_add_(0, idx, dout))


def _torch_time_ce(d: Inputs, backward: bool) -> Run:
    torch = _torch()
    v = d["x"].shape[2]
    x, t = _t(d["x"].reshape(-1, v), backward), torch.from_numpy(d["t"].reshape(-1))
    if not backward:
        return Run(partial(torch.nn.functional.cross_entropy, x, t, ignore_index=-1))
    loss = torch.nn.functional.cross_entropy(x, t, ignore_index=-1)
    return Run(partial(torch.autograd.grad, loss, (x,), retain_graph=True),
               lambda r: (r[0].reshape(d["x"].shape).numpy(),))


def _torch_clip(d: Inputs) -> Run:
    torch = _torch()
    params = [torch.zeros(g.shape, dtype=_t(g).dtype, requires_grad=True) for g in d["grads"]]
    for p, g in zip(params, d["grads"], strict=True):
        p.grad = _t(g)
    return Run(partial(torch.nn.utils.clip_grad_norm_, params, d["max_norm"]),
               lambda r: (r.numpy(), *(p.grad.numpy() for p in params)))


EMBED_DOT_SIZES = {
    "tiny": {"N": 4, "V": 5, "D": 3},
    # DLFS-2's ch04 CBOW on PTB: batch 100, 10000 words, D=100 (one of its six EmbeddingDot layers)
    "mnist": {"N": 100, "V": 10000, "D": 100},
    "cifar": {"N": 1000, "V": 10000, "D": 300},
}


def _embed_dot_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    return {"W": _rand(rng, (p["V"], p["D"]), dtype, 0.01), "idx": rng.integers(0, p["V"], p["N"]),
            "h": _rand(rng, (p["N"], p["D"]), dtype), "dout": _rand(rng, (p["N"],), dtype)}


def _torch_embed_dot(d: Inputs, backward: bool) -> Run:
    torch = _torch()
    W, h, idx = _t(d["W"], backward), _t(d["h"], backward), torch.from_numpy(d["idx"])
    forward = lambda: (torch.nn.functional.embedding(idx, W) * h).sum(1)  # noqa: E731
    return _fwd_bwd(forward, (h, W), d["dout"]) if backward else Run(forward)


def _softmax_backward_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    """Softmax over the vocabulary at every position (DLFS-2's Softmax layer; its attention weights are smaller)."""
    x = _rand(rng, (p["N"] * p["T"], p["V"]), dtype, 3.0)
    return {"probs": reference.softmax_forward(x), "dout": _rand(rng, x.shape, dtype)}


def _torch_softmax_backward(d: Inputs) -> Run:
    torch = _torch()
    probs, dout = _t(d["probs"]), _t(d["dout"])
    return Run(partial(torch.ops.aten._softmax_backward_data, dout, probs, 1, probs.dtype))


def _cases_sequence() -> Iterator[Case]:
    F = lambda: _torch().nn.functional  # noqa: E731
    yield Case("embedding_forward", "sequence", SEQ_SIZES, _seq_inputs, "embedding_forward", ("W", "idx"),
               torch=lambda d: Run(partial(F().embedding, _torch().from_numpy(d["idx"]), _t(d["W"]))),
               traffic=lambda p, dtype: 2 * p["N"] * p["T"] * p["D"] * dtype.itemsize)
    yield Case("embedding_backward", "sequence", SEQ_SIZES, _seq_inputs, "embedding_backward",
               ("dout", "idx", "vocab_size"), torch=_torch_embedding_backward)
    yield Case("embedding_dot_forward", "sequence", EMBED_DOT_SIZES, _embed_dot_inputs, "embedding_dot_forward",
               ("W", "idx", "h"), torch=partial(_torch_embed_dot, backward=False))
    yield Case("embedding_dot_backward", "sequence", EMBED_DOT_SIZES, _embed_dot_inputs, "embedding_dot_backward",
               ("dout", "W", "idx", "h"), torch=partial(_torch_embed_dot, backward=True))
    yield Case("time_softmax_cross_entropy_forward", "sequence", SEQ_SIZES, _seq_inputs,
               "time_softmax_cross_entropy_forward", ("x", "t", "ignore_label"),
               variants={"batch": lambda d: {"average": "batch"}}, torch=partial(_torch_time_ce, backward=False))
    yield Case("time_softmax_cross_entropy_backward", "sequence", SEQ_SIZES,
               lambda p, dtype, rng: {**_seq_inputs(p, dtype, rng), "dout": 1.0},
               "time_softmax_cross_entropy_backward", ("probs", "t", "ignore_label", "dout"),
               variants={"batch": lambda d: {"average": "batch"}}, torch=partial(_torch_time_ce, backward=True))
    yield Case("softmax_backward", "sequence", SEQ_SIZES, _softmax_backward_inputs, "softmax_backward",
               ("dout", "probs"), torch=_torch_softmax_backward)
    yield Case("clip_grads", "sequence", SEQ_SIZES, _seq_inputs, "clip_grads", ("grads", "max_norm"),
               inplace=("grads",), torch=_torch_clip)


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
            ("train_multilayer_bn", MULTILAYER_BN_SIZES, _multilayer_bn,
             Goal("MultiLayerNetExtend batch-norm training step, batch 100, Adam", "mnist", 0.8))):
        yield Case(name, "training", sizes, _train_inputs, steps=partial(_fastnn_train, build),
                   torch=partial(_torch_train, build), goal=goal)


# ---------------------------------------------------------------------------------------------------------------
# Transformer layers and a language-model training step (fastnn/layers/transformer.py, fastnn/nets/transformer_lm.py)

MHA_SIZES = {
    "tiny": {"N": 2, "S": 5, "E": 6, "H": 2},
    # the attention targets' sizes with their projections: 8 heads of 32
    "mnist": {"N": 64, "S": 64, "E": 256, "H": 8},
    "cifar": {"N": 16, "S": 256, "E": 256, "H": 8},
}
LM_SIZES = {
    "tiny": {"batch": 3, "context": 6, "vocab": 11, "E": 8, "H": 2, "layers": 2},
    # the demo's character model (Tiny Shakespeare has 65 characters): 4 layers, 4 heads, width 128
    "mnist": {"batch": 32, "context": 64, "vocab": 65, "E": 128, "H": 4, "layers": 4},
    "cifar": {"batch": 32, "context": 128, "vocab": 65, "E": 128, "H": 4, "layers": 4},
}


def _mha_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    shape = (p["N"], p["S"], p["E"])
    return {"x": _rand(rng, shape, dtype), "dout": _rand(rng, shape, dtype), "dtype": dtype, **p}


def _mha_layer(d: Inputs) -> Any:
    from .layers import MultiHeadAttention
    return MultiHeadAttention(d["E"], d["H"], causal=True, dtype=d["dtype"], seed=0)


def _mha_steps(ns: types.ModuleType, d: Inputs) -> Run:
    """Causal self-attention layer forward and backward (projections included), as in training."""
    layer, x, dout = _mha_layer(d), d["x"], d["dout"]

    def step() -> Any:
        layer.forward(x)
        return layer.backward(dout)

    return Run(_on(ns, step), lambda dx: (dx, layer.grads["W_in"], layer.grads["W_out"]))


def _torch_mha(d: Inputs) -> Run:
    torch = _torch()
    layer = _mha_layer(d)
    tdtype = torch.float32 if d["dtype"] == np.float32 else torch.float64
    m = torch.nn.MultiheadAttention(d["E"], d["H"], batch_first=True, dtype=tdtype)
    with torch.no_grad():
        m.in_proj_weight.copy_(torch.from_numpy(layer.params["W_in"].T.copy()))
        m.out_proj.weight.copy_(torch.from_numpy(layer.params["W_out"].T.copy()))
        m.in_proj_bias.zero_(), m.out_proj.bias.zero_()
    S = d["S"]
    mask = torch.triu(torch.ones(S, S, dtype=torch.bool), 1)  # torch's bool mask: True forbids
    x, dout = _t(d["x"], True), _t(d["dout"])

    def step() -> Any:
        x.grad = None
        m.zero_grad(set_to_none=True)
        m(x, x, x, attn_mask=mask, is_causal=True, need_weights=False)[0].backward(dout)

    return Run(step, lambda _: (x.grad.numpy(), m.in_proj_weight.grad.numpy().T, m.out_proj.weight.grad.numpy().T))


def _lm_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    shape = (p["batch"], p["context"])
    return {"x": rng.integers(0, p["vocab"], shape), "t": rng.integers(0, p["vocab"], shape), "dtype": dtype, **p}


def _lm(d: Inputs) -> Any:
    from .nets import TransformerLM
    return TransformerLM(d["vocab"], d["context"], d["E"], d["H"], d["layers"], dtype=d["dtype"], seed=0)


#: The LM's parameters compared after a step (the first block's, the embedding, the output bias).
_LM_COMPARED = ("embed.W", "block1.attn.W_in", "block1.ff.W2", "norm.gamma", "head.b")


def _lm_steps(ns: types.ModuleType, d: Inputs) -> Run:
    net = _lm(d)
    opt = Adam(lr=TRAIN_LR, eps=TRAIN_ADAM_EPS, eps_hat=False)
    x, t = d["x"], d["t"]

    def step() -> Any:
        opt.update(net.params, net.gradient(x, t))

    def result(_: Any) -> tuple[np.ndarray, ...]:
        after = _on(ns, lambda: net.loss(x, t))()
        return (np.asarray(after), *(net.params[k] for k in _LM_COMPARED))

    return Run(_on(ns, step), result)


#: A fastnn block's parameter, the torch.nn.TransformerEncoderLayer parameter it is, stored transposed or not.
_LM_TORCH_KEYS = (("attn.W_in", "self_attn.in_proj_weight", True), ("attn.b_in", "self_attn.in_proj_bias", False),
                  ("attn.W_out", "self_attn.out_proj.weight", True), ("attn.b_out", "self_attn.out_proj.bias", False),
                  ("ff.W1", "linear1.weight", True), ("ff.b1", "linear1.bias", False),
                  ("ff.W2", "linear2.weight", True), ("ff.b2", "linear2.bias", False),
                  ("norm1.gamma", "norm1.weight", False), ("norm1.beta", "norm1.bias", False),
                  ("norm2.gamma", "norm2.weight", False), ("norm2.beta", "norm2.bias", False))


def _torch_lm(d: Inputs) -> Run:
    """The same model in eager torch.nn (pre-norm TransformerEncoderLayers with a causal mask, tanh GELU, tied
    output), started from the fastnn model's weights."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    net = _lm(d)
    p = net.params
    tdtype = torch.float32 if d["dtype"] == np.float32 else torch.float64
    V, E, T = d["vocab"], d["E"], d["context"]

    class LM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(V, E)
            self.blocks = nn.ModuleList(nn.TransformerEncoderLayer(
                E, d["H"], 4 * E, dropout=0.0, activation=partial(F.gelu, approximate="tanh"), batch_first=True,
                norm_first=True) for _ in range(d["layers"]))
            self.norm = nn.LayerNorm(E)
            self.head_b = nn.Parameter(torch.zeros(V))
            pe = net.pos.forward(np.zeros((1, T, E), d["dtype"]), train_flg=False)[0]
            self.register_buffer("pe", torch.from_numpy(pe))
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(T))

        def forward(self, x: Any) -> Any:
            h = self.embed(x) + self.pe[:x.shape[1]]
            for block in self.blocks:
                h = block(h, src_mask=self.mask, is_causal=True)
            return self.norm(h) @ self.embed.weight.T + self.head_b

    model = LM().to(tdtype).train()
    with torch.no_grad():
        model.embed.weight.copy_(torch.from_numpy(p["embed.W"]))
        model.norm.weight.copy_(torch.from_numpy(p["norm.gamma"]))
        model.norm.bias.copy_(torch.from_numpy(p["norm.beta"]))
        for i, block in enumerate(model.blocks, 1):
            for ours, theirs, transposed in _LM_TORCH_KEYS:
                a = p[f"block{i}.{ours}"]
                theirs = block.get_parameter(theirs)
                theirs.copy_(torch.from_numpy(a.T.copy() if transposed else a))
    opt = torch.optim.Adam(model.parameters(), lr=TRAIN_LR, eps=TRAIN_ADAM_EPS, fused=True)
    x, t = torch.from_numpy(d["x"]), torch.from_numpy(d["t"])

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x).reshape(-1, V), t.reshape(-1)).backward()
        opt.step()

    def result(_: Any) -> tuple[np.ndarray, ...]:
        with torch.no_grad():
            after = F.cross_entropy(model(x).reshape(-1, V), t.reshape(-1)).numpy()
        b1 = model.blocks[0]
        return (after, model.embed.weight.detach().numpy(), b1.self_attn.in_proj_weight.detach().numpy().T,
                b1.linear2.weight.detach().numpy().T, model.norm.weight.detach().numpy(), model.head_b.detach().numpy())

    return Run(step, result)


def _cases_transformer() -> Iterator[Case]:
    yield Case("mha_causal_forward_backward", "transformer", MHA_SIZES, _mha_inputs, steps=_mha_steps,
               torch=_torch_mha, goal=Goal("MultiHeadAttention layer N64 S64 E256 h8 causal, fwd+bwd", "mnist"))
    yield Case("train_transformer_lm", "transformer", LM_SIZES, _lm_inputs, steps=_lm_steps, torch=_torch_lm,
               goal=Goal("TransformerLM training step (4x128, 4 heads, context 128, batch 32), Adam", "cifar"))


# Recurrent networks (fastnn/kernels/recurrent.py)

RNN_SIZES = {
    # H odd and below one vector's width; T and N small
    "tiny": {"N": 2, "T": 3, "D": 4, "H": 5},
    # Deep Learning from Scratch 2's Rnnlm (ch06) and BetterRnnlm (wordvec 650, hidden 650), batch 20, 35 steps
    "mnist": {"N": 20, "T": 35, "D": 100, "H": 100},
    "cifar": {"N": 20, "T": 35, "D": 650, "H": 650},
}
#: The speed targets' other sizes: DLFS-2's Rnnlm (also the entries' "mnist") and at batch 64; a character-level
#: language model, 65 characters one-hot, batch 64 of 100 steps, 256 units (and 512).
RNNLM_SIZES = {"tiny": {"N": 1, "T": 1, "D": 3, "H": 17}, "mnist": RNN_SIZES["mnist"],
               "cifar": {"N": 64, "T": 35, "D": 100, "H": 100}}
CHAR_RNN_SIZES = {"tiny": {"N": 1, "T": 2, "D": 3, "H": 17}, "mnist": {"N": 64, "T": 100, "D": 65, "H": 256},
                  "cifar": {"N": 64, "T": 100, "D": 65, "H": 512}}
#: Gate blocks of each cell, and the GRU form whose inputs a case's twin-computed state uses.
_RNN_GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _rnn_inputs(cell: str, p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    N, T, D, H = p["N"], p["T"], p["D"], p["H"]
    G = _RNN_GATES[cell] * H
    s = 1 / np.sqrt(H)  # PyTorch's initialisation scale
    d = {"x": _rand(rng, (N, T, D), dtype), "h0": _rand(rng, (N, H), dtype, 0.5), "c0": _rand(rng, (N, H), dtype),
         "Wx": _rand(rng, (D, G), dtype, s), "Wh": _rand(rng, (H, G), dtype, s), "b": _rand(rng, (G,), dtype, s),
         "bh": _rand(rng, (G,), dtype, s), "dhs": _rand(rng, (N, T, H), dtype), "dc_last": _rand(rng, (N, H), dtype)}
    if cell == "rnn":
        d["hs"] = reference.rnn_forward(d["x"], d["h0"], d["Wx"], d["Wh"], d["b"])
    elif cell == "lstm":
        d["hs"], d["cs"], d["acts"] = reference.lstm_forward(d["x"], d["h0"], d["c0"], d["Wx"], d["Wh"], d["b"])
        for layout in ("ifog", "fgio"):  # the same weights in the other gate orders, and their forward
            perm = [("ifgo".index(g), layout) for g in layout]
            d[f"Wx_{layout}"], d[f"Wh_{layout}"], d[f"b_{layout}"] = (
                np.concatenate([w[..., k * H:(k + 1) * H] for k, _ in perm], axis=-1) for w in (d["Wx"], d["Wh"],
                                                                                              d["b"]))
            d[f"fwd_{layout}"] = reference.lstm_forward(d["x"], d["h0"], d["c0"], d[f"Wx_{layout}"],
                                                        d[f"Wh_{layout}"], d[f"b_{layout}"], layout=layout)
    else:
        d["hs"], d["acts"] = reference.gru_forward(d["x"], d["h0"], d["Wx"], d["Wh"], d["b"])
        d["hs_torch"], d["acts_torch"] = reference.gru_forward(d["x"], d["h0"], d["Wx"], d["Wh"], d["b"], d["bh"],
                                                               form="torch")
    return d


def _lstm_layout(layout: str, backward: bool) -> Callable[[Inputs], Inputs]:
    def kw(d: Inputs) -> Inputs:
        out = {"Wx": d[f"Wx_{layout}"], "Wh": d[f"Wh_{layout}"], "layout": layout}
        if backward:
            out.update(zip(("hs", "cs", "acts"), d[f"fwd_{layout}"], strict=True))
        else:
            out["b"] = d[f"b_{layout}"]
        return out
    return kw


def _torch_rnn(cell: str, d: Inputs, form: str = "torch") -> tuple[Callable[[], Any], tuple[Any, ...]]:
    """torch.nn.RNN/LSTM/GRU (batch first) with the inputs' weights; ``forward()`` returns (out, h_n[, c_n]) and
    the leaves are x, h0[, c0], weight_ih, weight_hh, bias_ih[, bias_hh]."""
    torch = _torch()
    D, H = d["Wx"].shape[0], d["Wh"].shape[0]
    module = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](D, H, batch_first=True)
    module = module.to(torch.float64 if d["x"].dtype == np.float64 else torch.float32)
    with torch.no_grad():
        module.weight_ih_l0.copy_(_t(d["Wx"].T))
        module.weight_hh_l0.copy_(_t(d["Wh"].T))
        module.bias_ih_l0.copy_(_t(d["b"]))
        module.bias_hh_l0.copy_(_t(d["bh"]) if cell == "gru" else torch.zeros(module.bias_hh_l0.shape))
    x, h0, c0 = _t(d["x"], True), _t(d["h0"][None], True), _t(d["c0"][None], True)
    state = (h0, c0) if cell == "lstm" else h0
    weights = (module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0)
    if cell == "gru":
        weights += (module.bias_hh_l0,)
    return partial(module, x, state), (x, h0, *((c0,) if cell == "lstm" else ()), *weights)


def _torch_rnn_grads(leaves: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """The leaves' gradients in fastnn's order and shapes: dx, dh0[, dc0], dWx, dWh, db[, dbh]."""
    g = [leaf.grad.numpy() for leaf in leaves]
    k = 3 if len(leaves) == 6 and leaves[2].dim() == 3 else 2  # LSTM leaves hold c0
    return (g[0], *(a[0] for a in g[1:k]), g[k].T, g[k + 1].T, *g[k + 2:])


def _torch_rnn_fwd_bwd(cell: str, d: Inputs) -> Run:
    """Forward and backward of sum(out * dhs) (the graph rebuilt each call, as in training)."""
    forward, leaves = _torch_rnn(cell, d)
    dhs = _t(d["dhs"])

    def step() -> None:
        for leaf in leaves:
            leaf.grad = None
        forward()[0].backward(dhs)

    return Run(step, lambda _: _torch_rnn_grads(leaves))


def _rnn_flops(cell: str, p: Mapping[str, Any]) -> int:
    """The products of a forward and backward with every gradient (dx, dh0, dWx, dWh): x @ Wx and h @ Wh forward;
    dx, dWx, dh and dWh backward. Six products of N*T*G*(D or H) multiply-adds, G the gate width."""
    return 6 * p["N"] * p["T"] * _RNN_GATES[cell] * p["H"] * (p["D"] + p["H"])


def _rnn_fwd_bwd(cell: str, k: types.ModuleType, d: Inputs) -> Run:
    """fastnn's or the twin's forward then backward of the same loss (no gradient into the last cell state)."""
    x, h0, c0, Wx, Wh, b, dhs = (d[a] for a in ("x", "h0", "c0", "Wx", "Wh", "b", "dhs"))

    def step() -> Any:
        if cell == "rnn":
            return k.rnn_backward(dhs, x, h0, Wx, Wh, k.rnn_forward(x, h0, Wx, Wh, b))
        if cell == "lstm":
            return k.lstm_backward(dhs, None, x, h0, c0, Wx, Wh, *k.lstm_forward(x, h0, c0, Wx, Wh, b))
        hs, acts = k.gru_forward(x, h0, Wx, Wh, b, d["bh"], form="torch")
        return k.gru_backward(dhs, x, h0, Wx, Wh, hs, acts, form="torch")

    return Run(step)


def _cases_recurrent() -> Iterator[Case]:
    make = {cell: partial(_rnn_inputs, cell) for cell in _RNN_GATES}
    first = lambda r: to_numpy(r[0])  # noqa: E731 -- torch's output sequence (its final states are hs[:, -1])
    yield Case("rnn_forward", "recurrent", RNN_SIZES, make["rnn"], "rnn_forward", ("x", "h0", "Wx", "Wh", "b"),
               torch=lambda d: Run(_torch_rnn("rnn", d)[0], first))
    yield Case("rnn_backward", "recurrent", RNN_SIZES, make["rnn"], "rnn_backward",
               ("dhs", "x", "h0", "Wx", "Wh", "hs"))
    yield Case("lstm_forward", "recurrent", RNN_SIZES, make["lstm"], "lstm_forward",
               ("x", "h0", "c0", "Wx", "Wh", "b"),
               variants={lay: _lstm_layout(lay, False) for lay in ("ifog", "fgio")},
               torch=lambda d: Run(_torch_rnn("lstm", d)[0], first))
    yield Case("lstm_backward", "recurrent", RNN_SIZES, make["lstm"], "lstm_backward",
               ("dhs", "dc_last", "x", "h0", "c0", "Wx", "Wh", "hs", "cs", "acts"),
               variants={"no_dc": lambda d: {"dc_last": None},
                         **{lay: _lstm_layout(lay, True) for lay in ("ifog", "fgio")}})
    yield Case("gru_forward", "recurrent", RNN_SIZES, make["gru"], "gru_forward", ("x", "h0", "Wx", "Wh", "b"),
               variants={"torch": lambda d: {"bh": d["bh"], "form": "torch"}})
    yield Case("gru_backward", "recurrent", RNN_SIZES, make["gru"], "gru_backward",
               ("dhs", "x", "h0", "Wx", "Wh", "hs", "acts"),
               variants={"torch": lambda d: {"hs": d["hs_torch"], "acts": d["acts_torch"], "form": "torch"}})
    # the targets (fastnn's time as a fraction of torch's), each at one size of one case
    targets = (("", RNN_SIZES, "cifar", "N20 T35 D650 H650 (DLFS-2 BetterRnnlm)", {"lstm": 1.0, "gru": 1.0}),
               ("_rnnlm", RNNLM_SIZES, "mnist", "N20 T35 D100 H100 (DLFS-2 Rnnlm)", {"lstm": 0.5, "gru": 1.0}),
               ("_char", CHAR_RNN_SIZES, "mnist", "N64 T100 D65 H256 (char LM)", {"lstm": 1.0, "gru": 1.0}))
    for cell in ("rnn", "lstm", "gru"):
        for tag, sizes, size, title, ratio in targets:
            if cell == "rnn" and tag:
                continue  # no target for the tanh RNN: its fwd+bwd is timed at the entries' sizes only
            goal = Goal(f"{cell.upper()} {title}, fwd+bwd", size, ratio[cell]) if cell in ratio else None
            yield Case(f"{cell}_fwd_bwd{tag}", "recurrent", sizes, make[cell], steps=partial(_rnn_fwd_bwd, cell),
                       torch=partial(_torch_rnn_fwd_bwd, cell), flops=partial(_rnn_flops, cell), goal=goal)

# An optimizer's update of a whole small net (fastnn.optim's multi-tensor step against torch's fused Adam)


def _fastnn_adam_net(build: Callable[[Inputs], Any], ns: types.ModuleType, d: Inputs) -> Run:
    net = build(d)
    grads = net.gradient(d["x"], d["t"])  # fixed gradients: the update alone is timed
    opt = Adam(lr=TRAIN_LR, eps=TRAIN_ADAM_EPS, eps_hat=False)  # torch's form, as the torch column
    return Run(_on(ns, lambda: opt.update(net.params, grads)), lambda _: tuple(net.params.values()))


def _torch_adam_net(build: Callable[[Inputs], Any], d: Inputs) -> Run:
    """torch.optim.Adam(fused=True) over tensors holding the same parameters and gradients."""
    torch = _torch()
    net = build(d)
    grads = net.gradient(d["x"], d["t"])
    tensors = [_t(p.copy(), True) for p in net.params.values()]
    for tensor, key in zip(tensors, net.params, strict=True):
        tensor.grad = _t(grads[key])
    opt = torch.optim.Adam(tensors, lr=TRAIN_LR, eps=TRAIN_ADAM_EPS, fused=True)
    return Run(opt.step, lambda _: tuple(t.detach().numpy() for t in tensors))


def _cases_smallnets() -> Iterator[Case]:
    yield Case("adam_multilayer_bn", "training", MULTILAYER_BN_SIZES, _train_inputs,
               steps=partial(_fastnn_adam_net, _multilayer_bn), torch=partial(_torch_adam_net, _multilayer_bn),
               goal=Goal("Adam update of all 22 parameters of MultiLayerNetExtend (batch norm)", "mnist", 0.5))
    # train_multilayer_bn again, for its CIFAR-size target row (a Goal has one size)
    yield Case("train_multilayer_bn_cifar", "training", MULTILAYER_BN_SIZES, _train_inputs,
               steps=partial(_fastnn_train, _multilayer_bn), torch=partial(_torch_train, _multilayer_bn),
               goal=Goal("MultiLayerNetExtend batch-norm training step, batch 100, Adam, CIFAR size", "cifar", 0.8))


# ---------------------------------------------------------------------------------------------------------------
# Deep Learning from Scratch 2's BetterRnnlm, one training step (fastnn.compat.dlfs2): forward, backward,
# remove_duplicate (the tied embedding), clip_grads, SGD

BETTER_RNNLM_SIZES = {
    # no dropout at the tiny size, so that torch's run is the same maths (its masks come from its own generator)
    "tiny": {"N": 2, "T": 3, "V": 11, "H": 6, "dropout": 0.0},
    # the same model at Rnnlm's width (wordvec = hidden = 100)
    "mnist": {"N": 20, "T": 35, "V": 10000, "H": 100, "dropout": 0.5},
    # ch06/train_better_rnnlm.py on PTB: batch 20, 35 steps, 10000 words, wordvec = hidden = 650, dropout 0.5
    "cifar": {"N": 20, "T": 35, "V": 10000, "H": 650, "dropout": 0.5},
}
BOOK_LR, BOOK_MAX_GRAD = 20.0, 0.25  # train_better_rnnlm.py's


def _better_rnnlm_inputs(p: Mapping[str, Any], dtype: np.dtype, rng: np.random.Generator) -> Inputs:
    return {"xs": rng.integers(0, p["V"], (p["N"], p["T"])), "ts": rng.integers(0, p["V"], (p["N"], p["T"])), **p}


def _better_rnnlm(d: Inputs) -> Any:
    """The book's model with weights drawn from a seeded global generator (whose state is put back afterwards)."""
    from .compat.dlfs2.better_rnnlm import BetterRnnlm

    state = np.random.get_state()  # noqa: NPY002 -- the book's models draw from the global generator
    np.random.seed(SEED)  # noqa: NPY002
    try:
        return BetterRnnlm(d["V"], d["H"], d["H"], d["dropout"])
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _dlfs2_train(ns: types.ModuleType, d: Inputs) -> Run:
    from .compat.dlfs2.optimizer import SGD
    from .compat.dlfs2.trainer import remove_duplicate
    from .compat.dlfs2.util import clip_grads

    model, opt = _better_rnnlm(d), SGD(BOOK_LR)
    merged: list[Any] = []

    def step() -> Any:
        loss = model.forward(d["xs"], d["ts"])
        model.backward()
        params, grads = remove_duplicate(model.params, model.grads)
        clip_grads(grads, BOOK_MAX_GRAD)
        opt.update(params, grads)
        merged[:] = params
        return loss

    return Run(_on(ns, step), lambda loss: (np.asarray(loss, np.float32), *merged))


def _book_lstm_to_torch(w: np.ndarray, H: int) -> np.ndarray:
    """The book's gate blocks f, g, i, o (last axis) in torch's order i, f, g, o."""
    return np.concatenate([w[..., "fgio".index(g) * H:("fgio".index(g) + 1) * H] for g in "ifgo"], axis=-1)


def _torch_lstm_to_book(w: np.ndarray, H: int) -> np.ndarray:
    return np.concatenate([w[..., "ifgo".index(g) * H:("ifgo".index(g) + 1) * H] for g in "fgio"], axis=-1)


def _torch_dlfs2_train(d: Inputs) -> Run:
    """BetterRnnlm in torch.nn (eager): embedding, dropout, two stateful LSTMs, the tied output layer, cross-entropy,
    clip_grad_norm_ and SGD, from the fastnn model's initial weights (the LSTMs' second bias frozen at zero: the
    book's LSTM has one bias)."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    book = _better_rnnlm(d)
    V, H = d["V"], d["H"]
    emb, fc = nn.Embedding(V, H), nn.Linear(H, V)
    fc.weight = emb.weight  # weight tying
    lstms = [nn.LSTM(H, H, batch_first=True) for _ in range(2)]
    drop = nn.Dropout(d["dropout"])
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(book.params[0]))
        for lstm, (Wx, Wh, b) in zip(lstms, (book.params[1:4], book.params[4:7]), strict=True):
            lstm.weight_ih_l0.copy_(torch.from_numpy(_book_lstm_to_torch(Wx, H).T.copy()))
            lstm.weight_hh_l0.copy_(torch.from_numpy(_book_lstm_to_torch(Wh, H).T.copy()))
            lstm.bias_ih_l0.copy_(torch.from_numpy(_book_lstm_to_torch(b, H)))
            lstm.bias_hh_l0.zero_()
            lstm.bias_hh_l0.requires_grad_(False)
        fc.bias.zero_()
    params = [emb.weight, *(p for lstm in lstms for p in (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0)),
              fc.bias]
    opt = torch.optim.SGD(params, lr=BOOK_LR)
    xs, ts = torch.from_numpy(d["xs"]), torch.from_numpy(d["ts"]).reshape(-1)
    states: list[Any] = [None, None]

    def step() -> Any:
        opt.zero_grad(set_to_none=True)
        out = drop(emb(xs))
        for i, lstm in enumerate(lstms):
            out, state = lstm(out, states[i])
            states[i] = tuple(s.detach() for s in state)  # stateful: carried, not backpropagated into
            out = drop(out)
        loss = F.cross_entropy(fc(out).reshape(-1, V), ts)
        loss.backward()
        nn.utils.clip_grad_norm_(params, BOOK_MAX_GRAD)
        opt.step()
        return loss

    def result(loss: Any) -> tuple[np.ndarray, ...]:
        w = [p.detach().numpy() for p in params]
        lstm = [(_torch_lstm_to_book(w[i].T, H), _torch_lstm_to_book(w[i + 1].T, H), _torch_lstm_to_book(w[i + 2], H))
                for i in (1, 4)]
        return (loss.detach().numpy(), w[0], *lstm[0], *lstm[1], w[7])

    return Run(step, result)


def _cases_dlfs2_training() -> Iterator[Case]:
    yield Case("train_better_rnnlm", "training", BETTER_RNNLM_SIZES, _better_rnnlm_inputs, steps=_dlfs2_train,
               torch=_torch_dlfs2_train, dtypes=("float32",),  # the book's models are float32 ('f')
               goal=Goal("DLFS-2 BetterRnnlm training step (V10000, N20 T35, D=H=650, tied, SGD + clipping)",
                         "cifar"))


# ---------------------------------------------------------------------------------------------------------------

def _all_cases() -> dict[str, Case]:
    cases: dict[str, Case] = {}
    for group in (_cases_conv, _cases_conv_relu, _cases_linalg, _cases_pool, _cases_norm, _cases_act, _cases_opt,
                  _cases_training, _cases_sequence, _cases_recurrent, _cases_norm_zoo, _cases_swats, _cases_reparam,
                  _cases_attention, _cases_transformer, _cases_smallnets, _cases_dlfs2_training):
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
