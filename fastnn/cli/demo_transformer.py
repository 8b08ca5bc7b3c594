"""``python -m fastnn demo --task transformer``: a character-level Transformer (GPT-style) on Tiny Shakespeare.

The text task's steps (:mod:`fastnn.cli.demo_text`, whose driver :func:`~fastnn.cli.demo_text.run_language_model`
runs this task too) with :class:`fastnn.nets.TransformerLM` in place of the LSTM:
read the corpus, compile the kernels once (shown, not timed), train with Adam on random windows of ``--seq-len``
characters with a tqdm bar, report the validation loss in bits per character against the unigram baseline, time
the same training steps on the kernels and on their NumPy twins (``fastnn.backend.using("reference")``), print
generated text and save the parameters and a loss plot.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from . import CLIError, _positive_int
from .demo_text import run_language_model

#: The transformer task's defaults (options left at None take these).
DEFAULTS = {"steps": 200, "batch_size": 32, "lr": 0.001}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The transformer's own options (--steps, --seq-len, --evals, --generate are the text task's)."""
    g = p.add_argument_group("--task transformer")
    g.add_argument("--layers", type=_positive_int, default=4, help="Transformer blocks")
    g.add_argument("--heads", type=_positive_int, default=4, help="attention heads per block")
    g.add_argument("--width", type=_positive_int, default=128, help="model width E (divisible by --heads)")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout (embeddings, attention weights, blocks)")


def run(args: argparse.Namespace) -> int:
    if args.width % args.heads:
        raise CLIError(f"--width must be divisible by --heads={args.heads}, got {args.width}")

    def build(V: int, T: int, dtype: np.dtype, lr: float, batch: int, steps: int) -> tuple[Any, str]:
        from ..nets import TransformerLM

        net = TransformerLM(V, T, args.width, args.heads, args.layers, dropout=args.dropout, dtype=dtype,
                            seed=args.seed)
        n_params = sum(p.size for p in net.params.values())
        return net, (f"TransformerLM {args.layers} pre-norm blocks x width {args.width}, {args.heads} heads, "
                     f"context {T}, tied embedding, {n_params} parameters, {dtype}; {args.optimizer} lr {lr}, "
                     f"batch {batch}, {steps} steps")

    return run_language_model(args, DEFAULTS, build, stem="demo_transformer",
                              name=f"TransformerLM ({args.layers}x{args.width}, {args.heads} heads)", ms_digits=1)
