"""fastnn.distributed on a LocalCluster of 2 worker processes on 127.0.0.1: searches give the in-process numbers,
survive a killed worker, resume, record failures; predict over dask arrays; threads and the Numba cache on workers.

Every cluster call is bounded by a timeout. Skipped when the ``distributed`` extra is not installed.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import signal
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="the distributed extra (dask, distributed) is not installed")
da = pytest.importorskip("dask.array", reason="the distributed extra (dask[array]) is not installed")
pytest.importorskip("sklearn", reason="scikit-learn (examples extra) not installed: digits unavailable")

import fastnn  # noqa: E402
from fastnn.distributed import (  # noqa: E402
    LogUniform,
    connect,
    hyperparam,
    local_cluster,
    make_trials,
    predict,
    read_results,
    run_trials,
    search,
)

TIMEOUT = 60  # seconds any one cluster operation may take before the test fails
SPACE = hyperparam.SPACE
TRAIN = functools.partial(hyperparam.train, epochs=2)


@pytest.fixture(scope="module")
def data():
    from fastnn.cli import _data

    (x, t), _ = _data.load("digits", flatten=True, dtype=np.dtype("float32"))
    return hyperparam.split(x, t)


@pytest.fixture(scope="module")
def client():
    with connect(n_workers=2, threads=1, timeout=TIMEOUT) as c:
        c.wait_for_workers(2, timeout=TIMEOUT)
        yield c


@pytest.fixture(scope="module")
def reference(data):
    """The 8 trials of the small search run in this process, on one thread."""
    import numba

    fastnn.set_num_threads(1)
    try:
        return {r["trial"]: r for r in search(SPACE, TRAIN, 8, seed=3, data=data, progress=False)}
    finally:
        fastnn.set_num_threads(numba.config.NUMBA_NUM_THREADS)


def same_numbers(records, reference):
    """Every record is ok and equal, bit for bit, to the in-process record of its trial."""
    assert sorted(r["trial"] for r in records) == sorted(reference)
    for r in records:
        ref = reference[r["trial"]]
        assert r["status"] == "ok", r.get("error")
        assert (r["seed"], r["params"]) == (ref["seed"], ref["params"])
        assert r["result"] == ref["result"]  # floats compared exactly: same kernels, same order


def slow_train(params, seed, data):
    """A trial long enough that a worker can be killed in the middle of one."""
    time.sleep(0.4)
    return TRAIN(params, seed, data)


def train_or_fail(params, seed, data):
    if params["lr"] > 1e-3:
        raise FloatingPointError(f"diverged at lr {params['lr']:.3g}")
    return TRAIN(params, seed, data)


def test_trials_are_deterministic_and_prefix_stable():
    a, b = make_trials(SPACE, 5, seed=3), make_trials(SPACE, 9, seed=3)
    assert a == b[:5]
    assert len({t.seed for t in b}) == 9
    assert all(1e-6 <= t.params["lr"] <= 1e-2 and 1e-8 <= t.params["weight_decay"] <= 1e-4 for t in b)
    assert list(b[0].params) == ["weight_decay", "lr"]  # the book's order of draws
    assert make_trials(SPACE, 5, seed=4)[0].params != a[0].params
    with pytest.raises(TypeError, match=r"space\['lr'\] must have sample"):
        make_trials({"lr": 0.1}, 1)


def test_workers_environment(client):
    def probe():
        import multiprocessing

        import numba

        import fastnn as f

        f.kernels.relu_forward(np.ones((4, 4), np.float32))
        return (numba.config.NUMBA_NUM_THREADS, f.get_num_threads(), os.environ.get("OMP_NUM_THREADS"),
                multiprocessing.parent_process() is not None)

    info = client.run(probe)
    assert len(info) == 2 and all(addr.startswith("tcp://127.0.0.1:") for addr in info)
    assert set(info.values()) == {(1, 1, "1", True)}
    assert distributed.get_worker is not None
    import dask

    assert dask.config.get("distributed.worker.multiprocessing-method") == "spawn"


def test_search_on_cluster_equals_in_process(client, data, reference, tmp_path):
    path = tmp_path / "r.jsonl"
    records = search(SPACE, TRAIN, 8, seed=3, data=data, client=client, results=path, progress=False,
                     warm=hyperparam.warm)
    same_numbers(records, reference)
    assert {r["worker"] for r in records} <= set(client.scheduler_info()["workers"])
    lines = read_results(path)
    assert sorted(r["trial"] for r in lines) == list(range(8))
    assert [r["result"] for r in sorted(lines, key=lambda r: r["trial"])] == [r["result"] for r in records]


def test_killed_worker_trial_runs_elsewhere_once(client, data, reference, tmp_path):
    pids = client.run(os.getpid)
    killed = []

    def kill_a_busy_worker(record):
        if killed:
            return
        busy = [w for w, keys in client.processing().items() if keys]
        os.kill(pids[busy[0]], signal.SIGKILL)
        killed.append(busy[0])

    path = tmp_path / "r.jsonl"
    records = search(SPACE, slow_train, 8, seed=3, data=data, client=client, results=path, progress=False,
                     callback=kill_a_busy_worker)
    assert killed
    trials = [r["trial"] for r in read_results(path)]
    assert sorted(trials) == list(range(8))  # every trial exactly once in the file
    same_numbers(records, reference)
    client.wait_for_workers(2, timeout=TIMEOUT)  # the nanny restarted the killed worker


def test_interrupted_search_resumes_missing_trials_only(client, data, reference, tmp_path):
    path = tmp_path / "r.jsonl"

    def interrupt(record, seen=[]):  # noqa: B006 -- counts across calls
        seen.append(record["trial"])
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        search(SPACE, TRAIN, 8, seed=3, data=data, client=client, results=path, progress=False, callback=interrupt)
    first = [r["trial"] for r in read_results(path)]
    assert len(first) == 3
    with open(path, "a") as f:
        f.write('{"search": "cut short by a ki')  # killed while writing a line: ignored, then replaced
    with pytest.raises(FileExistsError):
        search(SPACE, TRAIN, 8, seed=3, data=data, client=client, results=path, progress=False)
    ran = []
    records = search(SPACE, TRAIN, 8, seed=3, data=data, client=client, results=path, progress=False,
                     resume=True, callback=lambda r: ran.append(r["trial"]))
    assert sorted(ran) == sorted(set(range(8)) - set(first))
    assert sorted(r["trial"] for r in read_results(path)) == list(range(8))
    same_numbers(records, reference)
    with pytest.raises(ValueError, match="another search"):  # other seed, same file
        search(SPACE, TRAIN, 8, seed=4, data=data, client=client, results=path, progress=False, resume=True)


def test_failing_trial_is_recorded_once_and_the_rest_finish(client, data, reference, tmp_path):
    path = tmp_path / "r.jsonl"
    records = search(SPACE, train_or_fail, 8, seed=3, data=data, client=client, results=path, progress=False)
    failing = {i for i, r in reference.items() if r["params"]["lr"] > 1e-3}
    assert failing and len(failing) < 8  # seed 3 draws both kinds
    assert {r["trial"] for r in records if r["status"] == "failed"} == failing
    for r in records:
        if r["trial"] in failing:
            assert r["error"].startswith("FloatingPointError: diverged at lr")
            assert "train_or_fail" in r["traceback"]
        else:
            assert r["result"] == reference[r["trial"]]["result"]
    assert sorted(json.loads(line)["trial"] for line in path.read_text().splitlines()) == list(range(8))


def test_predict_over_dask_array(client, data, single_thread):
    from fastnn.nets import MultiLayerNet

    x = np.concatenate([data[0], data[2]])
    net = MultiLayerNet(64, [100] * 6, 10, dtype=np.float32, seed=0)
    xd = da.from_array(x, chunks=(128, 32))  # split along features too: predict merges them
    out = predict(net, xd, client=client, batch_size=50)
    assert out.shape == (500, 10) and out.dtype == np.float32 and out.chunks[0] == (128, 128, 128, 116)
    graph = pickle.dumps(dict(out.__dask_graph__()))
    assert net.params["W2"].tobytes() not in graph  # the parameters travel once, by scatter, not in the tasks
    got = out.compute()
    # A row's output depends on the rows computed with it only through the GEMM's blocking (BLAS picks kernels by
    # the batch's size): equal to float32 rounding to one call on everything, and bit for bit to the same batches.
    np.testing.assert_allclose(got, net.predict(x), rtol=1e-5, atol=1e-5)
    batches = [x[i:min(i + 50, stop)] for start, stop in ((0, 128), (128, 256), (256, 384), (384, 500))
               for i in range(start, stop, 50)]
    np.testing.assert_array_equal(got, np.concatenate([net.predict(b) for b in batches]))
    with pytest.raises(TypeError, match="dask.array"):
        predict(net, x, client=client)


@pytest.mark.parametrize("layer", [None, "workqueue"])
def test_multithreaded_worker_runs_kernels_concurrently(layer, tmp_path):
    """Two Dask threads per worker, two Numba threads each, every kernel on its parallel twin."""
    env = {"FASTNN_PARALLEL_MIN_WORK": "0"}
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer

    def step(params, seed, data):
        from fastnn.nets import SimpleConvNet

        net = SimpleConvNet((1, 8, 8), {"filter_num": 4, "filter_size": 3, "pad": 0, "stride": 1}, 16, 10,
                            seed=seed)
        x = np.random.default_rng(seed).random((16, 1, 8, 8))
        g = net.gradient(x, np.arange(16) % 10)
        return {"layer": fastnn.threading_layer(), "sum": float(sum(v.sum() for v in g.values()))}

    with local_cluster(1, threads=2, threads_per_worker=2, env=env) as cluster, \
            distributed.Client(cluster, timeout=TIMEOUT) as c:
        trials = make_trials({"lr": LogUniform(-3, -1)}, 12)
        records = run_trials(trials, step, client=c, progress=False)
        threads = c.run(lambda: __import__("numba").config.NUMBA_NUM_THREADS)
    assert list(threads.values()) == [2]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert {r["result"]["layer"] for r in records} == {layer or "omp"}
    assert len({r["result"]["sum"] for r in records}) == 12  # 12 different nets really ran


def test_cold_cache_compiled_by_two_workers_at_once_stays_valid(data, tmp_path):
    """No warm-up, empty cache: both workers compile the same kernels at once; the cache they leave loads cleanly."""

    def misses():
        import sys

        from fastnn._jit import Kernel

        hyperparam.warm(data)
        kernels = [v for name, m in list(sys.modules.items()) if name.startswith("fastnn.kernels")
                   for v in vars(m).values() if isinstance(v, Kernel)]
        stats = [d.stats for k in kernels for d in (k.serial, k.parallel)]
        return sum(sum(s.cache_misses.values()) for s in stats), sum(sum(s.cache_hits.values()) for s in stats)

    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    with local_cluster(2, env=env) as cluster, distributed.Client(cluster, timeout=TIMEOUT) as c:
        c.wait_for_workers(2, timeout=TIMEOUT)
        records = run_trials(make_trials(SPACE, 2, seed=3), TRAIN, data=data, client=c, progress=False)
        assert all(r["status"] == "ok" for r in records)
        c.restart(timeout=TIMEOUT)
        after = c.run(misses)
    assert os.listdir(tmp_path / "cache")
    for miss, hit in after.values():
        assert miss == 0 and hit > 0


def test_run_experiment_on_cluster_equals_in_process(client, tmp_path, single_thread):
    from fastnn.distributed import run_experiment

    there = run_experiment("batchnorm", client, epochs=2, scales=2, no_plot=True, out=str(tmp_path))
    here = run_experiment("batchnorm", None, epochs=2, scales=2, no_plot=True, out=str(tmp_path))
    assert len(there["rows"]) == 2
    assert there["with_batchnorm"] == here["with_batchnorm"] and there["without"] == here["without"]
    with pytest.raises(TypeError, match="unknown option 'epoch'"):
        run_experiment("batchnorm", None, epoch=2)
