"""fastnn.datasets.load_mnist against the real MNIST files, served by a local HTTP server the tests start."""

from __future__ import annotations

import gzip
import hashlib
import pickle

import numpy as np
import pytest

from fastnn.datasets import MNIST_FILES, DownloadError, default_data_dir, download_mnist, load_mnist, read_idx
from fastnn.datasets import _fetch as fetch_module
from tests.conftest import SHARED_MNIST
from tests.datasets.conftest import TEST_FILES, need_shared_mnist
from tests.datasets.test_idx import idx_bytes

IMAGES, LABELS = TEST_FILES


@pytest.fixture
def shared_test():
    need_shared_mnist(*TEST_FILES)
    return read_idx(SHARED_MNIST / IMAGES), read_idx(SHARED_MNIST / LABELS)


def _listing(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_download_success_then_cache_without_network(tmp_path, mirror, shared_test):
    data = tmp_path / "mnist"
    (x, t), = load_mnist(data_dir=data, urls=[mirror.url("ok")], subsets=("test",), progress=False)
    images, labels = shared_test
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert t.shape == (10000,) and t.dtype == np.uint8
    np.testing.assert_array_equal(x, images.reshape(10000, 784).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(t, labels)
    assert t[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first test labels
    assert _listing(data) == sorted(TEST_FILES)  # nothing else (no temporary files)
    for name in TEST_FILES:
        md5 = dict(MNIST_FILES.values())[name]
        assert hashlib.md5((data / name).read_bytes()).hexdigest() == md5
    assert mirror.counts == {f"/ok/{IMAGES}": 1, f"/ok/{LABELS}": 1}

    # Second call: served from data_dir, no request at all -- even with an unreachable mirror list.
    (x2, t2), = load_mnist(data_dir=data, urls="http://127.0.0.1:9/nothing/", subsets=("test",))
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(t2, t)
    assert mirror.total_requests == 2


@pytest.mark.parametrize("mode, reason", [
    ("corrupt", "MD5 mismatch: got "),
    ("halfway", "connection closed after 824438 "),  # of 1648877 bytes
    ("nolength", "MD5 mismatch: got "),
])
def test_bad_download_leaves_nothing_and_names_file_urls_and_remedy(tmp_path, mirror, mode, reason):
    need_shared_mnist(*TEST_FILES)
    data = tmp_path / "mnist"
    url = mirror.url(mode)
    with pytest.raises(DownloadError) as info:
        load_mnist(data_dir=data, urls=[url], subsets=("test",), progress=False)
    msg = str(info.value)
    assert msg.startswith(f"load_mnist: could not download {IMAGES} (MD5 9fb629c4189551a2d022fa330f9573f3); tried:")
    assert f"{url}{IMAGES}: {reason}" in msg
    assert f"put it in {data}" in msg
    assert "FASTNN_MNIST_URLS" in msg
    assert isinstance(info.value, OSError)
    assert _listing(data) == []  # no partial or unverified file that could look valid
    assert mirror.counts == {f"/{mode}/{IMAGES}": 1}


def test_http_404_for_every_mirror(tmp_path, mirror):
    need_shared_mnist(*TEST_FILES)
    # The shared folder has no train-images file, so every mirror answers 404 for it.
    data = tmp_path / "mnist"
    urls = [mirror.url("ok"), mirror.url("halfway")]
    with pytest.raises(DownloadError) as info:
        load_mnist(data_dir=data, urls=urls, subsets=("train",), progress=False)
    msg = str(info.value)
    assert "could not download train-images-idx3-ubyte.gz (MD5 f68b3c2dcbeaaa9fbdd348bbdeb94873)" in msg
    assert f"{urls[0]}train-images-idx3-ubyte.gz: HTTP 404 Not Found" in msg
    assert f"{urls[1]}train-images-idx3-ubyte.gz: HTTP 404" in msg
    assert _listing(data) == []


def test_unreachable_mirror(tmp_path):
    with pytest.raises(DownloadError, match=r"http://127.0.0.1:9/x/t10k-images-idx3-ubyte.gz: cannot connect"):
        load_mnist(data_dir=tmp_path, urls="http://127.0.0.1:9/x", subsets=("test",), progress=False)
    assert _listing(tmp_path) == []


def test_falls_back_to_the_next_mirror(tmp_path, mirror, shared_test):
    data = tmp_path / "mnist"
    urls = [mirror.url("halfway"), mirror.url("corrupt"), mirror.url("ok")]
    paths = download_mnist(data, subsets=("test",), urls=urls, progress=False)
    assert paths == {"test_img": data / IMAGES, "test_label": data / LABELS}
    assert _listing(data) == sorted(TEST_FILES)
    assert mirror.counts[f"/ok/{IMAGES}"] == 1 and mirror.counts[f"/halfway/{IMAGES}"] == 1
    assert mirror.total_requests == 6
    np.testing.assert_array_equal(read_idx(paths["test_label"]), shared_test[1])


def test_mirror_list_from_environment(tmp_path, mirror, monkeypatch, shared_test):
    monkeypatch.setenv("FASTNN_MNIST_URLS", f" {mirror.url('corrupt')} ,{mirror.url('ok').rstrip('/')}")
    (x, t), = load_mnist(data_dir=tmp_path, subsets=("test",), normalize=False, progress=False)
    assert x.dtype == np.uint8
    np.testing.assert_array_equal(x.reshape(-1, 28, 28), shared_test[0])
    assert mirror.counts[f"/corrupt/{LABELS}"] == 1 and mirror.counts[f"/ok/{LABELS}"] == 1


def test_default_data_dir_from_environment_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d" / "mnist"
    monkeypatch.delenv("FASTNN_DATA")
    monkeypatch.setattr(fetch_module.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir() == tmp_path / "xdg" / "fastnn" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_data_dir() == tmp_path / "home" / ".cache" / "fastnn" / "mnist"


def test_default_data_dir_is_used(tmp_path, monkeypatch, mirror, shared_test):
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "root"))
    load_mnist(urls=mirror.url("ok"), subsets=("test",), progress=False)
    assert _listing(tmp_path / "root" / "mnist") == sorted(TEST_FILES)


def test_interrupted_download_leaves_nothing(tmp_path, mirror, monkeypatch):
    need_shared_mnist(*TEST_FILES)

    class InterruptingBar:
        def update(self, n):
            raise KeyboardInterrupt

        def close(self):
            pass

    monkeypatch.setattr(fetch_module, "_progress_bar", lambda *a: InterruptingBar())
    with pytest.raises(KeyboardInterrupt):
        load_mnist(data_dir=tmp_path / "m", urls=mirror.url("ok"), subsets=("test",))
    assert _listing(tmp_path / "m") == []


def test_progress_bar_runs(tmp_path, mirror, capsys):
    need_shared_mnist(*TEST_FILES)
    pytest.importorskip("tqdm")
    load_mnist(data_dir=tmp_path, urls=mirror.url("ok"), subsets=("test",), progress=True)
    err = capsys.readouterr().err
    assert IMAGES in err and LABELS in err


def test_missing_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"load_mnist: train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                                                r"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz must be in "
                                                r".* when download=False"):
        load_mnist(data_dir=tmp_path, download=False)


def test_shapes_and_dtypes_of_every_option(tmp_path, shared_test):
    images, labels = shared_test
    kw = {"data_dir": SHARED_MNIST, "download": False, "subsets": ("test",)}
    (x, t), = load_mnist(normalize=False, flatten=False, one_hot_label=True, **kw)
    assert x.shape == (10000, 1, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(x[:, 0], images)
    # the book's _change_one_hot_label: np.zeros((N, 10)) (float64) with a 1 at each label
    book_one_hot = np.zeros((labels.size, 10))
    book_one_hot[np.arange(labels.size), labels] = 1
    assert t.shape == (10000, 10) and t.dtype == np.float64
    np.testing.assert_array_equal(t, book_one_hot)
    (x, t), = load_mnist(normalize=True, flatten=False, **kw)
    assert x.dtype == np.float32 and x.shape == (10000, 1, 28, 28)
    assert x.min() == 0.0 and x.max() == 1.0
    assert t.dtype == np.uint8 and t.shape == (10000,)
    (x, t), = load_mnist(normalize=False, **kw)
    assert x.dtype == np.uint8 and x.shape == (10000, 784) and t.dtype == np.uint8


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("one_hot_label", [True, False])
def test_returns_the_books_dtypes_and_values(tmp_path, normalize, flatten, one_hot_label):
    """Synthetic IDX files (no shared data needed), every option against the book's load_mnist rules: images
    uint8, or float32 divided by 255.0 with normalize; labels uint8, or float64 one-hot rows (its
    _change_one_hot_label fills np.zeros((N, 10))); flatten=False reshapes to (N, 1, 28, 28)."""
    rng = np.random.default_rng(8)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = np.array([3, 0, 9, 9, 1, 5, 2], np.uint8)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    (x, t), = load_mnist(normalize, flatten, one_hot_label, data_dir=tmp_path, download=False, subsets=("test",))
    want_x = images.reshape(7, 784)
    if normalize:
        want_x = want_x.astype(np.float32)
        want_x /= 255.0  # the book's in-place division (float32 stays float32)
    if not flatten:
        want_x = want_x.reshape(-1, 1, 28, 28)
    want_t = labels
    if one_hot_label:
        want_t = np.zeros((labels.size, 10))
        for row, label in zip(want_t, labels, strict=True):
            row[label] = 1
    assert (x.dtype, x.shape, t.dtype, t.shape) == (want_x.dtype, want_x.shape, want_t.dtype, want_t.shape)
    assert x.dtype == (np.float32 if normalize else np.uint8)
    assert t.dtype == (np.float64 if one_hot_label else np.uint8)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(t, want_t)


def test_uncompressed_files_put_by_hand(tmp_path, shared_test):
    for name in TEST_FILES:
        (tmp_path / name.removesuffix(".gz")).write_bytes(gzip.decompress((SHARED_MNIST / name).read_bytes()))
    (x, t), = load_mnist(data_dir=tmp_path, download=False, subsets=("test",), normalize=False)
    np.testing.assert_array_equal(x.reshape(-1, 28, 28), shared_test[0])
    np.testing.assert_array_equal(t, shared_test[1])


def test_corrupt_cached_file_says_to_delete_it(tmp_path, shared_test):
    data = (SHARED_MNIST / IMAGES).read_bytes()
    (tmp_path / IMAGES).write_bytes(data[: len(data) - 1000])
    (tmp_path / LABELS).write_bytes((SHARED_MNIST / LABELS).read_bytes())
    with pytest.raises(ValueError, match=r"load_mnist: .*t10k-images-idx3-ubyte.gz must be a complete gzip file.*"
                                         r"delete it"):
        load_mnist(data_dir=tmp_path, download=False, subsets=("test",))


def test_images_and_labels_must_match(tmp_path):
    need_shared_mnist(*TEST_FILES, "train-labels-idx1-ubyte.gz")
    # Test images with the 60,000 training labels: the counts disagree.
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes((SHARED_MNIST / IMAGES).read_bytes())
    (tmp_path / LABELS).write_bytes((SHARED_MNIST / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(ValueError, match=r"must hold one label per image of .* \(10000\), got 60000 labels"):
        load_mnist(data_dir=tmp_path, download=False, subsets=("test",))


def test_train_labels_file_is_real(shared_test):
    need_shared_mnist("train-labels-idx1-ubyte.gz")
    t = read_idx(SHARED_MNIST / "train-labels-idx1-ubyte.gz")
    assert t.shape == (60000,) and t.dtype == np.uint8
    assert np.bincount(t, minlength=10).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_book_pickle_needs_allow_pickle(tmp_path, shared_test):
    images, labels = shared_test
    book = {"train_img": images[:100].reshape(100, 784), "train_label": labels[:100],
            "test_img": images[100:150].reshape(50, 784), "test_label": labels[100:150]}
    pkl = tmp_path / "mnist.pkl"
    pkl.write_bytes(pickle.dumps(book, -1))
    with pytest.raises(ValueError, match=r"load_mnist: allow_pickle must be True to read .*mnist.pkl .*got False"):
        load_mnist(pkl_file=pkl)
    (xtr, ttr), (xte, tte) = load_mnist(pkl_file=pkl, allow_pickle=True, flatten=False)
    assert xtr.shape == (100, 1, 28, 28) and xtr.dtype == np.float32
    np.testing.assert_array_equal(xte[:, 0], images[100:150].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(tte, labels[100:150])
    assert ttr.dtype == np.uint8
    pkl.write_bytes(pickle.dumps({"test_img": 1}, -1))
    with pytest.raises(ValueError, match="must hold the keys train_img and train_label"):
        load_mnist(pkl_file=pkl, allow_pickle=True)


@pytest.mark.parametrize("kwargs, exc, fragment", [
    ({"normalize": 1}, TypeError, "load_mnist: normalize must be True or False, got int 1"),
    ({"one_hot_label": "yes"}, TypeError, "load_mnist: one_hot_label must be True or False"),
    ({"subsets": "test"}, TypeError, "load_mnist: subsets must be a tuple of 'train' and/or 'test'"),
    ({"subsets": ("test", "test")}, ValueError, "subsets must be a non-empty tuple of distinct"),
    ({"subsets": ("valid",)}, ValueError, "subsets must be a non-empty tuple of distinct"),
    ({"subsets": ()}, ValueError, "subsets must be a non-empty tuple of distinct"),
    ({"data_dir": 3}, TypeError, "load_mnist: data_dir must be a str or os.PathLike, got int"),
    ({"urls": 5}, TypeError, "load_mnist: urls must be a str or a sequence of str, got int"),
    ({"urls": " , "}, ValueError, "load_mnist: urls must name at least one base URL"),
    ({"progress": "auto"}, TypeError, "load_mnist: progress must be True or False"),
])
def test_bad_arguments(tmp_path, kwargs, exc, fragment):
    kwargs.setdefault("data_dir", tmp_path / "m")
    with pytest.raises(exc) as info:
        load_mnist(**kwargs)
    assert fragment in str(info.value)
    assert not (tmp_path / "m").exists()



def test_read_only_data_dir_is_reported_once(tmp_path, mirror, monkeypatch):
    # Tests may run as root, who can write into a chmod 555 folder: simulate the refusal instead.
    data = tmp_path / "ro"
    data.mkdir()
    real_access = fetch_module.os.access
    monkeypatch.setattr(fetch_module.os, "access", lambda p, mode: False if p == data else real_access(p, mode))
    with pytest.raises(PermissionError, match=r"load_mnist: .*ro must be writable to download "
                                              r"t10k-images-idx3-ubyte.gz"):
        load_mnist(data_dir=data, urls=mirror.url("ok"), subsets=("test",), progress=False)
    assert mirror.total_requests == 0
    assert _listing(data) == []
