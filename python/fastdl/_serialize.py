"""``fastdl.save`` / ``fastdl.load``: state dicts (nested dicts of arrays) to and from ``.npz``.

Nothing is pickled: every leaf is stored as a plain NumPy array and the file is read with
``allow_pickle=False``, so loading a file never runs code. Nesting is kept in the member names,
joined with "/" (so keys must be strings without "/"); an empty dict is kept as a marker entry.
Leaves may be NumPy or CuPy arrays, Tensors, numbers, bools, strings, or lists/tuples of
numbers; a list of dicts comes back as a list; ``load`` gives every leaf back as a NumPy array (0-d for scalars) and dict order is kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from . import _backend

__all__ = ["save", "load"]

_SEP = "/"
_EMPTY = "__empty_dict__"
_LIST = "__list__"  # marks a list of dicts (an optimizer's param_groups), stored as "0", "1", ...


def _leaf(key: str, v) -> np.ndarray:
    from .tensor import Tensor

    if isinstance(v, Tensor):
        v = v.data
    if _backend.is_cuda_array(v):
        v = _backend.cupy().asnumpy(v)
    if v is None or callable(v):
        raise TypeError(f"save: {key!r} is {type(v).__name__}; only arrays, numbers, strings and "
                        f"dicts of them can be saved")
    try:
        a = np.asarray(v)
    except (TypeError, ValueError) as e:
        raise TypeError(f"save: cannot store {key!r} ({type(v).__name__}) as an array: {e}") from None
    if a.dtype.hasobject:
        raise TypeError(f"save: {key!r} ({type(v).__name__}) is not a plain numeric/string array")
    return a


def _flatten(obj: Mapping, prefix: str, out: dict) -> None:
    if not obj and prefix:
        out[prefix + _EMPTY] = np.zeros(0, np.uint8)
    for k, v in obj.items():
        if not isinstance(k, (str, int, np.integer)) or isinstance(k, bool):
            raise TypeError(f"save: dict keys must be str or int, got {type(k).__name__} ({k!r})")
        k = str(k)
        if not k or _SEP in k or k in (_EMPTY, _LIST):
            raise ValueError(f"save: key {k!r} at {prefix or 'top level'} must be non-empty and "
                             f"must not contain {_SEP!r}")
        name = prefix + k
        if isinstance(v, Mapping):
            _flatten(v, name + _SEP, out)
        elif isinstance(v, (list, tuple)) and any(isinstance(e, Mapping) for e in v):
            out[name + _SEP + _LIST] = np.zeros(0, np.uint8)
            _flatten(dict(enumerate(v)), name + _SEP, out)
        else:
            out[name] = _leaf(name, v)


def save(obj: Mapping, path) -> None:
    """Write a (nested) dict of arrays, e.g. ``model.state_dict()``, to ``path`` (.npz)."""
    if not isinstance(obj, Mapping):
        raise TypeError(f"save: obj must be a dict (a state dict), got {type(obj).__name__}")
    flat: dict = {}
    _flatten(obj, "", flat)
    with open(os.fspath(path), "wb") as f:  # a file object: NumPy would append .npz to a name
        np.savez(f, **flat)


def load(path) -> dict:
    """Read what ``save`` wrote: nested dicts (str keys) of NumPy arrays, in the saved order."""
    out: dict = {}
    with np.load(os.fspath(path), allow_pickle=False) as z:
        for name in z.files:
            *parents, last = name.split(_SEP)
            d = out
            for p in parents:
                d = d.setdefault(p, {})
            if last != _EMPTY:
                d[last] = z[name]
    return _lists(out)


def _lists(d):
    if not isinstance(d, dict):
        return d
    if _LIST in d:
        return [_lists(d[str(i)]) for i in range(len(d) - 1)]
    return {k: _lists(v) for k, v in d.items()}
