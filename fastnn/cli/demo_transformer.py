"""``python -m fastnn demo --task transformer``: a character-level Transformer (GPT-style) on Tiny Shakespeare.

The text task's steps (:mod:`fastnn.cli.demo_text`) with :class:`fastnn.nets.TransformerLM` in place of the LSTM:
read the corpus, compile the kernels once (shown, not timed), train with Adam on random windows of ``--seq-len``
characters with a tqdm bar, report the validation loss in bits per character against the unigram baseline, time
the same training steps on the kernels and on their NumPy twins (``fastnn.backend.using("reference")``), print
generated text and save the parameters and a loss plot.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time

import numpy as np

from . import CLIError, _compiling, _positive_int, apply_threads
from .demo_text import PRIME, evaluate, unigram_bits, windows

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
    from ..checkpoint import save_arrays
    from ..datasets import DownloadError, load_tinyshakespeare
    from ..nets import TransformerLM
    from ..optim import get
    from .demo import _want_bar, compare_speed

    wall_start = time.perf_counter()
    apply_threads(args.threads)
    steps = args.steps or DEFAULTS["steps"]
    batch = args.batch_size or DEFAULTS["batch_size"]
    lr = args.lr if args.lr is not None else DEFAULTS["lr"]
    T, dtype = args.seq_len, np.dtype(args.dtype)
    if args.width % args.heads:
        raise CLIError(f"--width must be divisible by --heads={args.heads}, got {args.width}")
    if not args.no_plot:
        from ..datasets._optional import require

        require("matplotlib", "fastnn demo's plot (or pass --no-plot)")
    os.makedirs(args.out, exist_ok=True)
    try:
        corpus, char_to_id, id_to_char = load_tinyshakespeare(data_dir=args.data_dir)
    except (DownloadError, FileNotFoundError, ValueError) as exc:
        raise CLIError(str(exc)) from exc
    cut = int(0.9 * corpus.size)
    train, valid = corpus[:cut], corpus[cut:]
    V = len(char_to_id)
    if valid.size <= T + 1:
        raise CLIError(f"--seq-len must be below the validation text's {valid.size - 1} characters, got {T}")
    print(f"data: Tiny Shakespeare, {train.size} training and {valid.size} validation characters, vocabulary {V}")
    net = TransformerLM(V, T, args.width, args.heads, args.layers, dropout=args.dropout, dtype=dtype,
                        seed=args.seed)
    n_params = sum(p.size for p in net.params.values())
    untrained = copy.deepcopy(net)
    print(f"model: TransformerLM {args.layers} pre-norm blocks x width {args.width}, {args.heads} heads, context {T}, "
          f"tied embedding, {n_params} parameters, {dtype}; {args.optimizer} lr {lr}, batch {batch}, {steps} steps")

    rng = np.random.default_rng(args.seed)
    eval_starts = np.random.default_rng(args.seed + 2).integers(0, valid.size - T - 1, max(batch, 64))
    optimizer = get(args.optimizer, lr=lr)
    with _compiling.watch(show=True, stream=sys.stdout) as compiled:
        twin = copy.deepcopy(net)
        get(args.optimizer, lr=lr).update(twin.params, twin.gradient(*windows(train, rng.integers(0, 99, batch), T)))
        twin.generate([0], 1, np.random.default_rng(0))
    print(f"kernels: {compiled.count} compiled in {compiled.seconds:.1f} s (first run; cached on disk)"
          if compiled.count else "kernels: loaded from the on-disk cache")

    train_loss: list[float] = []
    valid_at: list[int] = []
    valid_loss: list[float] = []
    eval_every = max(steps // args.evals, 1)
    bar = None
    if _want_bar():
        from tqdm import tqdm

        bar = tqdm(total=steps, desc="training", unit=" steps", file=sys.stdout, leave=False, dynamic_ncols=True)
    train_s = 0.0
    with _compiling.watch() as late:
        for step in range(1, steps + 1):
            xb, tb = windows(train, rng.integers(0, train.size - T - 1, batch), T)
            start = time.perf_counter()
            optimizer.update(net.params, net.gradient(xb, tb))
            train_s += time.perf_counter() - start
            train_loss.append(float(net.last_loss))
            if step % eval_every == 0 or step == steps:
                valid_at.append(step)
                valid_loss.append(evaluate(net, valid, eval_starts, T, batch))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{train_loss[-1]:.3f}", valid=f"{valid_loss[-1]:.3f}" if valid_loss else "-")
    if bar is not None:
        bar.close()
    baseline = unigram_bits(train, valid, V)
    print("  step  train loss  valid loss  valid bits/char  valid perplexity")
    for s, v in zip(valid_at, valid_loss, strict=True):
        print(f"{s:6d}  {np.mean(train_loss[max(s - eval_every, 0):s]):10.4f}  {v:10.4f}  "
              f"{v / math.log(2):15.3f}  {math.exp(v):16.2f}")
    train_s -= late.seconds
    print(f"training: {steps} steps in {train_s:.2f} s ({1e3 * train_s / steps:.1f} ms per step, evaluation not "
          "included)")
    final = valid_loss[-1] / math.log(2)
    print(f"validation: {final:.3f} bits per character (unigram baseline {baseline:.3f}; "
          f"{100 * (1 - final / baseline):.0f}% below it)")

    pool = windows(train, rng.integers(0, train.size - T - 1, 8 * batch), T)
    speed = compare_speed(untrained, *pool, batch, args.compare_steps, lr, args.seed)
    print(f"speed (one Adam training step, batch {batch} x {T}, median of {args.compare_steps}): "
          f"fastnn {1e3 * speed['fastnn_s']:.1f} ms, NumPy reference {1e3 * speed['numpy_s']:.1f} ms")
    print(f"speed-up: {speed['speedup']:.1f}x (largest relative loss difference on the same steps: "
          f"{speed['max_rel_loss_diff']:.1e})")
    if args.generate > 0:
        prime = [char_to_id[c] for c in PRIME if c in char_to_id]
        ids = net.generate(prime, args.generate, np.random.default_rng(args.seed), temperature=0.8)
        print("generated (temperature 0.8):")
        print(PRIME + "".join(id_to_char[i] for i in ids))
    params_path = os.path.join(args.out, "demo_transformer_params.npz")
    save_arrays(params_path, net.params)
    print(f"parameters: {params_path}")
    if not args.no_plot:
        from .plotting import language_model_curves

        png = os.path.join(args.out, "demo_transformer.png")
        language_model_curves(train_loss, valid_at, valid_loss, baseline * math.log(2), png,
                              f"TransformerLM ({args.layers}x{args.width}, {args.heads} heads) on Tiny Shakespeare "
                              f"({dtype}, {args.optimizer}, fastnn)")
        print(f"plot: {png}")
    print(f"wall time: {time.perf_counter() - wall_start:.2f} s")
    return 0
