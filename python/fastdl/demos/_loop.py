"""The training loop the CNN demos share, once for fastdl and once for PyTorch, step for step
the same: Adam, a cosine learning-rate schedule over the epochs (stepped once per epoch), the
same mini-batches (a fastdl DataLoader from one seed feeds both), the same initial weights."""

from __future__ import annotations

import time

import numpy as np

import fastdl
from fastdl import nn, optim
from fastdl.data import DataLoader

from . import progress


def fit(model, loss_fn, arrays, epochs: int, batch_size: int, lr: float, seed: int,
        show_progress: bool = True, log=print, name: str = "fastdl") -> dict:
    """Train a fastdl model; loss_fn(model, xb, yb) -> scalar Tensor. Returns epoch_times and
    the mean training loss of every epoch."""
    opt = optim.Adam(model.parameters(), lr=lr)
    sched = optim.CosineAnnealingLR(opt, T_max=epochs)
    loader = DataLoader(*arrays, batch_size=batch_size, shuffle=True, seed=seed)
    times, losses = [], []
    model.train()
    for epoch in range(1, epochs + 1):
        t0, total = time.perf_counter(), 0.0
        for xb, yb in progress(loader, len(loader), f"{name} epoch {epoch}/{epochs}", show_progress):
            opt.zero_grad()
            loss = loss_fn(model, xb, yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
        sched.step()
        times.append(time.perf_counter() - t0)
        losses.append(total / len(arrays[0]))
        if log:
            log(f"  {name} epoch {epoch:3d}/{epochs}  loss {losses[-1]:.4f}  {times[-1]:6.2f} s")
    model.eval()
    return {"epoch_times": times, "losses": losses}


def fit_torch(model, loss_fn, arrays, epochs: int, batch_size: int, lr: float, seed: int,
              show_progress: bool = True, log=print) -> dict:
    """The same loop in PyTorch (model already holding fastdl's initial weights)."""
    import torch

    torch.set_num_threads(fastdl.get_num_threads())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loader = DataLoader(*arrays, batch_size=batch_size, shuffle=True, seed=seed)
    times, losses = [], []
    model.train()
    for epoch in range(1, epochs + 1):
        t0, total = time.perf_counter(), 0.0
        for xb, yb in progress(loader, len(loader), f"pytorch epoch {epoch}/{epochs}", show_progress):
            opt.zero_grad()
            loss = loss_fn(model, torch.from_numpy(xb), torch.from_numpy(yb))
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
        sched.step()
        times.append(time.perf_counter() - t0)
        losses.append(total / len(arrays[0]))
        if log:
            log(f"  pytorch epoch {epoch:3d}/{epochs}  loss {losses[-1]:.4f}  {times[-1]:6.2f} s")
    model.eval()
    return {"epoch_times": times, "losses": losses}


def torch_copy(torch_model, state_dict):
    """torch_model with fastdl's state dict (arrays) loaded: the same initial weights."""
    import torch

    torch_model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
    return torch_model


def have_torch(log=print) -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        if log:
            log("(PyTorch is not installed: no comparison)")
        return False
    return True


def median_s(times) -> float:
    return float(np.median(times))


def cross_entropy(model, xb, yb):
    """The demos' loss: mean cross entropy of model(xb) (logits, classes on axis 1) against yb."""
    return nn.functional.cross_entropy(model(xb), yb)


def torch_cross_entropy(model, xb, yb):
    """The same loss for the PyTorch twin of a demo's model."""
    import torch

    return torch.nn.functional.cross_entropy(model(xb), yb)
