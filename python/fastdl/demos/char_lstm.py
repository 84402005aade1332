"""A character-level LSTM language model trained on the standard library's own documentation.

    python -m fastdl demo char_lstm [--steps 500] [--epochs E] [--seed 0] [--threads N]
                                    [--no-torch] [--out DIR]

Data (nothing downloaded): the docstrings of a fixed list of standard-library modules, each
module's own followed by those of its public classes, functions and methods in sorted order
(inspect.getdoc), kept to printable ASCII and newlines: about 0.5 MB of English and code with
a vocabulary of ~96 characters. The last 5% is held out for validation; the rest is cut into
BATCH parallel streams, read in chunks of SEQ characters.

Model: Embedding(V, 64) -> LSTM(64, 256) -> Linear(256, V), next-character cross entropy.
Training is truncated backpropagation through time: the hidden state is carried from one chunk
to the next and detached, so gradients flow SEQ steps back. Adam (lr 3e-3), gradients clipped
to norm 1 (fastdl.optim.clip_grad_norm_). The loss falls from ln(V) = 4.56 nats/char to 1.61
(train, last 20 steps) / 1.63 (validation) in the default 500 steps (seed 0; the whole demo
takes ~40 s on 2 cores). A loss curve is printed (and, with
matplotlib, saved as char_lstm.png in --out), then a text sample drawn at temperature 0.8 from
a seeded generator.

When PyTorch is installed, the same model (the same initial weights, through the state dict)
is trained in PyTorch on the same first TORCH_STEPS batches, each PyTorch step right after the
fastdl step on that batch (so both are timed under the same machine load), and the median times
per training step (forward, backward, clipping, Adam) are printed with the ratio.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import os
import time
import warnings

import numpy as np

import fastdl
from fastdl import nn, optim

from . import progress as _progress
from ._loop import have_torch, median_s

# The modules whose documentation is the corpus, in this order (one that fails to import, e.g.
# a Python built without it, is skipped).
MODULES = (
    "string", "textwrap", "collections", "functools", "itertools", "heapq", "bisect", "random",
    "statistics", "fractions", "json", "csv", "argparse", "logging", "pathlib", "shutil",
    "subprocess", "threading", "queue", "datetime", "calendar", "difflib", "pprint", "enum",
    "dataclasses", "contextlib", "abc", "typing", "inspect", "unittest", "doctest", "zipfile",
    "tarfile", "gzip", "base64", "hashlib", "urllib.parse", "email.message", "http.client",
    "socket", "selectors", "tempfile", "glob", "fnmatch", "operator", "copy", "pickle", "shelve",
    "decimal", "numbers", "re", "os", "io", "weakref", "types", "ast", "dis", "tokenize",
    "traceback", "warnings", "configparser", "optparse", "getopt", "locale", "gettext", "codecs",
    "struct", "uuid", "ipaddress", "secrets", "hmac", "platform", "sysconfig", "pydoc", "trace",
    "timeit", "cProfile", "pstats",
)
EMBED, HIDDEN, LAYERS = 64, 256, 1
BATCH, SEQ, STEPS, LR, CLIP = 32, 64, 500, 3e-3, 1.0
TORCH_STEPS, VAL_FRACTION, TEMPERATURE = 30, 0.05, 0.8


# ---- data ---------------------------------------------------------------------------------------

def _docs(obj):
    doc = inspect.getdoc(obj)
    return [doc] if doc else []


@functools.lru_cache(maxsize=4)
def load_text(modules=MODULES) -> str:
    """The corpus: docstrings of `modules` (a tuple), deterministic order, printable ASCII and
    newlines."""
    parts = []
    with warnings.catch_warnings():  # some modules warn on import or attribute access
        warnings.simplefilter("ignore")
        for name in modules:
            try:
                mod = importlib.import_module(name)
            except ImportError:
                continue
            parts += _docs(mod)
            members = vars(mod)
            for attr in sorted(members):
                obj = members[attr]
                if (attr.startswith("_") or getattr(obj, "__module__", None) != mod.__name__
                        or not (inspect.isclass(obj) or inspect.isfunction(obj))):
                    continue
                parts += _docs(obj)
                if inspect.isclass(obj):
                    for meth in sorted(vars(obj)):
                        if not meth.startswith("_") and inspect.isfunction(vars(obj)[meth]):
                            parts += _docs(vars(obj)[meth])
    text = "\n\n".join(parts)
    return "".join(c for c in text if c == "\n" or " " <= c <= "~")


class Corpus:
    """The text as int64 character ids: a vocabulary, the training streams, the held-out tail."""

    def __init__(self, text: str, batch: int = BATCH, seq: int = SEQ,
                 val_fraction: float = VAL_FRACTION):
        self.chars = sorted(set(text))
        self.index = {c: i for i, c in enumerate(self.chars)}
        ids = np.frombuffer(text.encode("ascii"), np.uint8)
        lut = np.zeros(128, np.int64)
        lut[[ord(c) for c in self.chars]] = np.arange(len(self.chars))
        ids = lut[ids]
        n_val = max(int(len(ids) * val_fraction), seq + 1)
        self.val = ids[-n_val:]
        train = ids[:-n_val]
        length = (len(train) - 1) // batch
        if length < seq:
            raise ValueError(f"char_lstm: the text ({len(text)} characters) is too short for "
                             f"batch {batch} x seq {seq}")
        # stream b is train[b*length : (b+1)*length + 1]; chunk k of it feeds step k
        self.streams = np.stack([train[b * length: (b + 1) * length + 1] for b in range(batch)])
        self.batch, self.seq = batch, seq
        self.steps_per_epoch = length // seq

    vocab_size = property(lambda self: len(self.chars))

    def chunk(self, step: int):
        """(inputs, targets), each (SEQ, BATCH) int64 time-major, of training step `step` (the
        streams wrap around after each epoch; the hidden state is reset there)."""
        k = step % self.steps_per_epoch
        block = self.streams[:, k * self.seq: (k + 1) * self.seq + 1].T
        return np.ascontiguousarray(block[:-1]), np.ascontiguousarray(block[1:])

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


# ---- models -------------------------------------------------------------------------------------

class CharLSTM(nn.Module):
    """Embedding -> LSTM -> Linear over the vocabulary; time-major (T, N) ids -> (T, N, V)."""

    def __init__(self, vocab: int, embed: int = EMBED, hidden: int = HIDDEN, layers: int = LAYERS):
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, layers)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        y, state = self.lstm(self.embed(ids), state)
        return self.head(y), state


def build_torch_model(vocab: int, embed: int = EMBED, hidden: int = HIDDEN, layers: int = LAYERS):
    import torch

    class TorchCharLSTM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(vocab, embed)
            self.lstm = torch.nn.LSTM(embed, hidden, layers)
            self.head = torch.nn.Linear(hidden, vocab)

        def forward(self, ids, state=None):
            y, state = self.lstm(self.embed(ids), state)
            return self.head(y), state

    return TorchCharLSTM()


# ---- training -----------------------------------------------------------------------------------

class Trainer:
    """One truncated-BPTT training step at a time for a fastdl CharLSTM: zero_grad, forward from
    the carried state, cross entropy, backward, clip_grad_norm_, Adam, carry the detached state.
    ``step(k)`` trains on chunk k and returns (loss, seconds)."""

    def __init__(self, model, corpus: Corpus, lr: float = LR, clip: float = CLIP):
        self.model, self.corpus, self.clip = model, corpus, clip
        self.params = list(model.parameters())
        self.opt = optim.Adam(self.params, lr=lr)
        self.state = None
        model.train()

    def step(self, k: int):
        x, y = self.corpus.chunk(k)
        if k % self.corpus.steps_per_epoch == 0:
            self.state = None  # the streams start over
        t0 = time.perf_counter()
        self.opt.zero_grad()
        logits, (h, c) = self.model(x, self.state)
        v = self.corpus.vocab_size
        loss = nn.functional.cross_entropy(logits.reshape(-1, v), y.reshape(-1))
        loss.backward()
        optim.clip_grad_norm_(self.params, self.clip)
        self.opt.step()
        self.state = (h.detach(), c.detach())  # truncated BPTT: carry the state, not its graph
        return loss.item(), time.perf_counter() - t0


class TorchTrainer:
    """The same step for the same model in PyTorch, from fastdl's initial weights (a state dict
    of arrays), with fastdl's thread count."""

    def __init__(self, state_dict, corpus: Corpus, lr: float = LR, clip: float = CLIP, **sizes):
        import torch

        self.torch, self.corpus, self.clip = torch, corpus, clip
        torch.set_num_threads(fastdl.get_num_threads())
        self.model = build_torch_model(corpus.vocab_size, **sizes)
        self.model.load_state_dict({k: torch.from_numpy(np.array(a))
                                    for k, a in state_dict.items()})
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.state = None
        self.model.train()

    def step(self, k: int):
        torch = self.torch
        x, y = (torch.from_numpy(a) for a in self.corpus.chunk(k))
        if k % self.corpus.steps_per_epoch == 0:
            self.state = None
        t0 = time.perf_counter()
        self.opt.zero_grad()
        logits, (h, c) = self.model(x, self.state)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, self.corpus.vocab_size),
                                                 y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.state = (h.detach(), c.detach())
        return loss.item(), time.perf_counter() - t0


def train(trainer, steps: int, twin=None, twin_steps: int = 0, show_progress: bool = True) -> dict:
    """Run `steps` steps of trainer; the first twin_steps of them are each followed by the same
    step of `twin` (PyTorch), so the two are timed back to back under the same machine load.
    Returns step_times (s) and losses (nats/char), and the twin's under "torch" (or None)."""
    out = {"step_times": [], "losses": []}
    theirs = {"step_times": [], "losses": []} if twin is not None and twin_steps > 0 else None
    bar = _progress(range(steps), steps, "char_lstm", show_progress)
    for k in bar:
        loss, dt = trainer.step(k)
        out["losses"].append(loss)
        out["step_times"].append(dt)
        if theirs is not None and k < twin_steps:
            loss_t, dt_t = twin.step(k)
            theirs["losses"].append(loss_t)
            theirs["step_times"].append(dt_t)
        if hasattr(bar, "set_postfix") and k % 10 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")
    trainer.model.eval()
    out["torch"] = theirs
    return out


def evaluate(model, ids, streams: int = 16, seq: int = 256) -> float:
    """Mean next-character cross entropy (nats/char) over `ids`, cut into `streams` parallel
    streams read in chunks of `seq` with the state carried (under no_grad)."""
    v = model.head.out_features
    length = (len(ids) - 1) // streams
    if length < 1:
        streams, length = 1, len(ids) - 1
    data = np.stack([ids[b * length: (b + 1) * length + 1] for b in range(streams)]).T
    total, count, state = 0.0, 0, None
    with fastdl.no_grad():
        for start in range(0, length, seq):
            block = data[start: start + seq + 1]
            x, y = np.ascontiguousarray(block[:-1]), np.ascontiguousarray(block[1:])
            logits, state = model(x, state)
            loss = nn.functional.cross_entropy(logits.reshape(-1, v), y.reshape(-1))
            total += loss.item() * y.size
            count += y.size
    return total / count


def sample(model, corpus: Corpus, length: int = 300, prime: str = "The ",
           temperature: float = TEMPERATURE, seed: int = 0) -> str:
    """Text from the model: prime it, then draw each next character from softmax(logits / T)
    with a seeded generator (one LSTM step per character, under no_grad)."""
    rng = np.random.default_rng(seed)
    prime = "".join(c for c in prime if c in corpus.index) or corpus.chars[0]
    ids = [corpus.index[c] for c in prime]
    out = list(prime)
    with fastdl.no_grad():
        logits, state = model(np.array(ids, np.int64)[:, None])
        for _ in range(length):
            z = logits.numpy()[-1, 0].astype(np.float64) / temperature
            p = np.exp(z - z.max())
            nxt = int(rng.choice(len(p), p=p / p.sum()))
            out.append(corpus.chars[nxt])
            logits, state = model(np.array([[nxt]], np.int64), state)
    return "".join(out)


# ---- reporting ----------------------------------------------------------------------------------

def loss_curve(losses, points: int = 10):
    """(step, mean loss of the steps up to it since the previous point) at ~`points` places."""
    n = len(losses)
    edges = sorted({max(1, round(n * k / points)) for k in range(1, points + 1)})
    out, prev = [], 0
    for e in edges:
        out.append((e, float(np.mean(losses[prev:e]))))
        prev = e
    return out


def save_curve(path, losses, torch_losses=None, val_loss=None):
    """A PNG of the training loss per step; returns the path, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(losses) + 1), losses, lw=0.8, label="fastdl (train)")
    if torch_losses:
        ax.plot(np.arange(1, len(torch_losses) + 1), torch_losses, lw=0.8, ls="--",
                label="PyTorch (train, same start)")
    if val_loss is not None:
        ax.axhline(val_loss, color="k", lw=0.6, ls=":", label=f"fastdl validation {val_loss:.2f}")
    ax.set_xlabel("training step")
    ax.set_ylabel("cross entropy (nats/char)")
    ax.set_title("char_lstm on the standard library's docstrings")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def run(epochs=None, seed: int = 0, compare_torch: bool = True, progress: bool = True,
        steps=None, out=None, batch: int = BATCH, seq: int = SEQ, hidden: int = HIDDEN,
        layers: int = LAYERS, embed: int = EMBED, lr: float = LR, torch_steps: int = TORCH_STEPS,
        sample_length: int = 300, text=None, log=print) -> dict:
    """Train (and time PyTorch beside it); steps (default STEPS) or epochs (passes over the
    training streams) sets the length; out: a directory or a .png path for the loss curve
    (default: char_lstm.png in the current directory); text replaces the corpus (tests)."""
    text = load_text() if text is None else text
    corpus = Corpus(text, batch, seq)
    if steps is None:
        steps = STEPS if epochs is None else epochs * corpus.steps_per_epoch
    v = corpus.vocab_size
    log(f"char_lstm: {len(text)} characters of standard-library docstrings, vocabulary {v}, "
        f"{len(corpus.val)} held out; Embedding({v}, {embed}) -> LSTM({embed}, {hidden}"
        f"{f', num_layers={layers}' if layers > 1 else ''}) -> Linear({hidden}, {v}); batch "
        f"{batch} x {seq} characters (truncated BPTT), Adam lr={lr}, clip {CLIP}, {steps} steps "
        f"({steps / corpus.steps_per_epoch:.2f} epochs), {fastdl.get_num_threads()} thread(s), "
        f"CPU ISA {fastdl.info()['cpu_isa']}")
    fastdl.manual_seed(seed)
    sizes = dict(embed=embed, hidden=hidden, layers=layers)
    model = CharLSTM(v, **sizes)
    twin, n = None, min(torch_steps, steps)
    if compare_torch and n > 0 and have_torch(log):
        twin = TorchTrainer({k: np.array(a) for k, a in model.state_dict().items()}, corpus, lr,
                            CLIP, **sizes)
        log(f"(the first {n} steps are each followed by the same step in PyTorch, timed back "
            f"to back)")
    result = train(Trainer(model, corpus, lr, CLIP), steps, twin, n, progress)
    result["model"], result["corpus"] = model, corpus
    result["val_loss"] = evaluate(model, corpus.val)
    log(f"loss (nats/char; ln(V) = {math.log(v):.2f} at the start):")
    for step, loss in loss_curve(result["losses"]):
        bar = "#" * max(1, round(loss / math.log(v) * 40))
        log(f"  step {step:5d}  {loss:6.3f}  {bar}")
    f_s = median_s(result["step_times"])
    log(f"fastdl   final train loss {np.mean(result['losses'][-20:]):.3f}, validation "
        f"{result['val_loss']:.3f} nats/char ({result['val_loss'] / math.log(2):.2f} bits/char); "
        f"median step {f_s * 1e3:.1f} ms over {steps} steps")
    result["sample"] = sample(model, corpus, sample_length, seed=seed)
    log(f"sample (temperature {TEMPERATURE}):\n" + "-" * 60 + "\n" + result["sample"] + "\n"
        + "-" * 60)
    t = result["torch"]
    if t is not None:
        t_s, f_n = median_s(t["step_times"]), median_s(result["step_times"][:n])
        log(f"pytorch  the same model, weights and first {n} batches: loss after {n} steps "
            f"{t['losses'][-1]:.3f} (fastdl {result['losses'][n - 1]:.3f})")
        log(f"time per training step (median of the {n} interleaved steps)  fastdl "
            f"{f_n * 1e3:.1f} ms  vs  PyTorch {t_s * 1e3:.1f} ms  (fastdl is {t_s / f_n:.2f}x "
            f"PyTorch's speed)")
        result["speedup"] = t_s / f_n
    path = out if out is not None else "."
    if not str(path).endswith(".png"):
        path = os.path.join(path, "char_lstm.png")
    result["png"] = save_curve(path, result["losses"],
                               result["torch"]["losses"] if result["torch"] else None,
                               result["val_loss"])
    log(f"wrote {result['png']} (loss curve)" if result["png"] else
        "(matplotlib is not installed: no loss curve picture)")
    return result
