"""ReLU and softmax cross-entropy (fastnn/kernels/activations.py, losses.py)."""

from .common import _ForwardBackward


class ReLU(_ForwardBackward):
    cases = {"forward": "relu_forward", "backward": "relu_backward"}


class SoftmaxCrossEntropy(_ForwardBackward):
    cases = {"forward": "softmax_cross_entropy_forward", "backward": "softmax_cross_entropy_backward"}
