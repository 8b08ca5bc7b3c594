"""Transformer layers and nets (fastnn/layers/transformer.py, fastnn/nets/transformer_lm.py): the causal
MultiHeadAttention layer's forward + backward and one TransformerLM training step, time and peak memory."""

from .common import KernelBenchmark


class MultiHeadAttention(KernelBenchmark):
    cases = {"step": "mha_causal_forward_backward"}

    def time_step(self, *params):
        self.step()


class TransformerLMTraining(KernelBenchmark):
    params = (["fastnn", "numpy", "torch"], ["float32"], ["mnist", "cifar"])
    cases = {"step": "train_transformer_lm"}

    def time_step(self, *params):
        self.step()

    def peakmem_step(self, *params):
        self.step()
