"""The speed targets of fastnn, measured side by side: ``python -m fastnn.bench --targets``.

Each target is one user-visible operation timed as a whole -- a forward *and* its backward, a full optimizer
step, a whole training step -- for fastnn, for the NumPy reference twins and for PyTorch's CPU path when torch is
installed, in one process, interleaved (:func:`fastnn.bench.measure`: JIT warmed, median of repeated blocks).
float32 throughout. The optimizer and normalization rows also report achieved memory bandwidth against a STREAM
triad measured in the same run, since those kernels are bandwidth-bound.

Run it on a quiet machine with OpenBLAS left to pick its own kernels::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m fastnn.bench --targets
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import bench_cases, kernels, reference

Calls = dict[str, Callable[[], Any]]

#: (name, target as a fraction of PyTorch's time, minimal bytes moved per call or None)
TARGETS: list[tuple[str, float]] = [
    ("Adam step, 10M float32 params", 1.0),
    ("conv 3x3 pad 1, N64 C64 32x32, 64 filters, fwd+bwd", 1.0),
    ("max-pool 2x2 s2, N64 C64 32x32, fwd+bwd", 0.5),
    ("batchnorm train (64,64,32,32) per channel, fwd+bwd", 1.0),
    ("batchnorm train (256,4096), fwd+bwd", 1.0),
    ("SimpleConvNet training step, batch 100, Adam", 1.0),
]


def _rng() -> np.random.Generator:
    return np.random.default_rng(20261123)


def _adam(torch: Any) -> tuple[Calls, int]:
    n = 10_000_000
    rng = _rng()
    p0 = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    calls: Calls = {}
    for name, ns in (("fastnn", kernels), ("numpy", reference)):
        p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
        calls[name] = (lambda ns=ns, p=p, m=m, v=v:
                       ns.adam_step(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1 - 0.9, 1 - 0.999))
    if torch is not None:
        tp = torch.nn.Parameter(torch.from_numpy(p0.copy()))
        tp.grad = torch.from_numpy(g.copy())
        opt = torch.optim.Adam([tp], lr=1e-3, fused=True)
        calls["torch"] = opt.step
    return calls, 28 * n  # read p, g, m, v; write p, m, v


def _conv(torch: Any) -> tuple[Calls, None]:
    rng = _rng()
    x = rng.standard_normal((64, 64, 32, 32), dtype=np.float32)
    W = (rng.standard_normal((64, 64, 3, 3), dtype=np.float32) * 0.05).astype(np.float32)
    b = rng.standard_normal(64, dtype=np.float32)
    dout = rng.standard_normal((64, 64, 32, 32), dtype=np.float32)
    calls: Calls = {}
    for name, ns in (("fastnn", kernels), ("numpy", reference)):
        def step(ns: Any = ns, ws: dict = {}) -> Any:  # noqa: B006 - the workspace a Convolution layer keeps
            ns.conv2d_forward(x, W, b, 1, 1, cache=ws)
            return ns.conv2d_backward(dout, x, W, 1, 1, cache=ws)
        calls[name] = step
    if torch is not None:
        tx, tW, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, W, b))
        td = torch.from_numpy(dout)

        def torch_step() -> None:
            torch.nn.functional.conv2d(tx, tW, tb, 1, 1).backward(td)
        calls["torch"] = torch_step
    return calls, None


def _maxpool(torch: Any) -> tuple[Calls, int]:
    rng = _rng()
    x = rng.standard_normal((64, 64, 32, 32), dtype=np.float32)
    dout = rng.standard_normal((64, 64, 16, 16), dtype=np.float32)
    calls: Calls = {}
    for name, ns in (("fastnn", kernels), ("numpy", reference)):
        def step(ns: Any = ns) -> Any:
            _, arg = ns.maxpool2d_forward(x, 2, 2, 2, 0)
            return ns.maxpool2d_backward(dout, arg, x.shape, 2, 2, 2, 0)
        calls[name] = step
    if torch is not None:
        tx = torch.from_numpy(x.copy()).requires_grad_()
        td = torch.from_numpy(dout)

        def torch_step() -> None:
            torch.nn.functional.max_pool2d(tx, 2, 2).backward(td)
        calls["torch"] = torch_step
    return calls, 4 * (x.size * 2 + dout.size * 2)  # read x, write out; read dout, write dx


def _batchnorm(shape: tuple[int, ...]) -> Callable[[Any], tuple[Calls, int]]:
    def build(torch: Any) -> tuple[Calls, int]:
        rng = _rng()
        x = rng.standard_normal(shape, dtype=np.float32) * 2 + 1
        dout = rng.standard_normal(shape, dtype=np.float32)
        c = shape[1]
        gamma = rng.standard_normal(c, dtype=np.float32)
        beta = rng.standard_normal(c, dtype=np.float32)
        calls: Calls = {}
        for name, ns in (("fastnn", kernels), ("numpy", reference)):
            rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)

            def step(ns: Any = ns, rm: np.ndarray = rm, rv: np.ndarray = rv) -> Any:
                _, mean, inv_std = ns.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.9, 1e-5)
                return ns.batchnorm_backward(dout, x, gamma, mean, inv_std)
            calls[name] = step
        if torch is not None:
            tx, tg, tb = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, gamma, beta))
            trm, trv = torch.zeros(c), torch.ones(c)
            td = torch.from_numpy(dout)

            def torch_step() -> None:
                torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, True, 0.1, 1e-5).backward(td)
            calls["torch"] = torch_step
        return calls, 4 * x.size * 5  # forward: read x, write out; backward: read dout and x, write dx
    return build


def _simple_convnet(torch: Any) -> tuple[Calls, None]:
    case = bench_cases.CASES["train_simpleconvnet"]
    inputs = case.inputs("mnist", "float32")
    calls: Calls = {"fastnn": case.prepare("fastnn", "mnist", "float32", inputs).call,
                    "numpy": case.prepare("numpy", "mnist", "float32", inputs).call}
    if torch is not None:
        calls["torch"] = case.prepare("torch", "mnist", "float32", inputs).call
    return calls, None


BUILDERS: list[Callable[[Any], tuple[Calls, int | None]]] = [
    _adam, _conv, _maxpool, _batchnorm((64, 64, 32, 32)), _batchnorm((256, 4096)), _simple_convnet]


def run(repeat: int = 7, min_time: float = 0.2, torch_threads: int | None = None) -> list[dict[str, Any]]:
    """Measure every target; returns one row per target with seconds per call of each implementation."""
    from .bench import measure, triad_bandwidth

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch_threads is not None:
        torch.set_num_threads(torch_threads)
    triad = triad_bandwidth()
    rows = []
    for (name, goal), build in zip(TARGETS, BUILDERS, strict=True):
        calls, traffic = build(torch)
        seconds = measure(calls, repeat, min_time)
        rows.append({"case": name, "goal": goal, "traffic": traffic, "triad": triad, **seconds})
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """The targets table as plain text."""

    def ms(s: float | None) -> str:
        return "-" if s is None else f"{s * 1e3:.2f} ms"

    head = ("case", "fastnn", "NumPy ref", "torch", "ref/fastnn", "fastnn/torch", "target", "GB/s", "of triad")
    lines = []
    for r in rows:
        f, n, t = r.get("fastnn"), r.get("numpy"), r.get("torch")
        gbs = r["traffic"] / f / 1e9 if r["traffic"] and f else None
        triad = r["triad"]
        lines.append((r["case"], ms(f), ms(n), ms(t), f"{n / f:.1f}x" if n and f else "-",
                      f"{f / t:.2f}" if f and t else "-", f"<= {r['goal']:.1f}",
                      f"{gbs:.1f}" if gbs else "-",
                      f"{gbs * 1e9 / triad:.0%}" if gbs and triad else "-"))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    if rows and rows[0]["triad"]:
        out.append(f"STREAM triad (Numba, both cores): {rows[0]['triad'] / 1e9:.1f} GB/s")
    return "\n".join(out)
