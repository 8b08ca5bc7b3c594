"""Many trainings on a Dask cluster: random hyperparameter searches, the chapter-6 experiments, batch inference.

Needs the ``distributed`` extra (``pip install "fastnn[distributed]"``: dask[array] and distributed); importing this
module does not, calling into a cluster does.

* :func:`search` / :func:`run_trials` -- independent trials (``train_fn(params, seed, data)``) on the workers of a
  ``distributed.Client``, or in this process when ``client`` is None. Each trial has an id and a seed that depend
  only on the search's seed (:func:`make_trials`); results stream back as they finish, with a progress bar, and are
  appended to a JSON-lines file, so ``resume=True`` runs only the missing trials.
* :func:`run_experiment` -- ``python -m fastnn experiment NAME`` from Python, its trainings on the cluster.
* :func:`predict` -- ``net.predict`` over a chunked ``dask.array``, the net scattered once.
* :func:`connect` / :func:`local_cluster` -- a client for a scheduler address, or a LocalCluster of one worker
  process per core, each with one Numba thread (``NUMBA_NUM_THREADS=1`` in the worker's environment; Dask's nanny
  sets the OpenMP/BLAS variables but not Numba's). ``threads=k`` gives fewer, fatter workers.
* :mod:`fastnn.distributed.hyperparam` -- the book's search (``ch06/hyperparameter_optimization.py``).

Workers are spawned (Dask's default ``multiprocessing-method``), so GNU OpenMP, Numba's default threading layer
here, starts fresh in each; it accepts concurrent launches from a worker's several threads. Before the trials, one
worker per machine runs a short warm-up that compiles the kernels into Numba's on-disk cache; the other workers
load them from there (fastnn writes cache entries under a file lock, so even concurrent compiles leave it intact).
"""

from __future__ import annotations

from typing import Any

from ._cluster import FastnnThreads, connect, local_cluster
from ._predict import predict
from ._search import Choice, LogUniform, Trial, Uniform, best, make_trials, read_results, run_trials, search

__all__ = ["Choice", "FastnnThreads", "LogUniform", "Trial", "Uniform", "best", "connect", "local_cluster",
           "make_trials", "predict", "read_results", "run_experiment", "run_trials", "search"]


def run_experiment(name: str, client: Any = None, **options: Any) -> dict[str, Any]:
    """Run chapter-6 experiment ``name`` (``optimizers``, ``init``, ``activations``, ``batchnorm``, ``overfit``,
    ``hyperparam``) with its trainings on ``client``'s workers (None: in this process).

    ``options`` are the command line's long options with ``_`` for ``-`` (``epochs=3``, ``dataset='mnist'``,
    ``no_plot=True``, ``out='figs'``, ``results=...``, ``resume=True``); unset ones take the command line's
    defaults. Prints what the command prints and returns the experiment's numbers (a dict).
    """
    from ..cli import experiments

    return experiments.run_named(name, client, **options)
