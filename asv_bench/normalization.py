"""Batch, layer and group normalization (fastnn/kernels/normalization.py).

BatchNorm2d normalizes per channel of (N, C, H, W) feature maps, BatchNorm1d per feature of (N, D) activations.
"""

from .common import KernelBenchmark


class BatchNorm2d(KernelBenchmark):
    cases = {"forward": "batchnorm_forward_train", "backward": "batchnorm_backward"}

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()

    def peakmem_forward(self, *params):
        self.forward()


class BatchNorm1d(KernelBenchmark):
    cases = {"forward": "batchnorm1d_forward", "backward": "batchnorm1d_backward"}

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()


class LayerNorm(KernelBenchmark):
    cases = {"forward": "layernorm_forward", "backward": "layernorm_backward"}

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()


class GroupNorm(KernelBenchmark):
    cases = {"forward": "groupnorm_forward", "backward": "groupnorm_backward"}

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()
