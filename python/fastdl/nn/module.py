"""Module, Parameter and the containers (Sequential, ModuleList).

A Module finds its parameters, buffers and submodules by looking at its own attributes (no
registration calls needed), in assignment order, and names them as PyTorch does: ``"weight"``,
``"0.weight"`` in a Sequential, ``"encoder.layers.1.bias"``. So a PyTorch state dict converted to
NumPy arrays loads into the same architecture built with fastdl.nn.
"""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from .. import _backend
from ..tensor import Tensor, _to_device

__all__ = ["Parameter", "Module", "Sequential", "ModuleList", "StateDictError"]


class Parameter(Tensor):
    """A leaf Tensor that a Module owns and an optimizer updates: requires_grad=True by default."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class StateDictError(ValueError, RuntimeError):
    """load_state_dict found missing/unexpected keys or mismatched shapes. It is a ValueError
    (fastdl's convention for bad values) and a RuntimeError (what PyTorch raises)."""


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer: subclasses set attributes and define ``forward``.

    Attributes that are Parameters become parameters, Modules become submodules, and names given
    to ``register_buffer`` become buffers (state that is saved but not trained).
    """

    training = True

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # -- traversal --
    def register_buffer(self, name: str, array, persistent: bool = True) -> None:
        """Keep `array` (a NumPy/CuPy array, a Tensor's array, or None) as state that is not
        trained: moved and cast by ``to()`` (floating buffers only), saved in ``state_dict``
        unless persistent=False, skipped everywhere while None (PyTorch's rules)."""
        if not isinstance(name, str) or not name or "." in name:
            raise ValueError(f"register_buffer: name must be a non-empty str without '.', got {name!r}")
        if name in self.__dict__ and name not in self.__dict__.get("_buffer_names", ()):
            raise ValueError(f"register_buffer: {type(self).__name__} already has an attribute "
                             f"{name!r} that is not a buffer")
        if isinstance(array, Tensor):
            array = array.data
        if array is not None and not isinstance(array, np.ndarray) and not _backend.is_cuda_array(array):
            raise TypeError(f"register_buffer: {name!r} must be an array (NumPy or CuPy), a Tensor "
                            f"or None, got {type(array).__name__}")
        names = self.__dict__.setdefault("_buffer_names", [])
        if name not in names:
            names.append(name)
        transient = self.__dict__.setdefault("_non_persistent", set())
        if persistent:
            transient.discard(name)
        else:
            transient.add(name)
        setattr(self, name, array)

    def named_children(self):
        for name, v in vars(self).items():
            if isinstance(v, Module):
                yield name, v

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (m for _, m in self.named_modules())

    def _own_parameters(self):
        for name, v in vars(self).items():
            if isinstance(v, Parameter):
                yield name, v

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """(name, Parameter) pairs, each Parameter once even if shared: a module's own first,
        then its children's, depth first (PyTorch's order)."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, m in mods:
            for name, p in m._own_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse: bool = True):
        """An iterator over the parameters (as in PyTorch; ``list(...)`` it to keep it)."""
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = ""):
        for mod_prefix, m in self.named_modules(prefix):
            for name in m.__dict__.get("_buffer_names", ()):
                if getattr(m, name) is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), getattr(m, name)

    def buffers(self):
        return (b for _, b in self.named_buffers())

    # -- modes and gradients --
    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            m.training = bool(mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient: None (the default, like PyTorch), or zeros."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    # -- state --
    def _state_slots(self):
        """(full name, owner module, attribute name, is_parameter) for everything in state_dict."""
        seen = set()
        for mod_prefix, m in self.named_modules():
            for name, p in m._own_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), m, name, True
            transient = m.__dict__.get("_non_persistent", ())
            for name in m.__dict__.get("_buffer_names", ()):
                if getattr(m, name) is not None and name not in transient:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), m, name, False

    def state_dict(self) -> "OrderedDict[str, object]":
        """Ordered name -> array (parameters, then persistent buffers, module by module),
        PyTorch's keys.

        The arrays are the live ones, shared with the module (as in PyTorch): copy them
        (``copy.deepcopy``) to keep a snapshot while training goes on.
        """
        out = OrderedDict()
        for key, m, name, is_param in self._state_slots():
            v = getattr(m, name)
            out[key] = v.data if is_param else v
        return out

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays (NumPy, CuPy, Tensors, or anything np.asarray accepts, e.g. a PyTorch CPU
        tensor) into the parameters and buffers, in place, casting to their dtype and device.

        Raises StateDictError listing every mismatched shape, and, when strict, every missing
        and unexpected key. Returns (missing_keys, unexpected_keys).
        """
        slots = {key: (m, name, is_param) for key, m, name, is_param in self._state_slots()}
        missing = [k for k in slots if k not in state_dict]
        unexpected = [k for k in state_dict if k not in slots]
        problems = []
        values = {}
        for key, (m, name, is_param) in slots.items():
            if key not in state_dict:
                continue
            dst = getattr(m, name)
            dst = dst.data if isinstance(dst, Tensor) else dst
            src = state_dict[key]
            src = src.data if isinstance(src, Tensor) else src
            try:
                src = _to_device(src, "cuda") if _backend.is_cuda_array(dst) else _to_device(src, "cpu")
                src = (_backend.cupy() if _backend.is_cuda_array(dst) else np).asarray(src)
            except (TypeError, ValueError) as e:
                problems.append(f"{key}: cannot convert {type(src).__name__} to an array ({e})")
                continue
            if tuple(src.shape) != tuple(dst.shape):
                problems.append(f"size mismatch for {key}: copying a param with shape "
                                f"{tuple(src.shape)} from the state dict, the shape in this "
                                f"model is {tuple(dst.shape)}")
                continue
            values[key] = (dst, src)
        if strict:
            if missing:
                problems.insert(0, "Missing key(s): " + ", ".join(map(repr, missing)))
            if unexpected:
                problems.insert(0, "Unexpected key(s): " + ", ".join(map(repr, unexpected)))
        if problems:
            raise StateDictError(f"Error(s) in loading state_dict for {type(self).__name__}:\n\t"
                                 + "\n\t".join(problems))
        for dst, src in values.values():
            dst[...] = src.astype(dst.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # -- device and dtype --
    def _apply(self, fn) -> "Module":
        for m in self.modules():
            for name, p in m._own_parameters():
                p.data = fn(p.data)
                if p.grad is not None:
                    p.grad = fn(p.grad)
            for name in m.__dict__.get("_buffer_names", ()):
                if getattr(m, name) is not None:
                    setattr(m, name, fn(getattr(m, name)))
        return self

    def to(self, device=None, dtype=None) -> "Module":
        """Move parameters and buffers to 'cpu' or 'cuda' and/or cast floating ones to dtype,
        in place (the Parameter objects stay the same, so an optimizer made before still works).
        ``to(np.float64)`` alone casts."""
        if device is not None and not isinstance(device, str):
            device, dtype = None, device
        if device not in (None, "cpu", "cuda"):
            raise ValueError(f"to(): device must be 'cpu' or 'cuda', got {device!r}")
        if device is not None:
            self._apply(lambda a: _to_device(a, device))
        if dtype is not None:
            dtype = np.dtype(dtype)
            if dtype.kind != "f":
                raise TypeError(f"to(): dtype must be a floating dtype, got {dtype}")
            self._apply(lambda a: a.astype(dtype) if a.dtype.kind == "f" else a)
        return self

    def cuda(self) -> "Module":
        return self.to("cuda")

    def cpu(self) -> "Module":
        return self.to("cpu")

    def float(self) -> "Module":
        return self.to(dtype=np.float32)

    def double(self) -> "Module":
        return self.to(dtype=np.float64)

    # -- printing --
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        kids = list(self.named_children())
        if not kids:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in kids]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


class ModuleList(Module):
    """A list of modules, named "0", "1", ... in parameter and state dict names."""

    def __init__(self, modules=()):
        self._n = 0
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> "ModuleList":
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: expected a Module, got {type(module).__name__}")
        setattr(self, str(self._n), module)
        self._n += 1
        return self

    @classmethod
    def _from_list(cls, modules):
        return cls(modules)

    def __len__(self):
        return self._n

    def __iter__(self):
        return (getattr(self, str(i)) for i in range(self._n))

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self._from_list(list(self)[i])
        if not -self._n <= i < self._n:
            raise IndexError(f"index {i} is out of range for {type(self).__name__} of length {self._n}")
        return getattr(self, str(i % self._n))


class Sequential(ModuleList):
    """Modules applied in order: ``Sequential(Linear(64, 128), ReLU(), Linear(128, 10))``."""

    def __init__(self, *modules):
        super().__init__(modules)

    @classmethod
    def _from_list(cls, modules):
        return cls(*modules)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x
