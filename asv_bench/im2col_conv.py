"""im2col / col2im and convolution (fastnn/kernels/im2col.py, conv.py)."""

from .common import _ForwardBackwardMemory


class Im2col(_ForwardBackwardMemory):
    cases = {"forward": "im2col", "backward": "col2im"}


class Conv2d(_ForwardBackwardMemory):
    cases = {"forward": "conv2d_forward", "backward": "conv2d_backward"}

    def peakmem_backward(self, *params):
        self.backward()
