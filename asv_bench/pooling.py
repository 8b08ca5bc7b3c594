"""Max and average pooling (fastnn/kernels/pooling.py)."""

from .common import KernelBenchmark


class MaxPool2d(KernelBenchmark):
    cases = {"forward": "maxpool2d_forward", "backward": "maxpool2d_backward"}

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()

    def peakmem_forward(self, *params):
        self.forward()


class AvgPool2d(KernelBenchmark):
    cases = {"forward": "avgpool2d_forward", "backward": "avgpool2d_backward"}

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()

    def peakmem_forward(self, *params):
        self.forward()
