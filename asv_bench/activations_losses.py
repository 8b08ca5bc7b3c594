"""ReLU and softmax cross-entropy (fastnn/kernels/activations.py, losses.py)."""

from .common import KernelBenchmark


class ReLU(KernelBenchmark):
    cases = {"forward": "relu_forward", "backward": "relu_backward"}

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()


class SoftmaxCrossEntropy(KernelBenchmark):
    cases = {"forward": "softmax_cross_entropy_forward", "backward": "softmax_cross_entropy_backward"}

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()
