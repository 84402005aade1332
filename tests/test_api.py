"""The package surface: version, info, threads, ISA selection, the CLI."""

import json
import pickle
import os
import subprocess
import sys

import numpy as np
import pytest

import fastdl
from fastdl import ops


def run_cli(*args, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "fastdl", *args], capture_output=True, text=True,
                          env=full_env, timeout=300)


def test_info_keys():
    info = fastdl.info()
    for key in ("version", "cpu_isa", "num_threads", "cuda_available"):
        assert key in info
    assert info["version"] == fastdl.__version__
    assert info["cpu_isa"] in ("generic", "avx2", "avx512")
    assert info["num_threads"] == fastdl.get_num_threads() >= 1
    assert isinstance(fastdl.cuda_available(), bool)


def test_isa_env_caps_choice():
    want = os.environ.get("FASTDL_CPU_ISA")
    order = ["generic", "avx2", "avx512"]
    supported = fastdl.info()["cpu_isa_supported"]
    expect = supported if not want else order[min(order.index(want), order.index(supported))]
    assert fastdl.info()["cpu_isa"] == expect


def test_bad_isa_env_fails_import_clearly():
    r = subprocess.run([sys.executable, "-c", "import fastdl"], capture_output=True, text=True,
                       env={**os.environ, "FASTDL_CPU_ISA": "sse9"})
    assert r.returncode != 0
    assert "unknown CPU ISA 'sse9'" in r.stderr


def test_threads_roundtrip():
    fastdl.set_num_threads(1)
    assert fastdl.get_num_threads() == 1
    fastdl.set_num_threads(3)
    assert fastdl.get_num_threads() == 3
    a = np.ones((300, 300), np.float32)
    np.testing.assert_array_equal(fastdl.ops.matmul(a, a), 300.0)


def test_cli_info():
    r = run_cli("info")
    assert r.returncode == 0, r.stderr
    assert f"fastdl {fastdl.__version__}" in r.stdout
    assert "CPU ISA" in r.stdout and "CUDA extension" in r.stdout


def test_cli_bench_quick(tmp_path):
    out = tmp_path / "bench.json"
    r = run_cli("bench", "--quick", "--json", str(out))
    assert r.returncode == 0, r.stderr
    assert "NumPy" in r.stdout and "OpenBLAS" in r.stdout or "BLAS" in r.stdout
    assert "matmul_backward" in r.stdout and "vs numpy" in r.stdout
    data = json.loads(out.read_text())
    assert {row["op"] for row in data["rows"]} >= {"matmul", "matmul_backward", "linear", "linear_backward"}
    assert all(row["times"]["fastdl"] > 0 for row in data["rows"])


def test_cli_rejects_unknown_command():
    r = run_cli("frobnicate")
    assert r.returncode != 0
    assert "invalid choice" in r.stderr


def _stub_params(fn):
    """[(name, 'pos' | 'kw', default source or None)] of an ast function definition."""
    import ast

    a = fn.args
    pos = a.posonlyargs + a.args
    defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    rows = [(p.arg, "pos", d) for p, d in zip(pos, defaults)]
    rows += [(p.arg, "kw", d) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    return [(n, k, None if d is None else ast.literal_eval(d)) for n, k, d in rows]


@pytest.mark.parametrize("name", ["_core", "_cuda"])
def test_stub_matches_module(name):
    """The hand-written .pyi declares every compiled function, with the parameter names, order,
    keyword-only marks and defaults of its pybind11 signature, and None returns where it has."""
    import ast
    import importlib
    import pathlib

    try:
        module = importlib.import_module(f"fastdl.{name}")
    except ImportError:
        pytest.skip(f"fastdl.{name} is not built")
    stub = ast.parse(pathlib.Path(fastdl.__file__).with_name(f"{name}.pyi").read_text())
    declared = {n.name: n for n in stub.body if isinstance(n, ast.FunctionDef)}
    compiled = {n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))}
    assert compiled == set(declared), (f"missing: {sorted(compiled - set(declared))}, "
                                       f"stale: {sorted(set(declared) - compiled)}")
    for fn in sorted(compiled):
        # pybind11 puts the signature first in the docstring: "fn(a: T, *, b: T = 1) -> R"
        sig = getattr(module, fn).__doc__.splitlines()[0]
        real = ast.parse(f"def {sig}: ...").body[0]
        stub_fn = declared[fn]
        assert _stub_params(stub_fn) == _stub_params(real), \
            f"{name}.{fn}: stub ({ast.unparse(stub_fn.args)}) vs module {sig}"
        returns_none = ast.unparse(real.returns) == "None"
        assert (ast.unparse(stub_fn.returns) == "None") == returns_none, f"{name}.{fn}: return type"


def _equal_dtype_copy(a):
    """a with an equal but distinct dtype object, as unpickling produces."""
    b = pickle.loads(pickle.dumps(a))
    assert b.dtype == a.dtype and b.dtype is not a.dtype
    return b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unpickled_arrays_run_every_op_family(dtype):
    rng = np.random.default_rng(7)
    x, w, dy = (rng.standard_normal(s).astype(dtype) for s in ((5, 3), (4, 3), (5, 4)))
    b = rng.standard_normal(4).astype(dtype)
    target = np.array([0, 3, 1, 2, 3])
    px, pw, pdy, pb = map(_equal_dtype_copy, (x, w, dy, b))
    np.testing.assert_array_equal(ops.linear(px, pw, pb), ops.linear(x, w, b))
    for got, want in zip(ops.linear_backward(pdy, px, pw), ops.linear_backward(dy, x, w)):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(ops.matmul(px, pw.T), ops.matmul(x, w.T))
    np.testing.assert_array_equal(ops.relu(px), ops.relu(x))
    np.testing.assert_array_equal(ops.softmax(pdy), ops.softmax(dy))
    assert ops.cross_entropy(pdy, target)[0] == ops.cross_entropy(dy, target)[0]
    p, g = _equal_dtype_copy(w), _equal_dtype_copy(w * 0.5)
    ops.sgd_step_(p, g, None, lr=0.1)
    np.testing.assert_array_equal(p, w - dtype(0.1) * (w * dtype(0.5)))
    assert ops.clip_grad_norm_([g], 1e9) > 0
