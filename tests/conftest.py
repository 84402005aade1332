import os

import numpy as np
import pytest

import fastdl


@pytest.fixture
def rng(request):
    # A seed per test, stable across runs and independent of test order.
    seed = sum(ord(c) * (i + 1) for i, c in enumerate(request.node.nodeid)) % 2**32
    return np.random.default_rng(seed)


@pytest.fixture(autouse=True)
def _restore_threads():
    n = fastdl.get_num_threads()
    yield
    fastdl.set_num_threads(n)


def pytest_report_header(config):
    info = fastdl.info()
    return (f"fastdl {info['version']}: CPU ISA {info['cpu_isa']} (supported "
            f"{info['cpu_isa_supported']}, FASTDL_CPU_ISA={os.environ.get('FASTDL_CPU_ISA', '')!r}), "
            f"threads {info['num_threads']}, CUDA available {info['cuda_available']}")
