"""Independent trials on a Dask cluster (or in this process): sampling, submission, streaming, results file."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = ["Choice", "LogUniform", "Trial", "Uniform", "make_trials", "read_results", "run_trials", "search"]


# -- search spaces ---------------------------------------------------------------------------------------------------
class Distribution(Protocol):
    def sample(self, rng: np.random.Generator) -> Any: ...


@dataclass(frozen=True)
class LogUniform:
    """``10 ** U(low, high)``: the book's ``10 ** np.random.uniform(-6, -2)`` for the learning rate."""

    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(10.0 ** rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class Uniform:
    """``U(low, high)``."""

    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class Choice:
    """One of ``options``, equally likely."""

    options: tuple

    def sample(self, rng: np.random.Generator) -> Any:
        return self.options[int(rng.integers(len(self.options)))]


@dataclass(frozen=True)
class Trial:
    """One training of a search: its index ``id``, a seed for its weights and batches, its hyperparameters."""

    id: int
    seed: int
    params: Mapping[str, Any] = field(default_factory=dict)


def make_trials(space: Mapping[str, Distribution], n_trials: int, seed: int = 0) -> list[Trial]:
    """Trials ``0 .. n_trials - 1`` of a random search over ``space``.

    Trial ``i`` depends on ``(seed, i)`` only, not on ``n_trials`` or on which other trials ran: its
    hyperparameters are drawn, in the order of ``space``, from ``SeedSequence(seed, spawn_key=(i, 0))`` and its
    training seed is the first word of ``SeedSequence(seed, spawn_key=(i, 1))``. Asking for 200 trials after 100
    gives the same first 100.
    """
    if isinstance(n_trials, bool) or not isinstance(n_trials, int | np.integer) or n_trials < 0:
        raise ValueError(f"make_trials: n_trials must be an int >= 0, got {n_trials!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"make_trials: seed must be an int >= 0, got {seed!r}")
    for name, dist in space.items():
        if not callable(getattr(dist, "sample", None)):
            raise TypeError(f"make_trials: space[{name!r}] must have sample(rng) (LogUniform, Uniform, Choice), "
                            f"got {type(dist).__name__}")
    trials = []
    for i in range(int(n_trials)):
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(i, 0)))
        params = {name: dist.sample(rng) for name, dist in space.items()}
        trial_seed = int(np.random.SeedSequence(int(seed), spawn_key=(i, 1)).generate_state(1)[0])
        trials.append(Trial(i, trial_seed, params))
    return trials


# -- one trial, wherever it runs ---------------------------------------------------------------------------------------
def _where() -> str:
    """The Dask worker running this task, else ``host:pid`` of this process."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def _run_trial(train_fn: Callable, trial: Trial, data: Any) -> dict[str, Any]:
    """Run ``train_fn(params, seed, data)``; an exception becomes a ``failed`` record (a task that raises is not
    retried by Dask, and the search goes on)."""
    start = time.perf_counter()
    record: dict[str, Any] = {"trial": trial.id, "seed": trial.seed, "params": dict(trial.params)}
    try:
        result = train_fn(dict(trial.params), trial.seed, data)
    except Exception as exc:  # noqa: BLE001 -- any error of a trial is data for the search, not a crash of it
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                      traceback="".join(traceback.format_exception(exc)))
    else:
        record.update(status="ok", result=dict(result) if isinstance(result, Mapping) else result)
    record.update(worker=_where(), seconds=time.perf_counter() - start)
    return record


def _failed(trial: Trial, exc: BaseException) -> dict[str, Any]:
    """The record of a trial whose task itself failed (its worker died ``allowed-failures`` times: KilledWorker)."""
    return {"trial": trial.id, "seed": trial.seed, "params": dict(trial.params), "status": "failed",
            "error": f"{type(exc).__name__}: {exc}", "worker": None, "seconds": None}


# -- results file ------------------------------------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"a trial result must be JSON-serialisable, got {type(value).__name__}")


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a results file (JSON lines), in file order.

    A last line cut short (the process was killed while writing it) is ignored: that trial counts as missing.
    Floats round-trip exactly; NaN and infinities are written as Python's ``json`` writes them (``NaN``).
    """
    records = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines):  # no newline yet: the write was interrupted
                break
            raise ValueError(f"read_results: line {number} of {os.fspath(path)} is not JSON ({exc})") from None
    return records


class _ResultsFile:
    """Appends one JSON line per finished trial, flushed and fsynced, so a killed driver loses no finished trial."""

    def __init__(self, path: str | os.PathLike, search_id: str, resume: bool) -> None:
        self.path = os.fspath(path)
        self.done: dict[int, dict[str, Any]] = {}
        exists = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        if exists and not resume:
            raise FileExistsError(f"results file {self.path} exists: resume it (resume=True, --resume) or choose "
                                  "another file")
        if exists:
            for rec in read_results(self.path):
                if rec.get("search") != search_id:
                    raise ValueError(f"results file {self.path} holds trials of another search (search id "
                                     f"{rec.get('search')!r}, this one is {search_id!r}: other space, seed, "
                                     "training function or settings); choose another file")
                self.done[int(rec["trial"])] = rec
            self._truncate_partial_line()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.search_id = search_id
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 -- closed by close()

    def _truncate_partial_line(self) -> None:
        with open(self.path, "rb+") as f:
            data = f.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                f.truncate(end)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"search": self.search_id, **record}, default=_jsonable, sort_keys=False)
        self._f.write(line + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def _describe(fn: Any) -> str:
    """A name of ``fn`` that is the same in every run (no memory addresses): module.qualname, partials unfolded."""
    if isinstance(fn, functools.partial):
        return f"partial({_describe(fn.func)}, {fn.args!r}, {sorted(fn.keywords.items())!r})"
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', type(fn).__qualname__)}"


def _search_id(train_fn: Callable, tag: Any) -> str:
    """A fingerprint of what a results file holds: the training function and ``tag`` (not the number of trials:
    a search can be extended, and each resumed trial is checked against its record)."""
    h = hashlib.sha256()
    h.update(_describe(train_fn).encode())
    h.update(repr(tag).encode())
    return h.hexdigest()[:16]


def _check_record(record: dict[str, Any], trial: Trial, path: str) -> None:
    if record.get("seed") != trial.seed or record.get("params") != dict(trial.params):
        raise ValueError(f"results file {path}: trial {trial.id} was recorded with seed {record.get('seed')} and "
                         f"params {record.get('params')}, this search has seed {trial.seed} and params "
                         f"{dict(trial.params)}; choose another file")


# -- driver ----------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _progress(total: int, enabled: bool, desc: str) -> Iterator[Any]:
    bar = None
    if enabled and total:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            bar = None
        else:
            # disable=None: drawn on a terminal only, so a log or a pipe gets no carriage-return frames
            bar = tqdm(total=total, desc=desc, unit="trial", file=sys.stderr, dynamic_ncols=True, disable=None)
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def _one_worker_per_host(client: Any) -> list[str]:
    """The address of one worker on every machine of the cluster."""
    by_host: dict[str, str] = {}
    for address, info in sorted(client.scheduler_info(n_workers=-1)["workers"].items()):
        by_host.setdefault(info.get("host", address.rsplit(":", 1)[0]), address)
    return list(by_host.values())


def _warm(warm: Callable[[Any], Any], data: Any) -> str:
    warm(data)
    return _where()


def _execute(client: Any, todo: Sequence[Trial], train_fn: Callable, data: Any,
             warm: Callable[[Any], Any] | None, key_prefix: str) -> Iterator[dict[str, Any]]:
    """Yield the record of every trial of ``todo`` as it finishes (in process when ``client`` is None)."""
    if client is None:
        for trial in todo:
            yield _run_trial(train_fn, trial, data)
        return

    from distributed import as_completed, wait

    # Scatter the data set once, to every worker (wrapped in a list so a tuple is sent as one object): each task
    # then names it by key instead of carrying it. A worker that joins later (one restarted after a crash)
    # fetches it from a peer when it first needs it.
    data_ref = client.scatter([data], broadcast=True, hash=False)[0] if data is not None else None
    if warm is not None:
        # Compile (or load) every kernel the trials use once per machine before the other workers start: they
        # then load the cached machine code instead of compiling the same kernels side by side.
        wait([client.submit(_warm, warm, data_ref, workers=[w], allow_other_workers=False, pure=False,
                            key=f"{key_prefix}-warm-{i}") for i, w in enumerate(_one_worker_per_host(client))])
    futures = {client.submit(_run_trial, train_fn, trial, data_ref, pure=False, key=f"{key_prefix}-{trial.id}"):
               trial for trial in todo}
    try:
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # noqa: BLE001 -- KilledWorker after repeated worker deaths, lost data ...
                yield _failed(futures[future], exc)
            future.release()
    finally:
        client.cancel(list(futures))


def run_trials(trials: Iterable[Trial], train_fn: Callable[[dict[str, Any], int, Any], Mapping[str, Any]], *,
               data: Any = None, client: Any = None, results: str | os.PathLike | None = None,
               resume: bool = False, warm: Callable[[Any], Any] | None = None, progress: bool = True,
               callback: Callable[[dict[str, Any]], Any] | None = None, tag: Any = None,
               desc: str = "trials") -> list[dict[str, Any]]:
    """Run ``train_fn(trial.params, trial.seed, data)`` for every trial, on ``client``'s cluster or in this process.

    Parameters
    ----------
    trials : iterable of Trial
        Distinct ids.
    train_fn : callable
        ``train_fn(params, seed, data) -> dict``, picklable (a module-level function, or a closure cloudpickle can
        ship). It must depend on its arguments only: then a trial gives the same numbers on any worker as here.
        The dict must be JSON-serialisable when ``results`` is given (NumPy scalars and arrays are converted).
    data : object, optional
        Passed to every call. On a cluster it is scattered once to every worker and each task refers to it by key.
    client : distributed.Client or None
        None runs the trials one after another in this process.
    results : path, optional
        JSON-lines file: one record per finished trial, appended (and fsynced) as it arrives.
    resume : bool
        With ``results``: keep the trials already in the file and run only the missing ones. Without it an existing,
        non-empty file is an error (never overwritten).
    warm : callable, optional
        ``warm(data)``, run on one worker of every machine before the trials (compiles the kernels once per
        machine). Ignored in process.
    progress : bool
        A tqdm progress bar on stderr when it is a terminal (and tqdm is installed).
    callback : callable, optional
        Called with each new record after it is written.
    tag : object, optional
        Anything else that defines the trials' results (epochs, data set ...): part of the search id that guards
        ``resume`` against a file of another search.

    Returns
    -------
    list of dict
        One record per trial, sorted by id (from the file for resumed trials): ``trial``, ``seed``, ``params``,
        ``status`` (``'ok'`` or ``'failed'``), ``result`` or ``error`` (+ ``traceback``), ``worker``, ``seconds``.

    Notes
    -----
    A worker that dies mid-trial (killed, out of memory) loses its task; Dask's scheduler runs it again on another
    worker, up to its ``distributed.scheduler.allowed-failures`` (3); after that the trial is recorded as failed
    with ``KilledWorker``. A trial that raises is recorded as failed at once (Dask does not retry errors). Records
    are written by this process as futures complete, so each trial appears once.
    """
    trials = list(trials)
    ids = [t.id for t in trials]
    if len(set(ids)) != len(ids):
        raise ValueError("run_trials: trial ids must be distinct")
    if resume and results is None:
        raise ValueError("run_trials: resume=True needs a results file")
    search_id = _search_id(train_fn, tag)
    out = _ResultsFile(results, search_id, resume) if results is not None else None
    records: dict[int, dict[str, Any]] = {}
    try:
        by_id = {t.id: t for t in trials}
        if out is not None:
            records = {i: r for i, r in out.done.items() if i in by_id}
            for i, r in records.items():
                _check_record(r, by_id[i], out.path)
        todo = [t for t in trials if t.id not in records]
        with _progress(len(todo), progress, desc) as bar:
            failed = 0
            for record in _execute(client, todo, train_fn, data, warm, f"fastnn-{search_id}"):
                records[record["trial"]] = record
                if out is not None:
                    out.append(record)
                failed += record["status"] != "ok"
                if bar is not None:
                    bar.set_postfix_str(f"failed {failed}", refresh=False)
                    bar.update(1)
                if callback is not None:
                    callback(record)
    finally:
        if out is not None:
            out.close()
    return [records[i] for i in sorted(records)]


def search(space: Mapping[str, Distribution], train_fn: Callable[[dict[str, Any], int, Any], Mapping[str, Any]],
           n_trials: int, *, seed: int = 0, client: Any = None, **options: Any) -> list[dict[str, Any]]:
    """Random search: :func:`make_trials` ``(space, n_trials, seed)`` run by :func:`run_trials`.

    ``options`` are those of :func:`run_trials` (``data``, ``results``, ``resume``, ``warm``, ``progress``,
    ``callback``, ``tag``). The space and seed are part of the search id that guards ``resume``.
    """
    trials = make_trials(space, n_trials, seed)
    tag = (sorted((k, repr(v)) for k, v in space.items()), seed, options.pop("tag", None))
    return run_trials(trials, train_fn, client=client, tag=tag, desc="search", **options)


def best(records: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], float], n: int) -> list[dict[str, Any]]:
    """The ``n`` successful records with the largest finite ``key(record)``, best first."""
    ok = [r for r in records if r.get("status") == "ok" and math.isfinite(key(r))]
    return sorted(ok, key=key, reverse=True)[:n]
