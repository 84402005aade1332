"""Segment generated circles, squares and triangles with a small encoder-decoder CNN.

    python examples/segmentation.py [--epochs 10] [--seed 0] [--no-torch] [--out DIR]
    # = python -m fastdl demo segmentation

The program is python/fastdl/demos/segmentation.py. In outline: make_shapes() draws 32x32 images
and per-pixel labels (0 background, 1 circle, 2 square, 3 triangle); the model is conv-BN-ReLU
blocks, MaxPool2d(2) down twice, ConvTranspose2d(k=2, stride=2) up twice with the encoder's
feature maps added back (additive skips), and a 1x1 conv to 4 classes:

    logits = model(xb)                        # (N, 4, 32, 32)
    loss = F.cross_entropy(logits, yb)        # yb (N, 32, 32): mean over every pixel
    ...
    pred = model(x_test).numpy().argmax(1)    # (N, 32, 32); mean IoU over the 4 classes
"""

import sys

from fastdl.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["demo", "segmentation", *sys.argv[1:]]))
