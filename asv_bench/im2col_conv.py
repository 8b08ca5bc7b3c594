"""im2col / col2im and convolution (fastnn/kernels/im2col.py, conv.py)."""

from .common import KernelBenchmark


class Im2col(KernelBenchmark):
    cases = {"forward": "im2col", "backward": "col2im"}

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()

    def peakmem_forward(self, *params):
        self.forward()


class Conv2d(KernelBenchmark):
    cases = {"forward": "conv2d_forward", "backward": "conv2d_backward"}

    def time_forward(self, *params):
        self.forward()

    def time_backward(self, *params):
        self.backward()

    def peakmem_forward(self, *params):
        self.forward()

    def peakmem_backward(self, *params):
        self.backward()
