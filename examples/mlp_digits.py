"""Train an MLP on scikit-learn's bundled digits with fastdl (and PyTorch beside it, if installed).

    python examples/mlp_digits.py [--epochs 40] [--no-torch]     # same as: python -m fastdl demo

The whole program is short; read it in python/fastdl/demos/mlp_digits.py (shipped inside the
package so that ``python -m fastdl demo`` works from any install). In outline:

    data = load_data(seed)                               # standardized, stratified 80/20 split
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1),
                          nn.Linear(128, 64), nn.ReLU(), nn.Dropout(0.1), nn.Linear(64, 10))
    opt = optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(epochs):
        for xb, yb in DataLoader(x_train, y_train, batch_size=32, shuffle=True, seed=seed):
            opt.zero_grad()
            loss = nn.CrossEntropyLoss()(model(xb), yb)
            loss.backward()
            opt.step()
"""

import sys

from fastdl.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["demo", "mlp_digits", *sys.argv[1:]]))
