"""Fused attention (fastnn/kernels/attention.py): causal forward + backward, time and peak memory.

``peakmem_step`` at the ``long`` size (S = T = 1024) is the issue's memory comparison: the NumPy twin
materialises (N, H, S, T) scores, weights and their gradients; the fused kernel keeps O(N H S d) plus one tile per
thread.
"""

from .common import KernelBenchmark


class CausalAttention(KernelBenchmark):
    params = (["fastnn", "numpy", "torch"], ["float32"], ["mnist", "cifar", "long"])
    cases = {"step": "attention_causal_forward_backward"}

    def time_step(self, *params):
        self.step()

    def peakmem_step(self, *params):
        self.step()
