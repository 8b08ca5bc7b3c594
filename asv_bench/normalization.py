"""Batch, layer and group normalization (fastnn/kernels/normalization.py).

BatchNorm2d normalizes per channel of (N, C, H, W) feature maps, BatchNorm1d per feature of (N, D) activations.
"""

from .common import _ForwardBackward, _ForwardBackwardMemory


class BatchNorm2d(_ForwardBackwardMemory):
    cases = {"forward": "batchnorm_forward_train", "backward": "batchnorm_backward"}


class BatchNorm1d(_ForwardBackward):
    cases = {"forward": "batchnorm1d_forward", "backward": "batchnorm1d_backward"}


class LayerNorm(_ForwardBackward):
    cases = {"forward": "layernorm_forward", "backward": "layernorm_backward"}


class GroupNorm(_ForwardBackward):
    cases = {"forward": "groupnorm_forward", "backward": "groupnorm_backward"}
