"""Deep Learning from Scratch 2's ch08 attention layers and AttentionSeq2seq by import swap: the layers against the
book's formulas, and a script in the style of ``ch08/train.py`` (the date-format task: AttentionSeq2seq, Adam,
Trainer with max_grad 5, eval_seq2seq on reversed questions) giving the book's numbers.

The pinned numbers were produced by the book's own code (``common/``, ``ch07/seq2seq.py``, ``ch08/`` of
oreilly-japan/deep-learning-from-scratch-2) on the same generated data and seeds; where that repository is at hand,
the test runs it again and compares directly.
"""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from fastnn import backend
from fastnn.compat.dlfs2.attention_layer import Attention, AttentionWeight, TimeAttention, WeightSum
from fastnn.compat.dlfs2.attention_seq2seq import AttentionSeq2seq
from fastnn.compat.dlfs2.optimizer import Adam
from fastnn.compat.dlfs2.trainer import Trainer
from fastnn.compat.dlfs2.util import eval_seq2seq

from .dlfs2_book import book  # noqa: F401 -- fixture

# ---------------------------------------------------------------------------------------------------------------
# The date-format data set (the book's dataset/date.txt is 50000 such lines; these are generated)

_FORMATS = ["%B %d, %Y", "%b %d, %Y", "%m/%d/%y", "%A, %B %d, %Y", "%d %b %Y"]


def date_lines(n: int = 1000) -> list[str]:
    """``n`` lines as date.txt's: a date in one of several human formats (mixed case), padded to 29 characters,
    then ``_YYYY-MM-DD``; ``np.random.RandomState``, whose streams NumPy keeps stable."""
    rs = np.random.RandomState(3)  # noqa: NPY002 -- a stable legacy stream
    start = datetime.date(1970, 1, 1).toordinal()
    lines = []
    for _ in range(n):
        day = datetime.date.fromordinal(start + int(rs.randint(0, 365 * 50)))
        text = day.strftime(_FORMATS[rs.randint(len(_FORMATS))]).replace(" 0", " ").lstrip("0")
        text = (text.upper(), text.lower(), text)[rs.randint(3)]
        lines.append(f"{text:<29}_{day.isoformat()}")
    return lines


def load_data(lines: list[str], seed: int = 1984):
    """dataset/sequence.py's ``load_data`` on these lines: question before the ``_``, answer from it, one id per
    character in order of first appearance (questions and answers interleaved), the rows shuffled by
    ``np.random.seed(seed); np.random.shuffle``, the last tenth held out; and ``get_vocab()``'s two dicts."""
    char_to_id: dict[str, int] = {}
    pairs = [(line[:line.find("_")], line[line.find("_"):]) for line in lines]
    for q, a in pairs:
        for ch in q + a:
            char_to_id.setdefault(ch, len(char_to_id))
    x = np.array([[char_to_id[c] for c in q] for q, _ in pairs], dtype=int)
    t = np.array([[char_to_id[c] for c in a] for _, a in pairs], dtype=int)
    indices = np.arange(len(x))
    np.random.seed(seed)  # noqa: NPY002 -- the book's shuffle
    np.random.shuffle(indices)  # noqa: NPY002
    x, t = x[indices], t[indices]
    split_at = len(x) - len(x) // 10
    return ((x[:split_at], t[:split_at]), (x[split_at:], t[split_at:])), (char_to_id,
                                                                          {i: c for c, i in char_to_id.items()})


def train_date(AttentionSeq2seq, Adam, Trainer, eval_seq2seq):  # noqa: N803 -- the script's imported names
    """ch08/train.py at a small size (hidden 32 instead of 256, 1000 lines, 3 epochs): the script's own steps,
    with the imported names as arguments."""
    ((x_train, t_train), (x_test, t_test)), (char_to_id, id_to_char) = load_data(date_lines())
    x_train, x_test = x_train[:, ::-1], x_test[:, ::-1]
    vocab_size, wordvec_size, hidden_size = len(char_to_id), 16, 32
    batch_size, max_epoch, max_grad = 50, 3, 5.0
    np.random.seed(0)  # noqa: NPY002 -- the book draws its weights and batches from the global generator
    model = AttentionSeq2seq(vocab_size, wordvec_size, hidden_size)
    trainer = Trainer(model, Adam())
    acc_list = []
    for _ in range(max_epoch):
        trainer.fit(x_train, t_train, max_epoch=1, batch_size=batch_size, max_grad=max_grad, eval_interval=6)
        correct_num = 0
        for i in range(len(x_test)):
            question, correct = x_test[[i]], t_test[[i]]
            correct_num += eval_seq2seq(model, question, correct, id_to_char, i < 2, is_reverse=True)
        acc_list.append(float(correct_num) / len(x_test))
    model.forward(x_test[:3], t_test[:3])  # as ch08/visualize_attention.py: the weights of the last pass
    weights = np.array(model.decoder.attention.attention_weights)
    return trainer.loss_list, acc_list, weights, model


#: The book's run (its own code) of :func:`train_date`: Trainer.loss_list (every 6 iterations of 18 per epoch),
#: the accuracy after each epoch (exact matches of the whole answer: none yet at this size), and the attention
#: weights of the last pass (decoder step 0, sample 0: the first six; the last step, sample 2: the last four).
BOOK_LOSS = [4.076833740234375, 4.063178548177084, 4.033923461914062, 3.9636015625, 3.9131951904296876,
             3.7673090006510415, 3.2333515625, 2.8805000813802075, 2.4182171223958333]
BOOK_ACC = [0.0, 0.0, 0.0]
BOOK_W_FIRST = [0.019582418724894524, 0.020378477871418, 0.021469932049512863, 0.02299344167113304,
                0.025022724643349648, 0.027505772188305855]
BOOK_W_LAST = [0.03642536699771881, 0.0365859791636467, 0.03648724779486656, 0.036541424691677094]
#: What eval_seq2seq printed for the first two questions after each epoch (the book's greedy guesses).
BOOK_GUESSES = ["0000000000", "0000000000", "0000000000", "0000000000", "00000-----", "00000-----"]


def _check_run(loss, acc, weights, model, rtol):
    np.testing.assert_allclose(loss, BOOK_LOSS, rtol=rtol)
    assert acc == BOOK_ACC
    assert weights.shape == (10, 3, 29) and weights.dtype == np.float32  # (decoder steps, N, encoder steps)
    np.testing.assert_allclose(weights.sum(axis=2), 1.0, rtol=1e-6)
    np.testing.assert_allclose(weights[0, 0, :6], BOOK_W_FIRST, rtol=rtol)
    np.testing.assert_allclose(weights[-1, 2, -4:], BOOK_W_LAST, rtol=rtol)
    assert loss[-1] < 0.6 * loss[0]  # it learned (log of 59 characters: 4.08)
    assert all(p.dtype == np.float32 for p in model.params)


def _guesses(out: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(("\x1b[91m", "\x1b[92m"))]


def test_train_date_gives_the_books_numbers(capsys):
    run = train_date(AttentionSeq2seq, Adam, Trainer, eval_seq2seq)
    # 54 Adam steps in float32 with other summation orders than NumPy's: measured 1.0e-7 relative at most
    _check_run(*run, rtol=2e-6)
    out = capsys.readouterr().out
    assert _guesses(out) == BOOK_GUESSES
    assert "Q 5 JAN 1990" in out and "T 1990-01-05" in out and "| epoch 3 |  iter 13 / 18 |" in out


def test_train_date_on_the_twins_matches():
    with backend.using("reference"):
        run = train_date(AttentionSeq2seq, Adam, Trainer, eval_seq2seq)
    _check_run(*run, rtol=2e-6)


def test_the_books_code_gives_the_pinned_numbers(book, capsys):  # noqa: F811
    """The pinned numbers are the book's: its own code, run here on the same script."""
    opt, tr, util = book("common.optimizer"), book("common.trainer"), book("common.util")
    loss, acc, weights, model = train_date(book("ch08.attention_seq2seq").AttentionSeq2seq, opt.Adam, tr.Trainer,
                                           util.eval_seq2seq)
    # not bit for bit even for the book's own code: its float32 products go through OpenBLAS, whose summation
    # order depends on its threads (seen: 7.6e-8 relative between two runs)
    np.testing.assert_allclose(loss, BOOK_LOSS, rtol=1e-6)
    assert acc == BOOK_ACC
    np.testing.assert_allclose(weights[0, 0, :6], BOOK_W_FIRST, rtol=1e-6)
    assert _guesses(capsys.readouterr().out) == BOOK_GUESSES


# ---------------------------------------------------------------------------------------------------------------
# The layers, against the book's formulas (NumPy, float64) and its own code


def _softmax(s):
    e = np.exp(s - s.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture
def states():
    rng = np.random.default_rng(5)
    N, T, S, H = 3, 7, 5, 6
    f = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    return {"hs": f(N, T, H), "h": f(N, H), "hs_dec": f(N, S, H), "a": _softmax(f(N, T)), "dc": f(N, H),
            "da": f(N, T), "dout": f(N, S, H)}


def test_layers_follow_the_books_formulas(states):
    hs, h, hs_dec, a = (states[k].astype(np.float64) for k in ("hs", "h", "hs_dec", "a"))
    dc, da, dout = (states[k].astype(np.float64) for k in ("dc", "da", "dout"))
    tol = {"rtol": 1e-5, "atol": 1e-6}
    # WeightSum: c = sum_t a_t hs_t
    ws = WeightSum()
    c = ws.forward(states["hs"], states["a"])
    assert c.dtype == np.float32
    np.testing.assert_allclose(c, np.einsum("nt,nth->nh", a, hs), **tol)
    dhs, da_ = ws.backward(states["dc"])
    np.testing.assert_allclose(dhs, a[:, :, None] * dc[:, None, :], **tol)
    np.testing.assert_allclose(da_, np.einsum("nth,nh->nt", hs, dc), **tol)
    # AttentionWeight: a = softmax(hs . h), the softmax backward
    aw = AttentionWeight()
    w = aw.forward(states["hs"], states["h"])
    w_ref = _softmax(np.einsum("nth,nh->nt", hs, h))
    np.testing.assert_allclose(w, w_ref, **tol)
    ds = w_ref * (da - (da * w_ref).sum(axis=1, keepdims=True))
    dhs, dh = aw.backward(states["da"])
    np.testing.assert_allclose(dhs, ds[:, :, None] * h[:, None, :], **tol)
    np.testing.assert_allclose(dh, np.einsum("nt,nth->nh", ds, hs), **tol)
    # Attention: the two chained, the two dhs added
    at = Attention()
    np.testing.assert_allclose(at.forward(states["hs"], states["h"]), np.einsum("nt,nth->nh", w_ref, hs), **tol)
    np.testing.assert_allclose(at.attention_weight, w_ref, **tol)
    dw = np.einsum("nth,nh->nt", hs, dc)
    ds = w_ref * (dw - (dw * w_ref).sum(axis=1, keepdims=True))
    dhs, dh = at.backward(states["dc"])
    np.testing.assert_allclose(dhs, w_ref[:, :, None] * dc[:, None, :] + ds[:, :, None] * h[:, None, :], **tol)
    np.testing.assert_allclose(dh, np.einsum("nt,nth->nh", ds, hs), **tol)
    # TimeAttention: every decoder step as Attention, the encoder's gradients summed over the steps
    ta = TimeAttention()
    out = ta.forward(states["hs"], states["hs_dec"])
    dhs_enc, dhs_dec = ta.backward(states["dout"])
    weights = ta.attention_weights
    assert len(weights) == 5 and weights[0].shape == (3, 7)
    dhs_sum = np.zeros_like(hs)
    for t in range(5):
        step = Attention()
        np.testing.assert_allclose(out[:, t], step.forward(states["hs"], states["hs_dec"][:, t]), **tol)
        np.testing.assert_allclose(weights[t], step.attention_weight, **tol)
        dhs_t, dh_t = step.backward(states["dout"][:, t])
        np.testing.assert_allclose(dhs_dec[:, t], dh_t, **tol)
        dhs_sum += dhs_t
    np.testing.assert_allclose(dhs_enc, dhs_sum, **tol)


def test_time_attention_matches_the_books_code(book, states):  # noqa: F811
    layers = book("ch08.attention_layer")
    for name, args, grad in (("WeightSum", ("hs", "a"), "dc"), ("AttentionWeight", ("hs", "h"), "da"),
                             ("Attention", ("hs", "h"), "dc"), ("TimeAttention", ("hs", "hs_dec"), "dout")):
        ours, theirs = globals()[name](), getattr(layers, name)()
        got, want = ours.forward(*(states[k] for k in args)), theirs.forward(*(states[k] for k in args))
        assert got.dtype == want.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
        for g, w in zip(ours.backward(states[grad]), theirs.backward(states[grad]), strict=True):
            assert g.dtype == w.dtype == np.float32
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-6, err_msg=name)
    ta, tb = TimeAttention(), layers.TimeAttention()
    ta.forward(states["hs"], states["hs_dec"])
    tb.forward(states["hs"], states["hs_dec"])
    np.testing.assert_allclose(np.array(ta.attention_weights), np.array(tb.attention_weights), rtol=1e-5)


def test_attention_seq2seq_matches_the_books_model(book):  # noqa: F811
    """Same draws: the same initial weights bit for bit; the loss and every gradient after one pass."""
    theirs_cls = book("ch08.attention_seq2seq").AttentionSeq2seq
    rng = np.random.default_rng(2)
    xs, ts = rng.integers(0, 13, (4, 7)), rng.integers(0, 13, (4, 5))
    np.random.seed(1)  # noqa: NPY002
    theirs = theirs_cls(13, 8, 10)
    np.random.seed(1)  # noqa: NPY002
    ours = AttentionSeq2seq(13, 8, 10)
    for p, q in zip(ours.params, theirs.params, strict=True):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_allclose(ours.forward(xs, ts), theirs.forward(xs, ts), rtol=1e-6)
    ours.backward()
    theirs.backward()
    for g, w in zip(ours.grads, theirs.grads, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-7)
    assert ours.generate(xs[:1], 1, 5) == [int(i) for i in theirs.generate(xs[:1], 1, 5)]


def test_bad_input_is_refused_before_anything_changes(states):
    ta = TimeAttention()
    with pytest.raises(ValueError, match="TimeAttention.forward.*hs_dec"):
        ta.forward(states["hs"], states["hs_dec"][:, :, :4])
    with pytest.raises(ValueError, match="Attention.forward.*h"):
        Attention().forward(states["hs"], states["h"][:2])
    with pytest.raises(ValueError, match="WeightSum.forward.*a"):
        WeightSum().forward(states["hs"], states["a"][:, :3])
    ta.forward(states["hs"], states["hs_dec"])
    before = ta.attention_weights
    with pytest.raises(ValueError, match="TimeAttention.backward.*dout"):
        ta.backward(states["dout"][:, :2])
    np.testing.assert_array_equal(np.array(ta.attention_weights), np.array(before))
