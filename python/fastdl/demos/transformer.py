"""A small transformer encoder learns to sort (or reverse) digit strings generated on the fly.

    python -m fastdl demo transformer [--steps 600] [--epochs E] [--seed 0] [--threads N]
                                      [--no-torch] [--no-progress]

Data (nothing downloaded): every training step draws a fresh batch of BATCH strings of LENGTH
random digits 0-9 from a seeded generator; the target at position i is the i-th smallest digit
of the string (task "sort", the default) or the digit at position LENGTH-1-i ("reverse"). The
model sees the whole input at once and predicts every output position in parallel, so each
position must gather from the others what belongs there: sorting needs to count, for each
output rank, how many digits fall below each value, which one attention layer cannot do in one
look. Accuracy is measured on 2000 held-out strings drawn from a separate seed.

Model (batch_first, d_model D_MODEL, 4 heads, feed-forward 4 x D_MODEL, no dropout):

    Embedding(10, D) -> PositionalEncoding(D) -> TransformerEncoderLayer x 2 -> Linear(D, 10)

Per-token cross entropy, Adam (lr LR, linear warm-up over the first WARMUP steps, then cosine
decay to 0). The default settings reach >= 99% token accuracy on the held-out strings (seeds
0, 1, 2: 99.99%, 99.98%, 99.99%, >= 99.9% from step 200 on; benchmarks/RESULTS.md). An "epoch" (--epochs) is EPOCH_STEPS steps of
fresh batches; --steps sets the count directly.

When PyTorch is installed, the same model (the same initial weights, through the state dict; the
positional table copied) is trained in PyTorch on the same first TORCH_STEPS batches, each
PyTorch step right after the fastdl step on that batch (so both are timed under the same machine
load), and the median times per training step (forward, backward, Adam) over those steps but
the first TIMING_SKIP (warm-up) are printed with the ratio.
"""

from __future__ import annotations

import math
import time

import numpy as np

import fastdl
from fastdl import nn, optim

from . import progress as _progress
from ._loop import have_torch, median_s

VOCAB = 10
LENGTH, BATCH, D_MODEL, NHEAD, LAYERS = 12, 64, 64, 4, 2
STEPS, LR, WARMUP, EPOCH_STEPS = 600, 3e-3, 50, 100
TORCH_STEPS, TIMING_SKIP, EVAL_SIZE, EVAL_SEED_OFFSET = 30, 5, 2000, 10_000
TASKS = ("sort", "reverse")


# ---- data ---------------------------------------------------------------------------------------------

def make_batch(rng: np.random.Generator, batch: int, length: int, task: str = "sort"):
    """(inputs, targets), int64 (batch, length): random digit strings and their sorted (or
    reversed) versions."""
    x = rng.integers(0, VOCAB, (batch, length), dtype=np.int64)
    y = np.sort(x, axis=1) if task == "sort" else np.ascontiguousarray(x[:, ::-1])
    return x, y


# ---- models --------------------------------------------------------------------------------------------

def _ff(d_model: int) -> int:
    return 4 * d_model


class DigitTransformer(nn.Module):
    """Embedding -> sinusoidal positions -> encoder layers -> per-position logits: (N, L) ids ->
    (N, L, VOCAB)."""

    def __init__(self, d_model: int = D_MODEL, nhead: int = NHEAD, layers: int = LAYERS,
                 max_len: int = 64):
        self.embed = nn.Embedding(VOCAB, d_model)
        self.pos = nn.PositionalEncoding(d_model, max_len=max_len, batch_first=True)
        layer = nn.TransformerEncoderLayer(d_model, nhead, _ff(d_model), dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers)
        self.head = nn.Linear(d_model, VOCAB)

    def forward(self, ids):
        return self.head(self.encoder(self.pos(self.embed(ids))))


def build_torch_model(d_model: int = D_MODEL, nhead: int = NHEAD, layers: int = LAYERS,
                      max_len: int = 64):
    """The same architecture in PyTorch (the positional table is fastdl's, as a buffer)."""
    import torch

    table = torch.from_numpy(nn.PositionalEncoding(d_model, max_len).pe.astype(np.float32))

    class TorchDigitTransformer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(VOCAB, d_model)
            self.register_buffer("pe", table, persistent=False)
            layer = torch.nn.TransformerEncoderLayer(d_model, nhead, _ff(d_model), dropout=0.0,
                                                     batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.head = torch.nn.Linear(d_model, VOCAB)

        def forward(self, ids):
            x = self.embed(ids) + self.pe[: ids.shape[1]]
            return self.head(self.encoder(x))

    return TorchDigitTransformer()


# ---- training -------------------------------------------------------------------------------------------

def lr_at(step: int, steps: int, lr: float, warmup: int = WARMUP) -> float:
    """Linear warm-up to lr over `warmup` steps, then cosine decay to 0 at `steps`."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


class Trainer:
    """One training step at a time for a fastdl DigitTransformer: zero_grad, forward, per-token
    cross entropy, backward, Adam. ``step(x, y, lr)`` returns (loss, seconds)."""

    def __init__(self, model, lr: float = LR):
        self.model = model
        self.opt = optim.Adam(model.parameters(), lr=lr)
        model.train()

    def step(self, x, y, lr: float):
        t0 = time.perf_counter()
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad()
        logits = self.model(x)
        loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        self.opt.step()
        return loss.item(), time.perf_counter() - t0


class TorchTrainer:
    """The same step for the same model in PyTorch, from fastdl's initial weights (a state dict
    of arrays), with fastdl's thread count."""

    def __init__(self, state_dict, lr: float = LR, **sizes):
        import torch

        self.torch = torch
        torch.set_num_threads(fastdl.get_num_threads())
        self.model = build_torch_model(**sizes)
        self.model.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in state_dict.items()})
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.model.train()

    def step(self, x, y, lr: float):
        torch = self.torch
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        t0 = time.perf_counter()
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.zero_grad()
        logits = self.model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        loss.backward()
        self.opt.step()
        return loss.item(), time.perf_counter() - t0


def accuracy(model, x, y, batch: int = 500):
    """(token accuracy, whole-string accuracy) of model's argmax predictions (under no_grad)."""
    model.eval()
    preds = []
    with fastdl.no_grad():
        for i in range(0, len(x), batch):
            preds.append(model(x[i:i + batch]).numpy().argmax(-1))
    model.train()
    pred = np.concatenate(preds)
    return float((pred == y).mean()), float((pred == y).all(axis=1).mean())


def torch_accuracy(model, x, y):
    import torch

    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(-1).numpy()
    model.train()
    return float((pred == y).mean()), float((pred == y).all(axis=1).mean())


def train(trainer, steps: int, rng, batch: int, length: int, task: str, lr: float,
          twin=None, twin_steps: int = 0, show_progress: bool = True, eval_data=None,
          eval_every: int = 100) -> dict:
    """Run `steps` steps on fresh batches from rng; the first twin_steps of them are each followed
    by the same step of `twin` (PyTorch) on the same batch, timed back to back. Returns
    step_times, losses, the held-out accuracy curve [(step, token acc)] and the twin's times
    and losses under "torch" (or None)."""
    out = {"step_times": [], "losses": [], "curve": []}
    theirs = {"step_times": [], "losses": []} if twin is not None and twin_steps > 0 else None
    bar = _progress(range(steps), steps, f"transformer ({task})", show_progress)
    for k in bar:
        x, y = make_batch(rng, batch, length, task)
        rate = lr_at(k, steps, lr)
        loss, dt = trainer.step(x, y, rate)
        out["losses"].append(loss)
        out["step_times"].append(dt)
        if theirs is not None and k < twin_steps:
            loss_t, dt_t = twin.step(x, y, rate)
            theirs["losses"].append(loss_t)
            theirs["step_times"].append(dt_t)
        if eval_data is not None and ((k + 1) % eval_every == 0 or k + 1 == steps):
            out["curve"].append((k + 1, accuracy(trainer.model, *eval_data)[0]))
        if hasattr(bar, "set_postfix") and k % 10 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")
    trainer.model.eval()
    out["torch"] = theirs
    return out


def run(epochs=None, seed: int = 0, compare_torch: bool = True, progress: bool = True,
        steps=None, task: str = "sort", length: int = LENGTH, batch: int = BATCH,
        d_model: int = D_MODEL, nhead: int = NHEAD, layers: int = LAYERS, lr: float = LR,
        torch_steps: int = TORCH_STEPS, eval_size: int = EVAL_SIZE, log=print) -> dict:
    """Train (and time PyTorch beside it). steps (default STEPS) or epochs (x EPOCH_STEPS steps)
    sets the length; task "sort" or "reverse"."""
    if task not in TASKS:
        raise ValueError(f"transformer demo: task must be one of {TASKS}, got {task!r}")
    if steps is None:
        steps = STEPS if epochs is None else epochs * EPOCH_STEPS
    sizes = dict(d_model=d_model, nhead=nhead, layers=layers, max_len=max(64, length))
    log(f"transformer: {task} strings of {length} random digits (fresh batches of {batch} each "
        f"step, {eval_size} held-out strings); Embedding(10, {d_model}) + PositionalEncoding + "
        f"{layers} x TransformerEncoderLayer(d_model={d_model}, nhead={nhead}, "
        f"dim_feedforward={_ff(d_model)}) + Linear({d_model}, 10); Adam lr={lr} (warm-up "
        f"{WARMUP}, cosine), {steps} steps, {fastdl.get_num_threads()} thread(s), CPU ISA "
        f"{fastdl.info()['cpu_isa']}")
    fastdl.manual_seed(seed)
    model = DigitTransformer(**sizes)
    eval_data = make_batch(np.random.default_rng(seed + EVAL_SEED_OFFSET), eval_size, length, task)
    twin, n = None, min(torch_steps, steps)
    if compare_torch and n > 0 and have_torch(log):
        twin = TorchTrainer({k: np.array(a) for k, a in model.state_dict().items()}, lr, **sizes)
        log(f"(the first {n} steps are each followed by the same step in PyTorch, timed back "
            f"to back)")
    rng = np.random.default_rng(seed)
    result = train(Trainer(model, lr), steps, rng, batch, length, task, lr, twin, n, progress,
                   eval_data, eval_every=max(1, steps // 6))
    result["model"] = model
    tok, seq = accuracy(model, *eval_data)
    result["token_accuracy"], result["sequence_accuracy"] = tok, seq
    log("held-out token accuracy:")
    for step, acc in result["curve"]:
        log(f"  step {step:5d}  {acc:7.2%}  " + "#" * max(1, round(acc * 40)))
    f_s = median_s(result["step_times"])
    log(f"fastdl   token accuracy {tok:.2%}, whole strings {seq:.2%}; final loss "
        f"{np.mean(result['losses'][-20:]):.4f}; median step {f_s * 1e3:.1f} ms over {steps} steps")
    t = result["torch"]
    if t is not None:
        skip = TIMING_SKIP if n > 2 * TIMING_SKIP else 0  # the first steps warm caches up
        t_s, f_n = median_s(t["step_times"][skip:]), median_s(result["step_times"][skip:n])
        log(f"pytorch  the same model, weights and first {n} batches: loss after {n} steps "
            f"{t['losses'][-1]:.4f} (fastdl {result['losses'][n - 1]:.4f})")
        log(f"time per training step (median of interleaved steps {skip + 1}-{n})  fastdl "
            f"{f_n * 1e3:.1f} ms  vs  PyTorch {t_s * 1e3:.1f} ms  (fastdl is {t_s / f_n:.2f}x "
            f"PyTorch's speed)")
        result["speedup"] = t_s / f_n
    return result
