"""Train an MLP on scikit-learn's bundled digits dataset (8x8 grey images of 0-9, no download).

    python -m fastdl demo mlp_digits [--epochs 40] [--no-torch]

Pipeline: standardize the 64 pixel features with the training split's statistics, a stratified
80/20 train/test split from a seed, a 64-128-64-10 MLP with ReLU and dropout, cross-entropy,
Adam, shuffled mini-batches from fastdl.data.DataLoader. Prints the loss and time of every epoch
and the test accuracy (>= 97% with the defaults). When PyTorch is installed, the same model,
starting from the same weights and fed the same batches, is trained with torch and its epoch
times are printed beside fastdl's.
"""

from __future__ import annotations

import time

import numpy as np

import fastdl
from fastdl import nn, optim
from fastdl.data import DataLoader

from . import progress, require_sklearn

EPOCHS, BATCH_SIZE, LR, HIDDEN, DROPOUT = 40, 32, 1e-3, (128, 64), 0.1


def load_data(seed: int = 0):
    """(x_train, y_train, x_test, y_test): float32 standardized features, int64 labels."""
    require_sklearn()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    mean, std = x_tr.mean(0), x_tr.std(0)
    std[std == 0] = 1.0  # border pixels that are always 0
    norm = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return norm(x_tr), y_tr.astype(np.int64), norm(x_te), y_te.astype(np.int64)


def build_model(in_features: int = 64, hidden=HIDDEN, classes: int = 10, dropout: float = DROPOUT):
    layers, width = [], in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, classes))


def accuracy(model, x, y) -> float:
    model.eval()
    with fastdl.no_grad():
        pred = model(x).numpy().argmax(1)
    model.train()
    return float((pred == y).mean())


def train(model, data, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR, seed=0, show_progress=True,
          log=print):
    """Train with Adam on shuffled mini-batches; returns per-epoch seconds and final test accuracy."""
    x_tr, y_tr, x_te, y_te = data
    opt = optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    loader = DataLoader(x_tr, y_tr, batch_size=batch_size, shuffle=True, seed=seed)
    times = []
    for epoch in range(1, epochs + 1):
        t0, total = time.perf_counter(), 0.0
        for xb, yb in progress(loader, len(loader), f"epoch {epoch}/{epochs}", show_progress):
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
        times.append(time.perf_counter() - t0)
        if log:
            log(f"  epoch {epoch:3d}/{epochs}  loss {total / len(y_tr):.4f}  "
                f"{times[-1] * 1e3:7.1f} ms")
    return {"epoch_times": times, "test_accuracy": accuracy(model, x_te, y_te)}


def train_torch(state_dict, data, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR, seed=0,
                hidden=HIDDEN, dropout=DROPOUT):
    """The same model in PyTorch, from the same initial weights, on the same batch sequence."""
    import torch

    torch.set_num_threads(fastdl.get_num_threads())
    torch.manual_seed(seed)
    layers, width = [], data[0].shape[1]
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
        width = h
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    x_tr, y_tr, x_te, y_te = data
    loader = DataLoader(x_tr, y_tr, batch_size=batch_size, shuffle=True, seed=seed)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(torch.from_numpy(xb)), torch.from_numpy(yb))
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
    return {"epoch_times": times, "test_accuracy": acc}


def _median_ms(times):
    return 1e3 * float(np.median(times))


def run(epochs=None, seed: int = 0, compare_torch: bool = True, progress: bool = True,
        batch_size: int = BATCH_SIZE, lr: float = LR, log=print) -> dict:
    epochs = EPOCHS if epochs is None else epochs
    data = load_data(seed)
    x_tr, _, x_te, _ = data
    log(f"digits: {len(x_tr)} train / {len(x_te)} test images, 64 features, 10 classes; "
        f"MLP 64-{'-'.join(map(str, HIDDEN))}-10, Adam lr={lr}, batch {batch_size}, {epochs} epochs, "
        f"{fastdl.get_num_threads()} thread(s), CPU ISA {fastdl.info()['cpu_isa']}")
    fastdl.manual_seed(seed)
    model = build_model()
    init = {k: np.array(v) for k, v in model.state_dict().items()}
    result = train(model, data, epochs, batch_size, lr, seed, progress, log)
    result["model"] = model
    log(f"fastdl   test accuracy {result['test_accuracy']:.2%}   "
        f"median epoch {_median_ms(result['epoch_times']):.1f} ms")
    torch_result = None
    if compare_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            log("(PyTorch is not installed: no comparison)")
        else:
            torch_result = train_torch(init, data, epochs, batch_size, lr, seed)
            f_ms, t_ms = _median_ms(result["epoch_times"]), _median_ms(torch_result["epoch_times"])
            log(f"pytorch  test accuracy {torch_result['test_accuracy']:.2%}   "
                f"median epoch {t_ms:.1f} ms")
            log(f"per-epoch time  fastdl {f_ms:.1f} ms  vs  PyTorch {t_ms:.1f} ms  "
                f"(fastdl is {t_ms / f_ms:.2f}x PyTorch's speed)")
    result["torch"] = torch_result
    return result
