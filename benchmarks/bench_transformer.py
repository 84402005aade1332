"""A training step of a 2-layer transformer encoder: fastdl against PyTorch (issue 11's target:
>= 1.5x PyTorch), and where fastdl's step time goes.

Model (both libraries, the same weights through the state dict): input (32, 64, 128) float32
(batch 32, S 64, d_model 128, batch_first), 2 x TransformerEncoderLayer(128, nhead=4,
dim_feedforward=512, dropout=0.0) -> Linear(128, 16), per-token cross entropy against fixed
labels; one step = zero_grad, forward, loss, backward, Adam. dropout=0.0 keeps self-attention on
the flash path (an attention dropout in training takes the explicit S x S path, see
nn/transformer.py); dim_feedforward 512 = 4 x d_model, the usual ratio (PyTorch's default 2048
would make the step four fifths feed-forward GEMMs).

Napkin math per step (N*S = 2048 tokens, E = 128, F = 512): per layer the in-projection
2*2048*128*384 = 201 MFLOP, out-projection 67, feed-forward 2*2*2048*128*512 = 537, attention
4*32*4*64*64*32 = 67 MFLOP forward (4 B H S^2 Dh); about 0.87 GFLOP forward per layer, x3 with
the backward (attention backward 2.5x): ~5.4 GFLOP per step for both layers with the head.

    pytest benchmarks/bench_transformer.py          # pytest-benchmark, both libraries
    python benchmarks/bench_transformer.py          # interleaved A/B and the time breakdown
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import fastdl
from fastdl import nn, ops, optim

N, S, E, H, FF, LAYERS, CLASSES = 32, 64, 128, 4, 512, 2, 16
FLOPS = 5.4e9  # per step, see the napkin math above


class Model(nn.Module):
    def __init__(self):
        layer = nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, LAYERS)
        self.head = nn.Linear(E, CLASSES)

    def forward(self, x):
        return self.head(self.encoder(x))


def torch_model(state_dict):
    import torch

    class TorchModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            layer = torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
            self.head = torch.nn.Linear(E, CLASSES)

        def forward(self, x):
            return self.head(self.encoder(x))

    m = TorchModel()
    m.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()})
    return m


def data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((N, S, E)).astype(np.float32),
            rng.integers(0, CLASSES, N * S).astype(np.int64))


def fastdl_step(seed=0):
    """(step function -> loss, model) for fastdl."""
    fastdl.manual_seed(seed)
    model = Model()
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x, y = data(seed)

    def step():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x).reshape(-1, CLASSES), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step, model


def torch_step(state_dict, seed=0):
    import torch

    torch.set_num_threads(fastdl.get_num_threads())
    model = torch_model(state_dict)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = (torch.from_numpy(a) for a in data(seed))

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, CLASSES), y)
        loss.backward()
        opt.step()
        return loss.item()

    return step


@pytest.mark.parametrize("lib", ["fastdl", "torch"])
def test_transformer_training_step(benchmark, lib):
    benchmark.group = f"transformer training step N{N} S{S} E{E} H{H} FF{FF} x{LAYERS}"
    step, model = fastdl_step()
    if lib == "torch":
        pytest.importorskip("torch")
        init = {k: np.array(v) for k, v in model.state_dict().items()}
        step = torch_step(init)
    first = step()
    assert abs(first - np.log(CLASSES)) < 1.0  # random labels: near uniform at the start
    benchmark(step)
    benchmark.extra_info["flops"] = FLOPS
    mean = getattr(getattr(benchmark, "stats", None), "stats", None)
    if mean is not None:
        benchmark.extra_info["GFLOP/s"] = round(FLOPS / mean.mean / 1e9, 1)


def test_fastdl_and_torch_steps_agree():
    pytest.importorskip("torch")
    step, model = fastdl_step()
    tstep = torch_step({k: np.array(v) for k, v in model.state_dict().items()})
    ours = [step() for _ in range(3)]
    theirs = [tstep() for _ in range(3)]
    np.testing.assert_allclose(ours, theirs, rtol=2e-4)


# ---- where the time goes (python benchmarks/bench_transformer.py) -----------------------------------

def breakdown(step, reps=10):
    """Seconds per step in each fastdl.ops function (the kernels plus their thin ops-layer
    wrapper), by wrapping every ops function with a timer; the rest of the step is Python
    (autograd engine, Functions, modules, reshapes) and NumPy glue."""
    totals = {}
    originals = {}
    for name in ops.__all__:
        fn = getattr(ops, name)
        if not callable(fn):
            continue
        originals[name] = fn

        def timed(*a, _fn=fn, _name=name, **k):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                totals[_name] = totals.get(_name, 0.0) + time.perf_counter() - t0

        setattr(ops, name, timed)
    try:
        step()
        totals.clear()
        t0 = time.perf_counter()
        for _ in range(reps):
            step()
        total = (time.perf_counter() - t0) / reps
    finally:
        for name, fn in originals.items():
            setattr(ops, name, fn)
    return total, {k: v / reps for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}


def main(rounds=15):
    step, model = fastdl_step()
    init = {k: np.array(v) for k, v in model.state_dict().items()}
    print(f"transformer training step: N{N} S{S} E{E} H{H} FF{FF} x{LAYERS} layers, "
          f"{fastdl.get_num_threads()} threads, CPU ISA {fastdl.info()['cpu_isa']}")
    try:
        tstep = torch_step(init)
    except ImportError:
        tstep = None
    for _ in range(3):
        step()
        if tstep:
            tstep()
    f_times, t_times = [], []
    for _ in range(rounds):  # interleaved, so both see the same machine load
        t0 = time.perf_counter()
        step()
        f_times.append(time.perf_counter() - t0)
        if tstep:
            t0 = time.perf_counter()
            tstep()
            t_times.append(time.perf_counter() - t0)
    f_min, f_med = min(f_times), float(np.median(f_times))
    print(f"fastdl   min {f_min * 1e3:7.2f} ms  median {f_med * 1e3:7.2f} ms  "
          f"({FLOPS / f_min / 1e9:.0f} GFLOP/s at the min)")
    if tstep:
        t_min, t_med = min(t_times), float(np.median(t_times))
        print(f"pytorch  min {t_min * 1e3:7.2f} ms  median {t_med * 1e3:7.2f} ms")
        print(f"fastdl is {t_min / f_min:.2f}x PyTorch's speed (min), {t_med / f_med:.2f}x (median)")
    total, parts = breakdown(step)
    kern = sum(parts.values())
    print(f"\nfastdl step {total * 1e3:.2f} ms (timers on): ops functions {kern * 1e3:.2f} ms "
          f"({100 * kern / total:.0f}%), the rest (Python: autograd, modules, NumPy glue) "
          f"{(total - kern) * 1e3:.2f} ms ({100 * (total - kern) / total:.0f}%)")
    for name, t in parts.items():
        if t * 1e3 >= 0.01:
            print(f"  {name:28s} {t * 1e3:7.2f} ms  {100 * t / total:5.1f}%")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="fastdl and PyTorch threads")
    ap.add_argument("--rounds", type=int, default=15, help="interleaved steps timed per library")
    args = ap.parse_args()
    if args.threads:
        fastdl.set_num_threads(args.threads)
    main(args.rounds)
