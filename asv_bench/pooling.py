"""Max and average pooling (fastnn/kernels/pooling.py)."""

from .common import _ForwardBackwardMemory


class MaxPool2d(_ForwardBackwardMemory):
    cases = {"forward": "maxpool2d_forward", "backward": "maxpool2d_backward"}


class AvgPool2d(_ForwardBackwardMemory):
    cases = {"forward": "avgpool2d_forward", "backward": "avgpool2d_backward"}
