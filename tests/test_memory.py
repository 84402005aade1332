"""The CPU output cache (csrc/common/memory.h): what the ops return, and that steady-state calls
reuse memory instead of faulting in fresh pages."""

import concurrent.futures
import os
import resource
import subprocess
import sys

import numpy as np
import pytest

from fastdl import _core, ops


def test_empty_is_a_plain_writeable_array():
    a = _core.empty((3, 5), np.float32)
    assert a.shape == (3, 5) and a.dtype == np.float32
    assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
    a[...] = 2.0
    assert a.sum() == 30.0
    assert _core.empty((0, 7), "float64").shape == (0, 7)
    assert _core.empty((), np.float64).shape == ()
    big = _core.empty((300, 1000), np.float64)  # from the page-backed cache
    assert big.ctypes.data % 4096 == 0


def test_empty_rejects_bad_arguments():
    with pytest.raises(ValueError, match="negative dimension"):
        _core.empty((2, -1), np.float32)
    with pytest.raises(TypeError):
        _core.empty((2, 2), "not a dtype")


CACHE_OFF = pytest.mark.skipif(os.environ.get("FASTDL_CACHE_MB", "").strip() == "0",
                               reason="the output cache is turned off (FASTDL_CACHE_MB=0)")


@CACHE_OFF
def test_freed_block_is_reused_and_views_keep_it():
    _core.empty_cache()
    a = _core.empty((512, 512), np.float32)  # 1 MiB
    ptr = a.ctypes.data
    a[...] = 7.0
    view = a[1:]
    del a
    assert _core.cache_bytes() == 0  # the view still owns the block
    other = _core.empty((512, 512), np.float32)
    other_ptr = other.ctypes.data
    assert other_ptr != ptr
    other[...] = 0.0
    assert np.all(view == 7.0)
    del view, other
    assert _core.cache_bytes() == 2 * 512 * 512 * 4
    again = _core.empty((512, 512), np.float32)
    assert again.ctypes.data in (ptr, other_ptr)
    assert _core.cache_bytes() == 512 * 512 * 4
    _core.empty_cache()
    assert _core.cache_bytes() == 0
    del again


def test_cache_can_be_disabled():
    code = ("import numpy as np; from fastdl import _core; a = _core.empty((512, 512), np.float32); "
            "del a; print(_core.cache_bytes())")
    env = dict(os.environ, FASTDL_CACHE_MB="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "0"


def test_full_cache_makes_room_for_new_sizes():
    # A 4 MiB cache full of 1 MiB blocks nobody asks for any more: a loop over a new size must
    # still get its block back (the oldest blocks go), not fresh pages on every call.
    code = ("import numpy as np; from fastdl import _core\n"
            "old = [_core.empty((256, 1024), np.float32) for _ in range(4)]\n"
            "del old\n"
            "print(_core.cache_bytes())\n"
            "a = _core.empty((384, 1024), np.float32); p = a.ctypes.data; del a\n"
            "print(_core.cache_bytes())\n"
            "b = _core.empty((384, 1024), np.float32); print(int(b.ctypes.data == p)); del b\n"
            "c = _core.empty((256, 1024), np.float32); print(_core.cache_bytes())\n"
            "big = _core.empty((2048, 1024), np.float32); del big\n"  # 8 MiB: never fits
            "print(_core.cache_bytes())\n")
    env = dict(os.environ, FASTDL_CACHE_MB="4")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    mib = 1 << 20
    assert out[0] == str(4 * mib)
    assert out[1] == str(2 * mib + 3 * mib // 2)  # two oldest 1 MiB blocks dropped for 1.5 MiB
    assert out[2] == "1"                          # and that block comes back
    assert out[3] == str(mib + 3 * mib // 2)      # one of the remaining 1 MiB blocks reused
    assert out[4] == out[3]                       # a block larger than the cap is not kept


@CACHE_OFF
def test_steady_state_calls_fault_in_no_pages(rng):
    # Two 4 MiB gradients per call: glibc would return them to the system after every call
    # (and fault them in again on the next); the cache keeps them.
    a = rng.standard_normal((1024, 1024), dtype=np.float32)
    b = rng.standard_normal((1024, 1024), dtype=np.float32)
    dy = rng.standard_normal((1024, 1024), dtype=np.float32)
    for _ in range(3):
        ops.matmul_backward(dy, a, b)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        da, db = ops.matmul_backward(dy, a, b)
        del da, db
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 200, f"{faults} page faults in 5 steady-state calls (8 MiB of outputs each)"


def test_concurrent_ops_from_python_threads(rng):
    xs = [rng.standard_normal((200, 300), dtype=np.float32) for _ in range(8)]
    w = rng.standard_normal((300, 100), dtype=np.float32)

    def work(x):
        return [np.array_equal(ops.matmul(x, w), ops.matmul(x, w)) for _ in range(20)]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert all(all(r) for r in pool.map(work, xs))
    for x in xs:
        np.testing.assert_allclose(ops.matmul(x, w), x @ w, rtol=1e-4, atol=1e-3)
