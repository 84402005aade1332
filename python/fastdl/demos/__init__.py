"""Demos for ``python -m fastdl demo [name]``: real models on real (bundled) data.

Each demo module has ``run(epochs=None, seed=0, compare_torch=True, progress=True) -> dict``
(segmentation and char_lstm also take ``out``, where their PNG goes; char_lstm takes ``steps``).
"""

DEMOS = {
    "mlp_digits": "An MLP on scikit-learn's bundled 8x8 digits (1797 images): Adam, mini-batches, "
                  "dropout; >= 97% test accuracy; PyTorch timing beside it when installed",
    "cnn_digits": "A CNN (conv-BN-ReLU-pool x2, linear) on the same 8x8 digits: >= 98.5% test "
                  "accuracy; the same model, init and batches in PyTorch beside it",
    "segmentation": "An encoder-decoder CNN segmenting generated circles, squares and triangles "
                    "(32x32, per-pixel labels): mean IoU >= 0.80, PyTorch beside it, a PNG grid "
                    "of image / truth / prediction (--out)",
    # ---- issue 10 ----
    "char_lstm": "A character-level LSTM language model (Embedding, LSTM 256, Linear) on the "
                 "standard library's docstrings, truncated BPTT: loss 4.6 -> < 2 nats/char, a "
                 "text sample, the loss curve (--out PNG), PyTorch's step time beside it",
    # ---- issue 11 ----
    "transformer": "A 2-layer transformer encoder (Embedding, PositionalEncoding, "
                   "TransformerEncoderLayer x 2, Linear) sorts 12-digit strings generated on the "
                   "fly: >= 99% token accuracy, PyTorch's step time beside it (--steps)",
}
DEFAULT = "mlp_digits"


def require_sklearn():
    """Import scikit-learn or fail with the install line."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError(
            "this demo needs scikit-learn (for its bundled datasets): "
            'pip install "fastdl[demo]"  (or: pip install scikit-learn tqdm)') from None


def progress(iterable, total: int, desc: str, enabled: bool = True):
    """tqdm when it is installed, else a plain one-line progress bar on stderr."""
    if not enabled:
        yield from iterable
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(iterable, total=total, desc=desc, leave=False, ncols=80)
        return
    import sys

    width = 30
    for i, item in enumerate(iterable, 1):
        done = width * i // max(total, 1)
        sys.stderr.write(f"\r{desc} [{'#' * done}{'.' * (width - done)}] {i}/{total}")
        sys.stderr.flush()
        yield item
    sys.stderr.write("\r" + " " * (len(desc) + width + 20) + "\r")
