"""Shared pieces of the benchmarks: library selection, FLOP accounting, checks after timing.

Run with ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest benchmarks`` so NumPy's OpenBLAS
uses its best kernel; CI runs them with ``--benchmark-disable`` as smoke tests.
"""

import os

import numpy as np
import pytest

import fastdl

LIBS = ["fastdl", "numpy", "torch"]


@pytest.fixture(params=LIBS)
def lib(request):
    if request.param == "torch":
        torch = pytest.importorskip("torch")
        torch.set_num_threads(fastdl.get_num_threads())
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_report_header(config):
    forced = [v for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if os.environ.get(v)]
    note = f"; WARNING {', '.join(forced)} set: NumPy is handicapped" if forced else ""
    return f"fastdl bench: threads {fastdl.get_num_threads()}, ISA {fastdl.info()['cpu_isa']}{note}"
