"""fastdl's random state: one NumPy generator, seeded by ``fastdl.manual_seed``.

Everything random in the Python layer draws from it: parameter initialisation (nn.Linear ...),
the seed handed to each dropout kernel call, and DataLoader shuffling when no seed is given.
Like PyTorch's CPU generator, it starts from a fixed seed, so a fresh process is repeatable.
"""

from __future__ import annotations

import numpy as np

__all__ = ["manual_seed", "initial_seed", "generator", "next_seed"]

_DEFAULT_SEED = 67280421310721  # torch.initial_seed() of a fresh process
_seed = _DEFAULT_SEED
_gen = np.random.default_rng(_seed)


def manual_seed(seed: int) -> None:
    """Reseed fastdl's generator (initialisation, dropout seeds, unseeded DataLoader shuffles)."""
    global _seed, _gen
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"manual_seed: seed must be >= 0, got {seed}")
    _seed = seed
    _gen = np.random.default_rng(seed)


def initial_seed() -> int:
    """The seed last given to manual_seed (or the default one)."""
    return _seed


def generator() -> np.random.Generator:
    """The generator itself (read it at call time: manual_seed replaces it)."""
    return _gen


def next_seed() -> int:
    """A fresh 63-bit seed for a kernel that takes one (dropout)."""
    return int(_gen.integers(0, 2**63 - 1))
