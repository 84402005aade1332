"""Early stopping on a validation metric."""

from __future__ import annotations

import math

__all__ = ["EarlyStopping"]


class EarlyStopping:
    """Stop when a metric has not improved for ``patience`` checks in a row.

    Call it (or ``.step``) with the metric once per epoch; it returns ``should_stop``. An
    improvement is a value below ``best - min_delta`` (mode 'min', e.g. a loss) or above
    ``best + min_delta`` (mode 'max', e.g. an accuracy); the first value always improves.

    Attributes: ``best`` (best value seen, None before the first call), ``counter`` (checks
    since the last improvement), ``improved`` (whether the last call improved: save a
    checkpoint then), ``should_stop`` (``counter >= patience``).

        stopper = EarlyStopping(patience=5)
        for epoch in range(100):
            ...
            if stopper(val_loss):
                break
    """

    def __init__(self, patience: int, min_delta: float = 0.0, mode: str = "min"):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        if min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be >= 0, got {min_delta}")
        self.patience, self.min_delta, self.mode = patience, float(min_delta), mode
        self.best = None
        self.counter = 0
        self.improved = False
        self.should_stop = False

    def step(self, metric) -> bool:
        metric = float(metric)
        if math.isnan(metric):
            self.improved = False
        elif self.best is None:
            self.improved = True
        elif self.mode == "min":
            self.improved = metric < self.best - self.min_delta
        else:
            self.improved = metric > self.best + self.min_delta
        if self.improved:
            self.best, self.counter = metric, 0
        else:
            self.counter += 1
        self.should_stop = self.counter >= self.patience and not self.improved
        return self.should_stop

    __call__ = step

    def reset(self) -> None:
        self.__init__(self.patience, self.min_delta, self.mode)
