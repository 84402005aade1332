"""Semantic segmentation of generated shapes with a small encoder-decoder CNN.

    python -m fastdl demo segmentation [--epochs 10] [--seed 0] [--no-torch] [--out DIR]

Data (made here from the seed, no download): 32x32 grey images of 1-3 shapes, each a circle, an
axis-aligned square or an upright triangle of random size, position and brightness, drawn in
turn (later shapes cover earlier ones) on a noisy background of random brightness; the label of
every pixel is 0 background, 1 circle, 2 square, 3 triangle. 1600 training and 400 test images
(the test images from their own stream of the seed).

Model: conv-BN-ReLU blocks, two MaxPool2d(2) steps down, two ConvTranspose2d(2, stride 2) steps
up, each added to the encoder's feature map of the same size (additive skips), a 1x1 conv to 4
classes; per-pixel cross-entropy (the (N, 4, H, W) logits' classes moved last), Adam with a
cosine schedule. Metric: mean intersection-over-union over the 4 classes (background included),
each class's IoU from its pixel counts over the whole test set (0.88-0.89 on seeds 0-2 with
the defaults, fastdl and PyTorch alike). When PyTorch is installed the
same model, from the same initial weights and batches, is trained in PyTorch for comparison.
With matplotlib, a PNG grid of images, true and predicted masks is written (--out, default the
current directory).
"""

from __future__ import annotations

import os

import numpy as np

import fastdl
from fastdl import nn

from ._loop import (cross_entropy, fit, fit_torch, have_torch, median_s, torch_copy,
                    torch_cross_entropy)

CLASSES = ("background", "circle", "square", "triangle")
SIZE, N_TRAIN, N_TEST = 32, 1600, 400
EPOCHS, BATCH_SIZE, LR, WIDTH = 10, 32, 3e-3, 16


# ---- data ---------------------------------------------------------------------------------------------

def _shape_mask(kind: int, cy: float, cx: float, r: float, yy, xx):
    if kind == 1:  # circle of radius r
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    if kind == 2:  # square of side 1.7 r (about the circle's area)
        h = 0.85 * r
        return (np.abs(yy - cy) <= h) & (np.abs(xx - cx) <= h)
    # upright isosceles triangle: apex at the top, base 2.4 r wide at cy + r
    top, bottom, half = cy - 1.2 * r, cy + r, 1.2 * r
    t = (yy - top) / (bottom - top)  # 0 at the apex, 1 at the base
    return (t >= 0) & (t <= 1) & (np.abs(xx - cx) <= t * half)


def make_shapes(n: int, seed: int = 0, size: int = SIZE):
    """(images float32 (n, 1, size, size), labels int64 (n, size, size)), from the seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images = np.empty((n, 1, size, size), np.float32)
    labels = np.zeros((n, size, size), np.int64)
    for i in range(n):
        background = rng.uniform(0.0, 0.4)
        img = background + rng.normal(0.0, 0.12, (size, size))
        for _ in range(rng.integers(1, 4)):
            kind = int(rng.integers(1, 4))
            r = rng.uniform(4.0, 8.0)
            cy, cx = rng.uniform(r, size - r, 2)
            mask = _shape_mask(kind, cy, cx, r, yy, xx)
            level = background + rng.uniform(0.3, 0.6)  # brighter than the background
            img[mask] = level + rng.normal(0.0, 0.12, int(mask.sum()))
            labels[i][mask] = kind
        images[i, 0] = img
    return images, labels


def load_data(seed: int = 0, n_train: int = N_TRAIN, n_test: int = N_TEST):
    """(x_train, y_train, x_test, y_test), the test set from its own seed stream."""
    x_tr, y_tr = make_shapes(n_train, seed=np.random.SeedSequence([seed, 0]).generate_state(1)[0])
    x_te, y_te = make_shapes(n_test, seed=np.random.SeedSequence([seed, 1]).generate_state(1)[0])
    return x_tr, y_tr, x_te, y_te


# ---- model -------------------------------------------------------------------------------------------------

def _block(m, c_in, c_out):
    return m.Sequential(m.Conv2d(c_in, c_out, 3, padding=1), m.BatchNorm2d(c_out), m.ReLU())


def _modules(m, width):
    """The encoder-decoder's modules for a namespace m (fastdl.nn or torch.nn); names match."""
    w = width
    return dict(
        enc1=_block(m, 1, w), down1=m.MaxPool2d(2),
        enc2=_block(m, w, 2 * w), down2=m.MaxPool2d(2),
        mid=_block(m, 2 * w, 4 * w),
        up2=m.ConvTranspose2d(4 * w, 2 * w, 2, stride=2), dec2=_block(m, 2 * w, 2 * w),
        up1=m.ConvTranspose2d(2 * w, w, 2, stride=2), dec1=_block(m, w, w),
        head=m.Conv2d(w, len(CLASSES), 1))


def _forward(net, x):
    e1 = net.enc1(x)
    e2 = net.enc2(net.down1(e1))
    mid = net.mid(net.down2(e2))
    d2 = net.dec2(net.up2(mid) + e2)
    d1 = net.dec1(net.up1(d2) + e1)
    return net.head(d1)


class SegNet(nn.Module):
    """Encoder-decoder: (N, 1, H, W) -> (N, 4, H, W) logits (H, W divisible by 4)."""

    def __init__(self, width: int = WIDTH):
        for name, mod in _modules(nn, width).items():
            setattr(self, name, mod)

    def forward(self, x):
        return _forward(self, x)


def build_model(width: int = WIDTH):
    return SegNet(width)


def build_torch_model(width: int = WIDTH):
    import torch

    class TorchSegNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for name, mod in _modules(torch.nn, width).items():
                setattr(self, name, mod)

        def forward(self, x):
            return _forward(self, x)

    return TorchSegNet()


# ---- metric, training ------------------------------------------------------------------------------------

def confusion(pred, truth, k: int = len(CLASSES)):
    """(k, k) pixel counts, rows the true class, columns the predicted one."""
    return np.bincount(truth.ravel() * k + pred.ravel(), minlength=k * k).reshape(k, k)


def iou(conf):
    """Per-class IoU = TP / (TP + FP + FN) from a confusion matrix (NaN for an absent class)."""
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / union


def predict(model, x, batch_size: int = 200):
    model.eval()
    with fastdl.no_grad():
        return np.concatenate([model(x[i:i + batch_size]).numpy().argmax(1)
                               for i in range(0, len(x), batch_size)])


def predict_torch(model, x, batch_size: int = 200):
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + batch_size])).argmax(1).numpy()
                               for i in range(0, len(x), batch_size)])


def _scores(pred, truth) -> dict:
    per_class = iou(confusion(pred, truth))
    return {"iou": dict(zip(CLASSES, map(float, per_class))), "mean_iou": float(np.nanmean(per_class)),
            "pixel_accuracy": float((pred == truth).mean())}


def train(model, data, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR, seed=0, show_progress=True,
          log=print) -> dict:
    x_tr, y_tr, x_te, y_te = data
    out = fit(model, cross_entropy, (x_tr, y_tr), epochs, batch_size, lr, seed, show_progress, log)
    out["pred"] = predict(model, x_te)
    out.update(_scores(out["pred"], y_te))
    return out


def train_torch(state_dict, data, epochs=EPOCHS, batch_size=BATCH_SIZE, lr=LR, seed=0,
                show_progress=True, log=print, width=WIDTH) -> dict:
    x_tr, y_tr, x_te, y_te = data
    model = torch_copy(build_torch_model(width), state_dict)
    out = fit_torch(model, torch_cross_entropy, (x_tr, y_tr), epochs, batch_size, lr, seed,
                    show_progress, log)
    out["pred"] = predict_torch(model, x_te)
    out.update(_scores(out["pred"], y_te))
    return out


def save_grid(path, images, truth, pred, n: int = 6):
    """A PNG: n rows of image / true mask / predicted mask; returns the path, or None without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    n = min(n, len(images))
    fig, axes = plt.subplots(n, 3, figsize=(6, 2 * n), squeeze=False)
    for i in range(n):
        for j, (a, title, kw) in enumerate([
                (images[i, 0], "image", dict(cmap="gray")),
                (truth[i], "truth", dict(cmap="viridis", vmin=0, vmax=len(CLASSES) - 1)),
                (pred[i], "prediction", dict(cmap="viridis", vmin=0, vmax=len(CLASSES) - 1))]):
            axes[i, j].imshow(a, interpolation="nearest", **kw)
            axes[i, j].set_axis_off()
            if i == 0:
                axes[i, j].set_title(title)
    fig.suptitle("0 background, 1 circle, 2 square, 3 triangle", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _fmt(r) -> str:
    per = ", ".join(f"{k} {v:.3f}" for k, v in r["iou"].items())
    return f"mean IoU {r['mean_iou']:.3f} ({per}), pixel accuracy {r['pixel_accuracy']:.2%}"


def run(epochs=None, seed: int = 0, compare_torch: bool = True, progress: bool = True,
        batch_size: int = BATCH_SIZE, lr: float = LR, n_train: int = N_TRAIN, n_test: int = N_TEST,
        out=None, log=print) -> dict:
    """Generate the data, train, score (and compare with PyTorch); out: a directory or a .png
    path for the grid (default: segmentation.png in the current directory)."""
    epochs = EPOCHS if epochs is None else epochs
    data = load_data(seed, n_train, n_test)
    log(f"shapes: {n_train} train / {n_test} test {SIZE}x{SIZE} images (seed {seed}), classes "
        f"{', '.join(CLASSES)}; encoder-decoder width {WIDTH}, Adam lr={lr} cosine, batch "
        f"{batch_size}, {epochs} epochs, {fastdl.get_num_threads()} thread(s), CPU ISA "
        f"{fastdl.info()['cpu_isa']}")
    fastdl.manual_seed(seed)
    model = build_model()
    init = {k: np.array(v) for k, v in model.state_dict().items()}
    result = train(model, data, epochs, batch_size, lr, seed, progress, log)
    result["model"] = model
    f_s = median_s(result["epoch_times"])
    log(f"fastdl   {_fmt(result)}   median epoch {f_s:.2f} s")
    path = out if out is not None else "."
    if not str(path).endswith(".png"):
        path = os.path.join(path, "segmentation.png")
    result["png"] = save_grid(path, data[2], data[3], result["pred"])
    log(f"wrote {result['png']} (image / truth / prediction)" if result["png"] else
        "(matplotlib is not installed: no picture)")
    result["torch"] = None
    if compare_torch and have_torch(log):
        t = result["torch"] = train_torch(init, data, epochs, batch_size, lr, seed, progress, log)
        t_s = median_s(t["epoch_times"])
        log(f"pytorch  {_fmt(t)}   median epoch {t_s:.2f} s")
        log(f"mean IoU fastdl {result['mean_iou']:.3f} vs PyTorch {t['mean_iou']:.3f} "
            f"(difference {result['mean_iou'] - t['mean_iou']:+.3f}); per-epoch time fastdl "
            f"{f_s:.2f} s vs PyTorch {t_s:.2f} s (fastdl is {t_s / f_s:.2f}x PyTorch's speed)")
        result["speedup"] = t_s / f_s
    return result
