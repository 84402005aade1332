"""Train a small CNN on scikit-learn's bundled digits with fastdl (and PyTorch beside it, if installed).

    python examples/cnn_digits.py [--epochs 12] [--seed 0] [--no-torch]   # = python -m fastdl demo cnn_digits

The program is python/fastdl/demos/cnn_digits.py (inside the package, so the demo command works
from any install). In outline:

    x_train, y_train, x_test, y_test = load_data(seed)   # (N, 1, 8, 8) standardized, 80/20 split
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 2 * 2, 10))
    opt = optim.Adam(model.parameters(), lr=3e-3)
    sched = optim.CosineAnnealingLR(opt, T_max=epochs)
    for epoch in range(epochs):
        for xb, yb in DataLoader(x_train, y_train, batch_size=32, shuffle=True, seed=seed):
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
        sched.step()
    model.eval()                                          # BatchNorm: running statistics
"""

import sys

from fastdl.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["demo", "cnn_digits", *sys.argv[1:]]))
