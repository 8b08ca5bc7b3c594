"""What every fastnn optimizer shares: hyperparameter checks, lazily created state, atomic updates, state dicts.

A concrete optimizer (see :mod:`fastnn.optim.optimizers`) only declares its hyperparameters in ``__init__``,
names its state arrays and writes :meth:`Optimizer._apply`: one fused kernel call per parameter.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np

from .. import _compiling, _validate
from .._checks import HYPERPARAMETER_BOUNDS
from ..backend import multi_tensor, ops, unchecked

#: Bounds of every hyperparameter any optimizer takes: :data:`fastnn._checks.HYPERPARAMETER_BOUNDS`, the table the
#: kernels check too, as floats (so messages read ``> 0.0``, as they always have). One table, so the constructor
#: and :meth:`Optimizer.load_state_dict` accept exactly the values the steps accept.
BOUNDS: dict[str, dict[str, float]] = {name: {k: float(v) for k, v in b.items()}
                                       for name, b in HYPERPARAMETER_BOUNDS.items()}

#: Hyperparameters that are switches rather than numbers.
FLAGS = frozenset({"amsgrad", "eps_hat", "pytorch_form"})


def _scalar_value(v: Any) -> Any:
    """A hyperparameter as stored in a state dict (0-d array, after an npz round trip) back to a Python value."""
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    return v


class Optimizer:
    """Base class: ``update(params, grads)`` changes every ``params[key]`` in place, as the book's optimizers do.

    Attributes
    ----------
    iter : int
        Number of updates done (the book's ``Adam.iter``; the ``t`` of the update formulas after an update).
    state_names : tuple of str
        Names of the per-parameter state arrays. Each is an attribute holding a dict ``param key -> ndarray``
        (``Momentum.v``, ``AdaGrad.h``, ``Adam.m`` ...), filled lazily on the first update that sees the key,
        with the parameter's shape and dtype.
    """

    state_names: tuple[str, ...] = ()

    #: Switches added to a class after state dicts were saved without them, with the value that reproduces how
    #: such a state was trained (e.g. ``Adam``'s ``eps_hat``: False, the only form fastnn had before).
    _legacy_hyper: Mapping[str, Any] = {}

    def __init__(self, **hyper: Any) -> None:
        checked = self._check_hyper(hyper, type(self).__name__)
        self._hyper_names = tuple(checked)
        for name, value in checked.items():
            setattr(self, name, value)
        self.iter = 0
        for name in self.state_names:
            setattr(self, name, {})
        _compiling.fresh_optimizers.add(self)  # a net's first gradient on a cold cache compiles its first step

    # -- hyperparameters ---------------------------------------------------------------------------------------
    def _check_hyper(self, hyper: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Validated copies of ``hyper`` (floats for numbers, bools for switches)."""
        checked: dict[str, Any] = {}
        for name, value in hyper.items():
            if name in FLAGS:
                if not isinstance(value, (bool, np.bool_)):
                    _validate.fail(where, name, "a bool", f"{type(value).__name__} {value!r}", TypeError)
                checked[name] = bool(value)
            else:
                checked[name] = _validate.scalar(value, where, name, **BOUNDS[name])
        return checked

    def _as_accepted(self) -> bool:
        """Whether the hyperparameters are still what the constructor (or :meth:`load_state_dict`) makes of them,
        Python floats and bools within :data:`BOUNDS`, also after a rebinding (a schedule setting ``opt.lr``). Then
        a kernel's scalar checks would pass, and a step may call its body (:data:`fastnn.backend.unchecked`)."""
        values = self.hyperparameters
        if any(type(v) is not (bool if name in FLAGS else float) for name, v in values.items()):
            return False
        try:
            self._check_hyper(values, type(self).__name__)
        except (TypeError, ValueError):
            return False
        return True

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The hyperparameters, by name (a new dict)."""
        return {name: getattr(self, name) for name in self._hyper_names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({args})"

    # -- update ------------------------------------------------------------------------------------------------
    def update(self, params: Mapping[str, Any] | list[Any], grads: Mapping[str, Any] | Sequence[Any]) -> None:
        """Update every ``params[key]`` with ``grads[key]``: arrays in place, numbers by replacing them.

        Parameters
        ----------
        params : dict of str -> ndarray or number, or list of them
            Writeable float32 or float64 arrays of any shape (0-d included), updated in place (their dtype is
            kept); or real numbers (Python int or float, NumPy scalar), replaced in the dict by the updated value
            as a NumPy float64 scalar (float32 for a NumPy float32 scalar), as the book's ``params[key] -= ...``
            does. A number's state arrays are 0-d float64 (float32), as the book's ``np.zeros_like``.
            A list (or tuple of arrays) is Deep Learning from Scratch 2's convention (``model.params``): the
            state is kept per list position (under the keys ``'0'``, ``'1'`` ..., as DLFS-2's state lists), and
            the positions are updated in order, so an array listed twice, or once more as a view (BetterRnnlm's
            ``embed_W`` and ``embed_W.T`` when ``remove_duplicate`` was not applied), takes both updates, the
            second from the first's result, each with its own state, as the book's loop does.
        grads : dict of str -> array_like, or list of them
            The same keys (a list or tuple of the same length for list params), each of its parameter's shape
            (a number or 0-d array for a number); cast to the parameter's dtype.

        Raises
        ------
        TypeError, ValueError
            Keys, lengths, shapes or dtypes do not fit. Everything is checked before the first parameter is
            touched, so after an error every parameter, every state array and :attr:`iter` are as they were.
        """
        if self._update_fast(params, grads):
            return
        where = f"{type(self).__name__}.update"
        listed = _is_list(params) or _is_list(grads)
        given = params
        if listed:
            params, grads = _list_params_grads(params, grads, where)
        arrays = _validate.params_grads(params, grads, where)
        if listed:  # state keys are str, as every key of a state dict
            grads = {str(k): grads[k] for k in arrays}
            arrays = {str(k): p for k, p in arrays.items()}
        self._check_state(arrays, where)
        t = self.iter + 1
        self._fast = self._last_plan = None
        self._apply(t, [(p, grads[k], self._slots(k, p)) for k, p in arrays.items()])
        numbers = False
        for k, p in arrays.items():
            key = int(k) if listed else k
            if p is not params[key]:  # a number: its updated value replaces it
                given[key] = p[()]  # type: ignore[index]
                numbers = True
        self.iter = t
        if self._last_plan is not None and not numbers:
            self._fast = _FastPath.of(self, given, arrays, self._last_plan)

    #: What the last update's arrays were when all of them went through one multi-tensor plan (else None).
    _fast: _FastPath | None = None
    _last_plan: Any = None
    _fast_grads: tuple[np.ndarray, ...] | None = None  # set while _update_fast runs _apply for the scalars
    _fast_failed = False

    def _update_fast(self, params: Any, grads: Any) -> bool:
        """The update when it is the last one's again: the same parameter and state arrays, hyperparameters as
        accepted then, gradients C-contiguous ndarrays of the parameters' shapes and dtype. Then every check of
        the full path would pass, and this one launches the kept multi-tensor plan; else (False) nothing was
        written and the full path runs, with its checks and messages."""
        fast = self._fast
        gs = None if fast is None else fast.matches(self, params, grads)
        if gs is None:
            return False
        t = self.iter + 1
        self._fast_grads, self._fast_failed = gs, False
        try:  # _apply with the first item gives the step's scalars; _steps launches the plan on every gradient
            self._apply(t, [(fast.params[0], gs[0], tuple(st[0] for st in fast.states))])
        finally:
            self._fast_grads = None
        if self._fast_failed:  # e.g. the bias corrections out of range: the full path decides
            return False
        self.iter = t
        return True

    def _check_state(self, params: Mapping[str, np.ndarray], where: str) -> None:
        """State kept from earlier updates (or loaded) must still fit its parameter."""
        for name in self.state_names:
            store = getattr(self, name)
            for key, p in params.items():
                s = store.get(key)
                if s is not None and (s.shape != p.shape or s.dtype != p.dtype):
                    _validate.fail(where, f"state {name}[{key!r}]",
                                   f"of shape {p.shape} and dtype {p.dtype} like params[{key!r}]",
                                   f"shape {s.shape} and dtype {s.dtype} (did the parameters change since the "
                                   f"state was made or loaded?)")

    def _slots(self, key: str, param: np.ndarray) -> tuple[np.ndarray, ...]:
        """The state arrays of one parameter, created as zeros on first use."""
        slots = []
        for name in self.state_names:
            store = getattr(self, name)
            if key not in store:
                store[key] = np.zeros(param.shape, dtype=param.dtype)
            slots.append(store[key])
        return tuple(slots)

    def _steps(self, name: str, items: list[tuple[np.ndarray, Any, tuple[np.ndarray, ...]]], trusted: bool = True,
               ) -> Iterator[tuple[Callable[..., None], np.ndarray, Any, tuple[np.ndarray, ...]]]:
        """``(step, param, grad, state arrays)`` for each of :meth:`_apply`'s items, ``step`` being kernel
        ``name``'s body (:data:`fastnn.backend.unchecked`) where its check would pass the call unchanged: the
        hyperparameters as accepted (:meth:`_as_accepted`), ``trusted`` (what else the step passes, e.g. its
        bias corrections, in range) and the arrays fit (:func:`unchecked_fits`); else the checked kernel.

        When that body is fastnn's kernel (not the NumPy twin or a replacement), the items it would run on
        contiguous arrays are recorded instead and updated together after the last one, by one multi-tensor
        launch per dtype (:class:`fastnn.kernels.optimizers.MultiTensorPlan`, kept while the same arrays come):
        the same loop bodies on the same scalars, so the same numbers (to the last bit or two), without the
        per-parameter call overhead.
        Parameters that share memory (a tied weight listed twice or as a view) keep the per-tensor path, in order.
        """
        checked = getattr(ops, name)
        # on the fast path the hyperparameters equal, in value and type, those of the update that made it, which
        # went through the multi-tensor path and so was accepted
        accepted = self._fast_grads is not None or self._as_accepted()
        body = getattr(unchecked, name) if trusted and accepted else checked
        multi = body is not checked and body is getattr(multi_tensor, "_" + name, None)
        if self._fast_grads is not None:  # _update_fast: every item is as the kept plan's
            if not multi:
                self._fast_failed = True
                return
            calls = []
            yield lambda *args, **kwargs: calls.append((args, kwargs)), *items[0]
            (args, kwargs), = calls
            kernel_body, _, scalars = multi_tensor.plan_of(body, *args, **kwargs)
            self._fast.plan.run(kernel_body, self._fast_grads, scalars)  # type: ignore[union-attr]
            return
        if len(items) < 2 or not multi:
            for param, grad, slots in items:
                yield (body if unchecked_fits(param, grad, slots) else checked), param, grad, slots
            return
        calls: list[tuple[np.ndarray, np.ndarray, tuple, dict]] = []

        def record(param: np.ndarray, grad: np.ndarray, *args: Any, **kwargs: Any) -> None:
            calls.append((param, grad, args, kwargs))

        together = _no_shared_memory(items)
        for param, grad, slots in items:
            if not unchecked_fits(param, grad, slots):
                yield checked, param, grad, slots
            elif together and _contiguous(param, grad, slots):
                yield record, param, grad, slots
            else:  # a transposed view, say: the per-tensor body copies it in and out
                yield body, param, grad, slots
        if calls:
            plans = self._run_multi_tensor(body, calls)
            if len(calls) == len(items) and len(plans) == 1:
                self._last_plan = plans[0]

    def _run_multi_tensor(self, body: Callable[..., None], calls: list[tuple[np.ndarray, np.ndarray, tuple, dict]],
                          ) -> list[Any]:
        """The recorded step calls, by one multi-tensor launch per dtype. Every call has the optimizer's
        hyperparameters; its arrays (state arrays, positional first, then keyword, as every step takes them) are
        what the step body launches on, which :func:`fastnn.kernels.optimizers.plan_of` confirms on the first."""
        by_dtype: dict[np.dtype, list[tuple[np.ndarray, np.ndarray, tuple, dict]]] = {}
        for call in calls:
            by_dtype.setdefault(call[0].dtype, []).append(call)
        cache = self.__dict__.setdefault("_multi_plans", {})
        used = []
        for group in by_dtype.values():
            param, grad, args, kwargs = group[0]
            kernel_body, states, scalars = multi_tensor.plan_of(body, param, grad, *args, **kwargs)
            slots = [tuple(a for a in (*args, *kwargs.values()) if isinstance(a, np.ndarray)) for _, _, args, kwargs
                     in group]
            if len(states) != len(slots[0]) or any(a is not b for a, b in zip(states, slots[0], strict=False)):
                for param, grad, args, kwargs in group:  # a step whose arrays are not its state (never so far)
                    body(param, grad, *args, **kwargs)
                continue
            params = [c[0] for c in group]
            key = tuple(map(id, params)) + tuple(id(a) for st in slots for a in st)
            plan = cache.get(key)
            if plan is None:
                if len(cache) > 8:  # parameter sets come and go (tests, several nets): keep a few
                    cache.clear()
                # the key's ids stay unique while the plan holds its arrays
                plan = cache[key] = multi_tensor.MultiTensorPlan(params, slots)
            plan.run(kernel_body, [c[1] for c in group], scalars)
            used.append(plan)
        return used

    def _apply(self, t: int, items: list[tuple[np.ndarray, Any, tuple[np.ndarray, ...]]]) -> None:
        """Step ``t`` (1 for the first update) on ``(param, grad, state arrays)`` triples, already validated."""
        raise NotImplementedError

    # -- state dicts -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to resume training exactly, as a flat dict of copied NumPy arrays.

        Every value is a plain (non-object) array, so the dict can be written with
        :func:`fastnn.checkpoint.save_arrays` (npz, no pickle) and read back with ``load_arrays``.

        Returns
        -------
        dict of str -> ndarray
            ``"optimizer"``: the class name (0-d str array); ``"hyper/<name>"``: each hyperparameter (0-d
            float64 or bool); ``"iter"``: updates done (0-d int64); ``"state/<state name>/<param key>"``: a copy
            of each state array (its shape and dtype).
        """
        sd: dict[str, np.ndarray] = {"optimizer": np.array(type(self).__name__)}
        for name, value in self.hyperparameters.items():
            sd[f"hyper/{name}"] = np.array(value, dtype=np.bool_ if name in FLAGS else np.float64)
        sd["iter"] = np.array(self.iter, dtype=np.int64)
        for name in self.state_names:
            for key, arr in getattr(self, name).items():
                if not isinstance(key, str):
                    _validate.fail(f"{type(self).__name__}.state_dict", "every parameter key", "a str",
                                   f"{type(key).__name__} {key!r}", TypeError)
                sd[f"state/{name}/{key}"] = arr.copy()
        return sd

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore hyperparameters, :attr:`iter` and state arrays (copied) from :meth:`state_dict`'s output.

        Accepts the dict itself or what :func:`fastnn.checkpoint.load_arrays` reads back from it. Everything is
        checked before anything is replaced: on error the optimizer is unchanged.

        Raises
        ------
        TypeError, ValueError
            Not a state dict of this optimizer class, a hyperparameter out of bounds, a key missing or
            unexpected, or a state array that is not float32/float64.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping):
            _validate.fail(where, "state_dict", "a dict of arrays from state_dict()", type(state_dict).__name__,
                           TypeError)
        kind = _scalar_value(state_dict.get("optimizer"))
        if kind != type(self).__name__:
            _validate.fail(where, "state_dict['optimizer']", repr(type(self).__name__), repr(kind))
        hyper = {k[len("hyper/"):]: _scalar_value(v) for k, v in state_dict.items() if k.startswith("hyper/")}
        for name, value in self._legacy_hyper.items():  # state dicts saved before the switch existed
            hyper.setdefault(name, value)
        if set(hyper) != set(self._hyper_names):
            _validate.fail(where, "the hyperparameters in state_dict", f"exactly {sorted(self._hyper_names)}",
                           sorted(hyper))
        hyper = self._check_hyper({name: hyper[name] for name in self._hyper_names}, where)
        if "iter" not in state_dict:
            _validate.fail(where, "state_dict", "a dict with an 'iter' entry", f"keys {sorted(state_dict)}")
        it = _validate.integer(_scalar_value(state_dict["iter"]), where, "state_dict['iter']", minimum=0)
        state_names = self._state_names_for(hyper)
        stores: dict[str, dict[str, np.ndarray]] = {name: {} for name in state_names}
        known = {"optimizer", "iter"} | {f"hyper/{n}" for n in hyper}
        for k, v in state_dict.items():
            if k in known:
                continue
            name, _, key = k[len("state/"):].partition("/")
            if not k.startswith("state/") or name not in stores or not key:
                _validate.fail(where, "every key of state_dict",
                               f"'optimizer', 'iter', 'hyper/<name>' or 'state/<{'|'.join(state_names)}>/<key>'",
                               repr(k))
            if not isinstance(v, np.ndarray) or v.dtype not in _validate.FLOAT_DTYPES:
                _validate.fail(where, f"state_dict[{k!r}]", "a float32 or float64 ndarray", _validate.describe(v),
                               TypeError)
            stores[name][key] = np.array(v, order="C", copy=True)
        _check_same_keys(stores, where)
        for name in self.state_names:  # the current set: loading may switch it (Adam's amsgrad)
            setattr(self, name, {})
        for name, value in hyper.items():
            setattr(self, name, value)
        self.iter = it
        for name, store in stores.items():
            setattr(self, name, store)

    def _state_names_for(self, hyper: Mapping[str, Any]) -> tuple[str, ...]:
        """The state arrays this optimizer keeps with hyperparameters ``hyper`` (override when they depend on
        one, as Adam's ``v_max`` on ``amsgrad``)."""
        return type(self).state_names


_writeable = attrgetter("flags.writeable")
_c_contiguous = attrgetter("flags.c_contiguous")
_shape = attrgetter("shape")
_dtype = attrgetter("dtype")


class _FastPath(NamedTuple):
    """An update's arrays, to recognise the next update as the same one cheaply (:meth:`Optimizer._update_fast`).

    Every comparison is one C-level ``map`` over the parameters: the per-parameter Python overhead this removes is
    what made small nets slow.
    """

    kind: type
    keys: tuple
    params: tuple[np.ndarray, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]
    stores: tuple[dict, ...]
    state_keys: tuple
    states: tuple[tuple[np.ndarray, ...], ...]
    hyper: tuple
    hyper_types: tuple
    plan: Any

    @classmethod
    def of(cls, opt: Optimizer, given: Any, arrays: Mapping[Any, np.ndarray], plan: Any) -> _FastPath | None:
        if type(given) not in (dict, list):
            return None
        keys = tuple(range(len(given))) if type(given) is list else tuple(arrays)
        params = tuple(arrays.values())
        stores = tuple(getattr(opt, name) for name in opt.state_names)
        hyper = tuple(map(opt.__dict__.get, opt._hyper_names))
        return cls(type(given), keys, params, tuple(map(_shape, params)), tuple(map(_dtype, params)), stores,
                   tuple(arrays), tuple(tuple(map(store.__getitem__, arrays)) for store in stores), hyper,
                   tuple(map(type, hyper)), plan)

    def matches(self, opt: Optimizer, params: Any, grads: Any) -> tuple[np.ndarray, ...] | None:
        """The gradients in the parameters' order if ``update(params, grads)`` is this update again, else None."""
        if type(params) is not self.kind or len(params) != len(self.keys) or len(grads) != len(self.keys):
            return None
        if self.kind is dict:
            if type(grads) is not dict:
                return None
            ps, gs = tuple(map(params.get, self.keys)), tuple(map(grads.get, self.keys))
        else:
            if type(grads) not in (list, tuple):
                return None
            ps, gs = tuple(params), tuple(grads)
        hyper = tuple(map(opt.__dict__.get, opt._hyper_names))
        if not (all(map(operator.is_, ps, self.params)) and hyper == self.hyper
                and tuple(map(type, hyper)) == self.hyper_types and all(map(_writeable, ps))
                and tuple(map(_shape, ps)) == self.shapes and all(map(_ndarray, gs))
                and tuple(map(_shape, gs)) == self.shapes and tuple(map(_dtype, gs)) == self.dtypes
                and all(map(_c_contiguous, gs))):
            return None
        stores = tuple(getattr(opt, name) for name in opt.state_names)
        if len(stores) != len(self.stores) or not all(map(operator.is_, stores, self.stores)):
            return None
        for store, kept in zip(stores, self.states, strict=True):
            now = tuple(map(store.get, self.state_keys))
            if not (all(map(operator.is_, now, kept)) and all(map(_writeable, now))):
                return None
        return gs


def _ndarray(x: Any) -> bool:
    return type(x) is np.ndarray


def _no_shared_memory(items: list[tuple[np.ndarray, Any, tuple[np.ndarray, ...]]]) -> bool:
    """Whether no two parameters share memory (a repeat, or a view of another or of one buffer): then the order
    of their updates does not matter and they may be updated together. Else they keep the per-tensor path, in list
    order, as the book's loop."""
    owners = {id(param if param.base is None else param.base) for param, _, _ in items}
    return len(owners) == len(items)


def _contiguous(param: np.ndarray, grad: np.ndarray, slots: tuple[np.ndarray, ...]) -> bool:
    return param.flags.c_contiguous and grad.flags.c_contiguous and all(s.flags.c_contiguous for s in slots)


def _is_list(x: Any) -> bool:
    return isinstance(x, (list, tuple))


def _list_params_grads(params: Any, grads: Any, where: str) -> tuple[dict[int, Any], dict[int, Any]]:
    """DLFS-2's list convention as position-keyed dicts for :func:`fastnn._validate.params_grads` (whose messages
    then read ``params[0]``): both lists (or tuples) of one length; a number among the params needs a list (it is
    replaced there)."""
    if not (_is_list(params) and _is_list(grads)):
        _validate.fail(where, "params and grads", "both lists of arrays (DLFS-2) or both dicts (DLFS-1)",
                       f"{type(params).__name__} and {type(grads).__name__}", TypeError)
    if len(grads) != len(params):
        _validate.fail(where, "grads", f"a list of the same length as params ({len(params)})",
                       f"length {len(grads)}")
    pmap = dict(enumerate(params))
    if not isinstance(params, list):
        for i, p in pmap.items():
            if not isinstance(p, np.ndarray):
                _validate.fail(where, "params", f"a list (the number params[{i}] is replaced)",
                               type(params).__name__, TypeError)
    return pmap, dict(enumerate(grads))


def unchecked_fits(param: np.ndarray, grad: Any, slots: tuple[np.ndarray, ...]) -> bool:
    """Whether a step's arrays are what its kernel's check would return, given what :meth:`Optimizer.update`
    checked (param a writeable float array, grad of its shape, state arrays of its shape and dtype): grad an
    ndarray of param's dtype (the check would cast it) and the state arrays writeable."""
    return type(grad) is np.ndarray and grad.dtype == param.dtype and all(s.flags.writeable for s in slots)


def _check_same_keys(stores: Mapping[str, Mapping[str, np.ndarray]], where: str) -> None:
    """Every state name must cover the same parameter keys with arrays of one shape and dtype per key."""
    if not stores:
        return
    first, *rest = stores
    for name in rest:
        if set(stores[name]) != set(stores[first]):
            _validate.fail(where, f"the 'state/{name}/...' keys", f"the same parameter keys as 'state/{first}/...' "
                           f"{sorted(stores[first])}", sorted(stores[name]))
        for key, arr in stores[name].items():
            ref = stores[first][key]
            if arr.shape != ref.shape or arr.dtype != ref.dtype:
                _validate.fail(where, f"state_dict['state/{name}/{key}']",
                               f"of shape {ref.shape} and dtype {ref.dtype} like 'state/{first}/{key}'",
                               f"shape {arr.shape} and dtype {arr.dtype}")
