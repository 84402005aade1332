"""Optimizers: one general ``Optimizer.step`` over param groups, and per optimizer one
``_update`` that calls its fused fastdl.ops kernel once per parameter (a single pass over the
parameter, its gradient and its state). Update rules, argument names, defaults and state names
are PyTorch's (``maximize`` and Adam's ``amsgrad`` included), so ``state_dict()`` looks like
PyTorch's too.

Simplest first: SGD; then Adam, with AdamW a thin subclass (decoupled weight decay) sharing
Adam's implementation; RMSprop; Adagrad.
"""

from __future__ import annotations

import numpy as np

from .. import ops
from ..tensor import Tensor, _to_device, _xp

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "clip_grad_norm_"]


def _check(cls: str, name: str, value, low=0.0, high=None, high_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{cls}: {name} must be a number, got {type(value).__name__}")
    bad = value < low or (high is not None and (value >= high if high_open else value > high))
    if bad or value != value:
        rng = f">= {low}" if high is None else f"in [{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{cls}: {name} must be {rng}, got {value}")


class Optimizer:
    """Base class: ``params`` is an iterable of Parameters, or of dicts each holding "params"
    and per-group overrides of the defaults (``[{"params": a}, {"params": b, "lr": 1e-4}]``).

    ``step()`` calls ``_update(p, grad, group, state)`` for every parameter that has a gradient;
    per-parameter state lives in ``self.state[p]``.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.state: dict = {}
        self.param_groups: list = []
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Parameters or "
                            f"dicts, got a single Tensor (wrap it in a list)")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict) -> None:
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{type(self).__name__}: a param group must be a dict with 'params'")
        group = dict(group)
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        for p in ps:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__} can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__} can't optimize a non-leaf Tensor")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in ps}) != len(ps) or any(id(p) in seen for p in ps):
            raise ValueError(f"{type(self).__name__}: a parameter appears more than once")
        group["params"] = ps
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._validate(group)
        self.param_groups.append(group)

    def _validate(self, group: dict) -> None:
        _check(type(self).__name__, "lr", group["lr"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad[...] = 0

    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group, self.state.setdefault(p, {}))

    def _update(self, p: Tensor, grad, group: dict, state: dict) -> None:
        raise NotImplementedError

    # -- state dict (PyTorch's layout: parameters numbered in group order) --
    def state_dict(self) -> dict:
        index, groups = {}, []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": ids})
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if s and id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state from ``state_dict()`` output, also after a round
        trip through fastdl.save/load (string keys, 0-d arrays)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"load_state_dict: {len(groups)} param groups in the state dict, "
                             f"{len(self.param_groups)} in this optimizer")
        params = {}
        for mine, saved in zip(self.param_groups, groups):
            ids = [int(i) for i in np.asarray(saved["params"]).reshape(-1)]
            if len(ids) != len(mine["params"]):
                raise ValueError(f"load_state_dict: a param group has {len(ids)} parameters in the "
                                 f"state dict, {len(mine['params'])} in this optimizer")
            params.update(zip(ids, mine["params"]))
            for k, v in saved.items():
                if k != "params":
                    mine[k] = _py(v)
        self.state = {}
        for k, saved_state in state_dict.get("state", {}).items():
            p = params.get(int(k))
            if p is None:
                raise ValueError(f"load_state_dict: state for parameter {k}, which no group holds")
            self.state[p] = {name: (int(np.asarray(_host(v)).item()) if name == "step"
                                    else _array_like(p, _host(v)))
                             for name, v in saved_state.items()}


def _array_like(p, v):
    """A fresh C-contiguous array of p's dtype and device holding v (state is updated in place)."""
    v = _to_device(v, p.device)
    if tuple(v.shape) != p.shape:
        raise ValueError(f"load_state_dict: optimizer state of shape {tuple(v.shape)} for a "
                         f"parameter of shape {p.shape}")
    return _xp(p.data).array(v, dtype=p.dtype, order="C")


def _host(v):
    return v.data if isinstance(v, Tensor) else v


def _py(v):
    """A hyperparameter back from an array: 0-d -> Python scalar, 1-d -> tuple."""
    if isinstance(v, np.ndarray) or isinstance(v, np.generic):
        v = np.asarray(v)
        return v.item() if v.ndim == 0 else tuple(v.tolist())
    return v


# ---- SGD ----------------------------------------------------------------------------------------------

class SGD(Optimizer):
    """Stochastic gradient descent, PyTorch's rule: g += weight_decay p; with momentum,
    buf = g on the first step, else buf = momentum buf + (1 - dampening) g; g = g + momentum buf
    (nesterov) or buf; p -= lr g."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, dampening: float = 0,
                 weight_decay: float = 0, nesterov: bool = False, *, maximize: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov,
                                      maximize=maximize))

    def _validate(self, g):
        super()._validate(g)
        for k in ("momentum", "dampening", "weight_decay"):
            _check("SGD", k, g[k])
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum requires a momentum and zero dampening")

    def _update(self, p, grad, group, state):
        buf, first = None, False
        if group["momentum"] != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = _xp(p.data).zeros_like(p.data)
                first = True
        ops.sgd_step_(p.data, grad, buf, group["lr"], momentum=group["momentum"],
                      weight_decay=group["weight_decay"], nesterov=group["nesterov"],
                      dampening=group["dampening"], maximize=group["maximize"], first_step=first)


# ---- Adam and AdamW: one implementation ---------------------------------------------------------------

class Adam(Optimizer):
    """Adam (Kingma & Ba) as PyTorch computes it: bias-corrected moments, eps added to
    sqrt(v_hat); weight_decay is L2 (added to the gradient) here and decoupled in AdamW."""

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _validate(self, g):
        super()._validate(g)
        name = type(self).__name__
        if len(g["betas"]) != 2:
            raise ValueError(f"{name}: betas must be a pair, got {g['betas']!r}")
        g["betas"] = tuple(float(b) for b in g["betas"])
        _check(name, "betas[0]", g["betas"][0], 0.0, 1.0, high_open=True)
        _check(name, "betas[1]", g["betas"][1], 0.0, 1.0, high_open=True)
        _check(name, "eps", g["eps"])
        _check(name, "weight_decay", g["weight_decay"])

    def _update(self, p, grad, group, state):
        if not state:
            xp = _xp(p.data)
            state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        ops.adam_step_(p.data, grad, state["exp_avg"], state["exp_avg_sq"], state["step"],
                       group["lr"], beta1, beta2, group["eps"],
                       weight_decay=group["weight_decay"], decoupled=self.decoupled,
                       amsgrad=group["amsgrad"], max_v=state.get("max_exp_avg_sq"),
                       maximize=group["maximize"])


class AdamW(Adam):
    """Adam with decoupled weight decay (p *= 1 - lr weight_decay before the Adam step)."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)


# ---- RMSprop ------------------------------------------------------------------------------------------

class RMSprop(Optimizer):
    """RMSprop, PyTorch's rule: square_avg = alpha sa + (1-alpha) g^2; denominator
    sqrt(sa - grad_avg^2) (centered) or sqrt(sa), plus eps; optional momentum buffer."""

    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0, momentum: float = 0, centered: bool = False, *,
                 maximize: bool = False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, maximize=maximize))

    def _validate(self, g):
        super()._validate(g)
        for k in ("alpha", "eps", "weight_decay", "momentum"):
            _check("RMSprop", k, g[k])

    def _update(self, p, grad, group, state):
        if not state:
            xp = _xp(p.data)
            state.update(step=0, square_avg=xp.zeros_like(p.data))
            if group["momentum"] > 0:
                state["momentum_buffer"] = xp.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(p.data)
        state["step"] += 1
        ops.rmsprop_step_(p.data, grad, state["square_avg"], group["lr"], alpha=group["alpha"],
                          eps=group["eps"], weight_decay=group["weight_decay"],
                          momentum=group["momentum"], buf=state.get("momentum_buffer"),
                          centered=group["centered"], grad_avg=state.get("grad_avg"),
                          maximize=group["maximize"])


# ---- Adagrad ------------------------------------------------------------------------------------------

class Adagrad(Optimizer):
    """Adagrad, PyTorch's rule: sum += g^2; p -= clr g / (sqrt(sum) + eps) with
    clr = lr / (1 + (step - 1) lr_decay)."""

    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0, weight_decay: float = 0,
                 initial_accumulator_value: float = 0, eps: float = 1e-10, *, maximize: bool = False):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps,
                                      maximize=maximize))

    def _validate(self, g):
        super()._validate(g)
        for k in ("lr_decay", "weight_decay", "initial_accumulator_value", "eps"):
            _check("Adagrad", k, g[k])

    def _update(self, p, grad, group, state):
        if not state:
            xp = _xp(p.data)
            state.update(step=0, sum=xp.full_like(p.data, group["initial_accumulator_value"]))
        state["step"] += 1
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        ops.adagrad_step_(p.data, grad, state["sum"], clr, eps=group["eps"],
                          weight_decay=group["weight_decay"], maximize=group["maximize"])


# ---- gradient clipping --------------------------------------------------------------------------------

def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale the gradients of ``parameters`` in place so their joint norm is at most max_norm
    (PyTorch's rule: by max_norm / (total_norm + 1e-6) when that is < 1). Returns the total
    norm before clipping, as a float. Parameters without a gradient are skipped. A non-finite
    total raises RuntimeError when error_if_nonfinite, as in PyTorch."""
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    _check("clip_grad_norm_", "max_norm", max_norm)
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    return float(ops.clip_grad_norm_(grads, float(max_norm), norm_type=float(norm_type),
                                     error_if_nonfinite=error_if_nonfinite))
