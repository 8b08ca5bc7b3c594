"""A script in the style of DLFS-2's ``ch06/train_rnnlm.py`` (Rnnlm, SGD lr 20, RnnlmTrainer with max_grad 0.25,
eval_perplexity on held-out ids), run on fastnn by changing its imports, gives the book's numbers.

The expected numbers were produced by the book's own code (``common/``, ``ch06/rnnlm.py`` of
oreilly-japan/deep-learning-from-scratch-2) on the same tiny corpus and seed; where that repository is at hand,
the test runs it again and compares directly.
"""

from __future__ import annotations

import numpy as np

from fastnn import backend
from fastnn.compat.dlfs2.optimizer import SGD
from fastnn.compat.dlfs2.rnnlm import Rnnlm
from fastnn.compat.dlfs2.trainer import RnnlmTrainer
from fastnn.compat.dlfs2.util import eval_perplexity

from .dlfs2_book import book  # noqa: F401 -- fixture

#: The book's run (NumPy, its own code): RnnlmTrainer.ppl_list every 10 iterations over 3 epochs, and the
#: held-out perplexity.
BOOK_PPL = [40.036251478091394, 38.37352595186805, 32.95910792063098, 28.338706834368924, 36.41236896162594,
            33.406608821035164, 26.580482873962406, 26.78809194858259, 30.864236756468777, 31.729025132391307,
            28.437679766091367, 25.196768788989377]
BOOK_TEST_PPL = 28.26563915729868


def tiny_corpus() -> np.ndarray:
    """1500 ids over 40 words, Zipf-like, each word often followed by ``(7 * word + 3) % 40`` (something for the
    LSTM to learn); ``np.random.RandomState``, whose streams NumPy keeps stable."""
    rs = np.random.RandomState(7)  # noqa: NPY002 -- a stable legacy stream
    p = 1.0 / np.arange(1, 41)
    p /= p.sum()
    ids = rs.choice(40, 1500, p=p)
    follow = rs.rand(1500) < 0.5
    ids[1:][follow[1:]] = (ids[:-1][follow[1:]] * 7 + 3) % 40
    return ids.astype(np.int64)


def train_rnnlm(SGD, RnnlmTrainer, eval_perplexity, Rnnlm):  # noqa: N803 -- the script's imported names
    """ch06/train_rnnlm.py at a tiny size: the script's own steps, with the imported names as arguments."""
    corpus = tiny_corpus()
    train, test = corpus[:1200], corpus[1200:]
    np.random.seed(0)  # noqa: NPY002 -- the book draws its weights from the global generator
    batch_size, wordvec_size, hidden_size, time_size = 5, 10, 12, 7
    lr, max_epoch, max_grad = 20.0, 3, 0.25
    vocab_size = int(corpus.max()) + 1
    xs, ts = train[:-1], train[1:]
    model = Rnnlm(vocab_size, wordvec_size, hidden_size)
    trainer = RnnlmTrainer(model, SGD(lr))
    trainer.fit(xs, ts, max_epoch, batch_size, time_size, max_grad, eval_interval=10)
    model.reset_state()
    ppl_test = eval_perplexity(model, test, batch_size=4, time_size=7)
    return trainer.ppl_list, float(ppl_test), model


def test_train_rnnlm_gives_the_books_numbers(capsys):
    ppl, test_ppl, model = train_rnnlm(SGD, RnnlmTrainer, eval_perplexity, Rnnlm)
    assert len(ppl) == len(BOOK_PPL) == 12
    # 102 SGD steps at lr 20 in float32 with other summation orders than NumPy's: measured 4.4e-6 (training)
    # and 1.1e-5 (held out) relative
    np.testing.assert_allclose(ppl, BOOK_PPL, rtol=1e-4)
    np.testing.assert_allclose(test_ppl, BOOK_TEST_PPL, rtol=1e-4)
    assert ppl[-1] < 0.7 * ppl[0] and test_ppl < 40  # it learned (40 words: a uniform guess scores 40)
    assert all(p.dtype == np.float32 for p in model.params)
    out = capsys.readouterr().out
    assert "| epoch 3 |  iter 31 / 34 | time " in out and "perplexity" in out and "evaluating perplexity" in out


def test_train_rnnlm_on_the_twins_matches():
    with backend.using("reference"):
        ppl, test_ppl, _ = train_rnnlm(SGD, RnnlmTrainer, eval_perplexity, Rnnlm)
    np.testing.assert_allclose(ppl, BOOK_PPL, rtol=1e-4)
    np.testing.assert_allclose(test_ppl, BOOK_TEST_PPL, rtol=1e-4)


def test_the_books_code_gives_the_pinned_numbers(book):  # noqa: F811
    """The pinned numbers are the book's: its own code, run here on the same script."""
    opt, tr, util, lm = book("common.optimizer"), book("common.trainer"), book("common.util"), book("ch06.rnnlm")
    ppl, test_ppl, _ = train_rnnlm(opt.SGD, tr.RnnlmTrainer, util.eval_perplexity, lm.Rnnlm)
    np.testing.assert_allclose(ppl, BOOK_PPL, rtol=1e-12)
    np.testing.assert_allclose(test_ppl, BOOK_TEST_PPL, rtol=1e-12)
