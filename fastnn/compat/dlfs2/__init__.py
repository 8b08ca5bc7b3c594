"""Deep Learning from Scratch 2 (``oreilly-japan/deep-learning-from-scratch-2``) on fastnn kernels, by an import
swap.

The modules mirror the book's files, with the same classes, arguments, attributes and numbers:

=====================================  ===============================================================
book                                   fastnn
=====================================  ===============================================================
``common/layers.py``                   :mod:`fastnn.compat.dlfs2.layers`
``common/time_layers.py``              :mod:`fastnn.compat.dlfs2.time_layers`
``common/optimizer.py``                :mod:`fastnn.compat.dlfs2.optimizer`
``common/trainer.py``                  :mod:`fastnn.compat.dlfs2.trainer`
``common/base_model.py``               :mod:`fastnn.compat.dlfs2.base_model`
``common/util.py`` (training helpers)  :mod:`fastnn.compat.dlfs2.util`
``common/config.py``                   :mod:`fastnn.compat.dlfs2.config`
``ch04/negative_sampling_layer.py``    :mod:`fastnn.compat.dlfs2.negative_sampling_layer`
``ch05/simple_rnnlm.py``               :mod:`fastnn.compat.dlfs2.simple_rnnlm`
``ch06/rnnlm.py``                      :mod:`fastnn.compat.dlfs2.rnnlm`
``ch06/better_rnnlm.py``               :mod:`fastnn.compat.dlfs2.better_rnnlm`
``ch07/seq2seq.py``                    :mod:`fastnn.compat.dlfs2.seq2seq`
``ch07/peeky_seq2seq.py``              :mod:`fastnn.compat.dlfs2.peeky_seq2seq`
``ch08/attention_layer.py``            :mod:`fastnn.compat.dlfs2.attention_layer`
``ch08/attention_seq2seq.py``          :mod:`fastnn.compat.dlfs2.attention_seq2seq`
=====================================  ===============================================================

so ``from common.time_layers import *`` becomes ``from fastnn.compat.dlfs2.time_layers import *`` and
``from rnnlm import Rnnlm`` becomes ``from fastnn.compat.dlfs2.rnnlm import Rnnlm``. The book's dtype, float32
(``'f'``), is kept throughout. Every numeric step runs in :mod:`fastnn.kernels` through
:data:`fastnn.backend.ops`, so ``with fastnn.backend.using("reference"):`` runs the same model on the NumPy twins.
Each module's docstring lists where it differs from the book.
"""
