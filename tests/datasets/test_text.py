"""load_tinyshakespeare and load_ptb: local reading, DLFS-2's ids, and the download path over 127.0.0.1."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest

from fastnn.datasets import (
    PTB_FILES,
    TINYSHAKESPEARE_FILES,
    DownloadError,
    MissingDependencyError,
    load_ptb,
    load_tinyshakespeare,
)
from tests.datasets.conftest import SHARED_TINYSHAKESPEARE

CORPUS = SHARED_TINYSHAKESPEARE / "input.txt"


def _listing(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.fixture
def shakespeare():
    if not CORPUS.is_file():
        pytest.skip(f"Tiny Shakespeare not found at {CORPUS} (shared data of this workplace)")
    return CORPUS.read_text(encoding="utf-8")


def test_tinyshakespeare_real_corpus(shakespeare):
    corpus, char_to_id, id_to_char = load_tinyshakespeare(data_dir=SHARED_TINYSHAKESPEARE, download=False)
    assert corpus.shape == (1115394,) and corpus.dtype == np.int64
    assert len(char_to_id) == 65 and list(char_to_id) == sorted(char_to_id)
    assert id_to_char == {i: c for c, i in char_to_id.items()}
    assert (id_to_char[0], id_to_char[1], char_to_id["A"], char_to_id["a"]) == ("\n", " ", 13, 39)
    assert "".join(id_to_char[i] for i in corpus) == shakespeare
    train, c2, _ = load_tinyshakespeare("train", data_dir=SHARED_TINYSHAKESPEARE)
    valid, _, _ = load_tinyshakespeare("val", data_dir=SHARED_TINYSHAKESPEARE)  # DLFS-2's alias
    assert c2 == char_to_id  # one vocabulary for every split
    assert len(train) == 1003854 and len(valid) == 111540  # int(0.9 * 1115394) and the rest
    np.testing.assert_array_equal(np.concatenate([train, valid]), corpus)


def test_tinyshakespeare_non_ascii_file_by_hand(tmp_path):
    (tmp_path / "input.txt").write_text("é ab\né", encoding="utf-8")
    corpus, char_to_id, _ = load_tinyshakespeare(data_dir=tmp_path, download=False)
    assert char_to_id == {"\n": 0, " ": 1, "a": 2, "b": 3, "é": 4}
    assert corpus.tolist() == [4, 1, 2, 3, 0, 4] and corpus.dtype == np.int64


def test_tinyshakespeare_download_then_cache_without_network(tmp_path, serve, shakespeare, capsys):
    mirror = serve(SHARED_TINYSHAKESPEARE)
    data = tmp_path / "ts"
    corpus, _, id_to_char = load_tinyshakespeare(data_dir=data, urls=[mirror.url("ok")])
    assert _listing(data) == ["input.txt"]  # no temporary file left
    assert hashlib.md5((data / "input.txt").read_bytes()).hexdigest() == TINYSHAKESPEARE_FILES["input.txt"]
    assert "".join(id_to_char[i] for i in corpus[:14]) == "First Citizen:"
    assert mirror.counts == {"/ok/input.txt": 1}
    assert capsys.readouterr().err == ""  # progress=None and stderr is not a terminal: quiet
    again, _, _ = load_tinyshakespeare(data_dir=data, urls="http://127.0.0.1:9/nothing/")
    np.testing.assert_array_equal(again, corpus)
    assert mirror.total_requests == 1


@pytest.mark.parametrize("mode, reason", [
    ("corrupt", "MD5 mismatch: got "),
    ("halfway", "connection closed after 557697 of 1115394 bytes"),
    ("nolength", "MD5 mismatch: got "),
])
def test_tinyshakespeare_bad_download_leaves_nothing(tmp_path, serve, shakespeare, mode, reason):
    mirror = serve(SHARED_TINYSHAKESPEARE)
    data = tmp_path / "ts"
    with pytest.raises(DownloadError) as info:
        load_tinyshakespeare(data_dir=data, urls=[mirror.url(mode), "http://127.0.0.1:9/x"], progress=False)
    msg = str(info.value)
    assert msg.startswith("load_tinyshakespeare: could not download input.txt (MD5 6fb458f1232090904fb40fe944165e91)")
    assert f"{mirror.url(mode)}input.txt: {reason}" in msg
    assert "http://127.0.0.1:9/x/input.txt: cannot connect" in msg
    assert f"put it in {data}" in msg and "FASTNN_TINYSHAKESPEARE_URLS" in msg
    assert _listing(data) == []
    assert mirror.counts == {f"/{mode}/input.txt": 1}


def test_tinyshakespeare_mirrors_from_environment(tmp_path, serve, shakespeare, monkeypatch):
    mirror = serve(SHARED_TINYSHAKESPEARE)
    monkeypatch.setenv("FASTNN_TINYSHAKESPEARE_URLS", f"{mirror.url('halfway')}, {mirror.url('ok')}")
    corpus, _, _ = load_tinyshakespeare("valid", progress=False)  # default folder: $FASTNN_DATA/tinyshakespeare
    assert corpus.shape == (111540,)
    assert mirror.counts == {"/halfway/input.txt": 1, "/ok/input.txt": 1}
    assert (tmp_path / "fastnn_data_env" / "tinyshakespeare" / "input.txt").is_file()


def test_reading_present_files_needs_no_pooch(tmp_path, monkeypatch, shakespeare):
    monkeypatch.setitem(sys.modules, "pooch", None)  # import pooch now raises ImportError
    corpus, _, _ = load_tinyshakespeare(data_dir=SHARED_TINYSHAKESPEARE)
    assert corpus.size == 1115394
    with pytest.raises(MissingDependencyError, match=r"load_tinyshakespeare \(downloading input.txt\) needs pooch.*"
                                                     r'pip install "fastnn\[data\]"'):
        load_tinyshakespeare(data_dir=tmp_path / "empty", urls="http://127.0.0.1:9/x")
    assert _listing(tmp_path / "empty") == []


# PTB: small files in the PTB format (each line starts and ends with a space), one line ending without one and one
# ending with "\r\n", to pin DLFS-2's tokenisation: newline -> "<eos>", whitespace split, text-mode newlines.
PTB_TEXT = {
    "ptb.train.txt": " the cat sat \n on the mat\n the <unk> N cat \r\n",
    "ptb.valid.txt": " the N \n mat<eos> sat \n",
    "ptb.test.txt": " cat \n dog \n",
}
# What DLFS-2's dataset/ptb.py load_data returns for these files (run on them once, and worked out by hand):
# ids in order of first appearance in the training file; "mat<eos>" is one word (no space before the newline).
PTB_VOCAB = ["the", "cat", "sat", "<eos>", "on", "mat<eos>", "<unk>", "N"]
PTB_IDS = {"train": [0, 1, 2, 3, 4, 0, 5, 0, 6, 7, 1, 3], "valid": [0, 7, 3, 5, 2, 3]}


@pytest.fixture
def ptb_dir(tmp_path):
    folder = tmp_path / "ptb_src"
    folder.mkdir()
    for name, text in PTB_TEXT.items():
        (folder / name).write_bytes(text.encode())
    return folder


@pytest.mark.parametrize("split", ["train", "valid", "val"])
def test_ptb_ids_are_dlfs2s(ptb_dir, split):
    corpus, word_to_id, id_to_word = load_ptb(split, data_dir=ptb_dir, download=False)
    assert list(word_to_id) == PTB_VOCAB and list(word_to_id.values()) == list(range(8))
    assert id_to_word == dict(enumerate(PTB_VOCAB))
    assert corpus.tolist() == PTB_IDS["valid" if split == "val" else split]
    assert corpus.dtype == np.array([1]).dtype  # np.array of Python ints, as DLFS-2


def test_ptb_unknown_word(ptb_dir):
    with pytest.raises(ValueError, match=r"load_ptb: every word of .*ptb.test.txt must be in the vocabulary of "
                                         r".*ptb.train.txt, got 'dog'"):
        load_ptb("test", data_dir=ptb_dir)


def test_ptb_download_path(tmp_path, serve, ptb_dir, monkeypatch):
    for name in PTB_FILES:  # the synthetic files stand for the real ones: their MD5s replace the published ones
        monkeypatch.setitem(PTB_FILES, name, hashlib.md5((ptb_dir / name).read_bytes()).hexdigest())
    mirror = serve(ptb_dir)
    data = tmp_path / "ptb"
    corpus, _, _ = load_ptb("valid", data_dir=data, urls=[mirror.url("corrupt"), mirror.url("ok")], progress=False)
    assert corpus.tolist() == PTB_IDS["valid"]
    assert _listing(data) == ["ptb.train.txt", "ptb.valid.txt"]  # the test file was not needed
    assert mirror.counts == {f"/{m}/ptb.{s}.txt": 1 for m in ("corrupt", "ok") for s in ("train", "valid")}
    load_ptb("train", data_dir=data, urls="http://127.0.0.1:9/x")
    assert mirror.total_requests == 4
    with pytest.raises(FileNotFoundError, match=r"load_ptb: ptb.test.txt must be in .* when download=False"):
        load_ptb("test", data_dir=data, download=False)


@pytest.mark.parametrize("loader, kwargs, exc, fragment", [
    (load_ptb, {"split": "dev"}, ValueError, "load_ptb: split must be one of 'train', 'valid', 'test', got 'dev'"),
    (load_ptb, {"split": 1}, TypeError, "load_ptb: split must be one of 'train', 'valid', 'test', got int 1"),
    (load_ptb, {"download": "no"}, TypeError, "load_ptb: download must be True or False"),
    (load_tinyshakespeare, {"split": "test"}, ValueError, "load_tinyshakespeare: split must be one of 'train', "
                                                          "'valid', 'all', got 'test'"),
    (load_tinyshakespeare, {"data_dir": 3}, TypeError, "load_tinyshakespeare: data_dir must be a str or os.PathLike"),
    (load_tinyshakespeare, {"urls": 5}, TypeError, "load_tinyshakespeare: urls must be a str or a sequence of str"),
    (load_tinyshakespeare, {"progress": 1}, TypeError, "load_tinyshakespeare: progress must be True or False"),
])
def test_bad_arguments(tmp_path, loader, kwargs, exc, fragment):
    kwargs.setdefault("data_dir", tmp_path / "d")
    with pytest.raises(exc) as info:
        loader(**kwargs)
    assert fragment in str(info.value)
    assert not (tmp_path / "d").exists()


def test_empty_file_says_to_delete_it(tmp_path):
    (tmp_path / "input.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"load_tinyshakespeare: .*input.txt must hold the corpus, got an empty "
                                         r"file; delete it"):
        load_tinyshakespeare(data_dir=tmp_path)


def test_download_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    pytest.importorskip("tqdm")
    from fastnn.datasets import _fetch

    assert _fetch._progress_bar(None, "input.txt") is False  # stderr captured: not a terminal
    assert _fetch._progress_bar(False, "input.txt") is False
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = _fetch._progress_bar(None, "input.txt")
    assert bar  # true even before pooch sets a total (a bare tqdm bar without one is not)
    bar.total = 0  # no Content-Length: an open-ended counter
    bar.update(100)
    bar.reset()
    bar.close()
    assert "input.txt" in capsys.readouterr().err
