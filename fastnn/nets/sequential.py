"""A network as a stack of layers and a loss layer: the shape of every network in Deep Learning from Scratch."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import _compiling, _validate, checkpoint
from ..gradient import numerical_gradient as _numerical_gradient
from ..layers.conv import ConvReluRun, fuse_runs

__all__ = ["Sequential"]


def _takes_train_flg(layer: Any) -> bool:
    try:
        return "train_flg" in inspect.signature(layer.forward).parameters
    except (TypeError, ValueError):  # a builtin or C-implemented forward has no inspectable signature
        return False


def _numbered(layers: list, table: str) -> dict[str, tuple[Any, str]]:
    """Global names of the layers' arrays, numbered per name in layer order: the first layer with a ``W`` gives
    ``W1``, the next ``W2``; the first with a ``gamma`` gives ``gamma1`` ... (the book's keys)."""
    counts: dict[str, int] = {}
    index = {}
    for layer in layers:
        for name in getattr(layer, table, {}) or {}:
            counts[name] = counts.get(name, 0) + 1
            index[f"{name}{counts[name]}"] = (layer, name)
    return index


class Sequential:
    """Layers applied in order, then a loss layer; the book's ``predict``/``loss``/``accuracy``/``gradient`` API.

    Parameters
    ----------
    layers : list of layers, or a dict (e.g. OrderedDict) of name -> layer
        Any objects with ``forward(x)``/``backward(dout)`` (``forward(x, train_flg)`` when their forward takes
        ``train_flg``: Dropout, BatchNormalization). Kept as given in ``self.layers`` (the book's nets: an
        OrderedDict keyed ``Conv1``, ``Affine1``, ... or a list), so code indexing it as the book's does works;
        the layers are read once, here: rebinding a layer's ``W``/``b`` later is seen (the book's
        ``load_params`` does that), putting another layer object into ``self.layers`` is not.
    loss_layer
        ``forward(y, t) -> loss`` and ``backward(dout=1) -> dy`` (e.g. :class:`fastnn.layers.SoftmaxWithLoss`);
        kept as ``self.last_layer``.
    weight_decay_lambda : float >= 0, keyword-only
        L2 penalty ``0.5 * lambda * sum(W**2)`` added to the loss for every parameter named ``W`` (and
        ``lambda * W`` to its gradient), as the book's MultiLayerNet.
    dtype : float32 or float64, optional, keyword-only
        When given, inputs are cast to it before the first layer (a float32 net then stays float32 on float64
        data). None: inputs go in as given (NumPy promotion in each layer).
    fuse : bool, keyword-only, default True
        Run each Convolution -> Relu (-> 2x2 stride-2 Pooling) sequence as one fused kernel call per pass
        (:class:`fastnn.layers.conv.ConvReluRun`): the same results without the full-size intermediate
        passes. Kept as the attribute ``fuse``, which may be switched off and on between passes (not between
        a forward and its backward).

    Attributes
    ----------
    params : dict of str to ndarray
        Every layer's parameters under the book's keys (``W1``, ``b1``, ``gamma1``, ...; numbered per name in
        layer order), the same arrays the layers hold: update them in place.
    buffers : dict of str to ndarray
        Non-trained state under the same numbering (``running_mean1``, ``running_var1``, ...).
    """

    #: Until the first :meth:`gradient`: it then shares a cold cache's compilation with a worker process.
    _first_gradient = True

    def __init__(self, layers: Sequence | Mapping, loss_layer: Any, *, weight_decay_lambda: float = 0.0,
                 dtype: Any = None, fuse: bool = True) -> None:
        where = type(self).__name__
        if isinstance(layers, Mapping):
            self._layer_list = list(layers.values())
        elif isinstance(layers, Sequence) and not isinstance(layers, str):
            self._layer_list = list(layers)
        else:
            _validate.fail(where, "layers", "a list or dict of layers", type(layers).__name__, TypeError)
        for i, layer in enumerate([*self._layer_list, loss_layer]):
            if not (callable(getattr(layer, "forward", None)) and callable(getattr(layer, "backward", None))):
                name = "loss_layer" if i == len(self._layer_list) else f"layers[{i}]"
                _validate.fail(where, name, "a layer with forward and backward methods", type(layer).__name__,
                               TypeError)
        self.layers = layers
        self.last_layer = loss_layer
        self.weight_decay_lambda = _validate.scalar(weight_decay_lambda, where, "weight_decay_lambda", ge=0.0)
        self.dtype = None if dtype is None else float_dtype(dtype, where)
        self._train_flg = [_takes_train_flg(layer) for layer in self._layer_list]
        self.fuse = _validate.flag(fuse, where, "fuse")
        self._plans = {False: list(zip(self._layer_list, self._train_flg, strict=True))}
        self._plans[True] = [(step, not isinstance(step, ConvReluRun) and _takes_train_flg(step))
                             for step in fuse_runs(self._layer_list)]
        self._plan = self._plans[self.fuse]
        self._param_index = _numbered(self._layer_list, "params")
        self._buffer_index = _numbered(self._layer_list, "buffers")
        self.params = {key: layer.params[name] for key, (layer, name) in self._param_index.items()}
        self.buffers = {key: layer.buffers[name] for key, (layer, name) in self._buffer_index.items()}

    def _input(self, x: Any, method: str) -> np.ndarray:
        x = _validate.float_array(x, f"{type(self).__name__}.{method}", "x")
        return x if self.dtype is None or x.dtype == self.dtype else x.astype(self.dtype)

    def predict(self, x: Any, train_flg: bool = False) -> np.ndarray:
        """Scores (N, K) for x; ``train_flg`` is passed to the layers that take it (dropout, batch norm)."""
        x = self._input(x, "predict")
        self._plan = self._plans[bool(self.fuse)]  # the steps the next backward walks
        for step, takes_flag in self._plan:
            x = step.forward(x, train_flg) if takes_flag else step.forward(x)
        return x

    def loss(self, x: Any, t: Any, train_flg: bool = False) -> Any:
        """The loss layer's value on ``predict(x, train_flg)`` plus the weight decay penalty."""
        y = self.predict(x, train_flg)
        return self.last_layer.forward(y, t) + self._weight_decay()

    def _weight_decay(self) -> Any:
        if not self.weight_decay_lambda:
            return 0
        penalty = 0
        for key, (_, name) in self._param_index.items():
            if name == "W":
                W = self.params[key]
                penalty += 0.5 * self.weight_decay_lambda * np.sum(W * W)
        return penalty

    def accuracy(self, x: Any, t: Any, batch_size: int | None = None) -> float:
        """Fraction of samples whose arg-max score is the label (int labels (N,) or one-hot (N, K)); inference
        mode, ``batch_size`` samples at a time (None: all at once). Every sample counts (the book's conv nets
        drop the last ``N % batch_size``)."""
        where = f"{type(self).__name__}.accuracy"
        x = self._input(x, "accuracy")
        n = x.shape[0] if x.ndim else 0
        if n == 0:
            _validate.fail(where, "x", "a batch of N >= 1 samples", f"shape {x.shape}")
        step = n if batch_size is None else _validate.integer(batch_size, where, "batch_size", minimum=1)
        scores = [self.predict(x[i:i + step], train_flg=False) for i in range(0, n, step)]
        labels = _validate.labels(t, n, scores[0].shape[1], where, "t")
        predicted = np.concatenate([np.argmax(s, axis=1) for s in scores])
        return float(np.count_nonzero(predicted == labels) / n)

    def gradient(self, x: Any, t: Any) -> dict[str, np.ndarray]:
        """Gradients of ``loss(x, t, train_flg=True)`` by backpropagation, under the keys of ``params``.

        Without weight decay these are the layers' own gradient arrays (``grads['W1'] is layers[...].dW``).
        """
        if self._first_gradient:  # a cold cache's compilation is shared with a worker process (see _compiling)
            self._first_gradient = False
            _compiling.first_gradient(self, lambda: self.loss(x, t, train_flg=True), x, t)
        else:
            self.loss(x, t, train_flg=True)
        dout = self.last_layer.backward(1)
        for step, _ in reversed(self._plan):
            dout = step.backward(dout)
        grads = {}
        for key, (layer, name) in self._param_index.items():
            grad = layer.grads[name]
            if self.weight_decay_lambda and name == "W":
                grad = grad + self.weight_decay_lambda * self.params[key]
            grads[key] = grad
        return grads

    def numerical_gradient(self, x: Any, t: Any) -> dict[str, np.ndarray]:
        """Gradients of ``loss(x, t, train_flg=True)`` by central differences (slow; for checking ``gradient``).

        Every evaluation of the loss starts from the net's state at the call (dropout random streams, batch norm
        running statistics), so the loss is a function of the parameters only, and that state is restored on
        return: the dropout masks used here are the ones the next ``gradient(x, t)`` call draws.
        """
        x = self._input(x, "numerical_gradient")
        states = [(layer, layer._snapshot()) for layer in self._layer_list if hasattr(layer, "_snapshot")]

        def restore() -> None:
            for layer, state in states:
                layer._restore(state)

        def loss(_: np.ndarray) -> Any:
            restore()
            return self.loss(x, t, train_flg=True)

        try:
            # in gradient()'s key order (the book's: W1, b1, gamma1, beta1, W2, ...), which may differ from params'
            return {key: _numerical_gradient(loss, self.params[key]) for key in self._param_index}
        finally:
            restore()

    def save_params(self, file_name: str = "params.npz") -> None:
        """Write ``params`` and ``buffers`` to an .npz file (atomically, through :mod:`fastnn.checkpoint`)."""
        checkpoint.save_arrays(file_name, {**self.params, **self.buffers})

    def load_params(self, file_name: str = "params.npz", allow_pickle: bool = False) -> None:
        """Read a file written by :meth:`save_params` of a net of the same architecture and dtype.

        Parameters
        ----------
        file_name : str or os.PathLike
            An .npz archive from :meth:`save_params`; with ``allow_pickle=True`` also a pickle written by the
            book's ``save_params`` (a pickled dict of name -> ndarray, e.g. its ``ch07/params.pkl`` and
            ``ch08/deep_convnet_params.pkl``, float64: load them into a float64 net).
        allow_pickle : bool
            False (default) refuses pickles, which can run code when loaded (``np.load``'s convention); True
            reads one, for a file you trust. Only dicts and NumPy arrays are unpickled; any other object in the
            file is refused before it is built.

        Names (exactly the keys of ``params`` and ``buffers``), shapes and dtypes are checked before anything is
        written, whatever the format; values are then copied into the existing arrays in place, so the layers
        (and optimizer state keyed on them) keep working.
        """
        where = f"{type(self).__name__}.load_params"
        if not isinstance(allow_pickle, (bool, np.bool_)):
            _validate.fail(where, "allow_pickle", "True or False", repr(allow_pickle), TypeError)
        arrays = {**self.params, **self.buffers}
        expected = {key: (a.shape, a.dtype) for key, a in arrays.items()}
        loaded = checkpoint._load(file_name, expected, where, allow_pickle=bool(allow_pickle))
        for key, a in arrays.items():
            np.copyto(a, loaded[key])


def float_dtype(dtype: Any, where: str) -> np.dtype:
    """``dtype`` as float32 or float64."""
    try:
        d = np.dtype(dtype)
    except TypeError:
        d = None
    if d not in _validate.FLOAT_DTYPES:
        _validate.fail(where, "dtype", "float32 or float64", repr(dtype), TypeError)
    return d
