#!/usr/bin/env bash
# run.sh [conv|pool|norm|embedding|rnn|all]: run the CUDA kernels of conv.cu, pool.cu, norm.cu,
# embedding.cu and rnn.cu (+ reduce.cu; gemm.cu is replaced by a plain loop, driver.cc) on the CPU,
# against the CPU references of csrc/cpu, on a machine with the CUDA headers but no GPU.
#
# How: xform.py rewrites each `kernel<<<grid, block, smem, stream>>>(args);` into
# emu_launch(grid, block, [&] { kernel(args); }) and emu.h maps the CUDA subset the kernels use
# onto C++20: one block at a time, its threads as std::threads meeting at a std::barrier for
# __syncthreads, __shared__ arrays as function statics, the runtime calls as malloc/memcpy. So
# the index arithmetic, tile edges, shared-memory staging and barriers run as written (timing,
# warps and memory-model subtleties do not: this checks arithmetic, not races). Slow: seconds
# per case. Not part of pytest; run it after changing a kernel when no GPU is at hand.
#
# Needs: g++ >= 12, the CUDA toolkit headers (CUDA_INC), and libfastdl_cpu.a (CPU_LIB, built
# here with CMake and $PYTHON's pybind11 when absent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${EMU_DIR:-/tmp/fastdl-cuda-emu}
PY=${PYTHON:-python3}  # with pybind11 (CMake's configure needs it even for the CPU library)
if [ -z "${CUDA_INC:-}" ]; then
  for d in "${CUDA_HOME:-/usr/local/cuda}"/include "${CUDA_HOME:-/usr/local/cuda}"/targets/*/include \
           "$(dirname "$(readlink -f "$(command -v nvcc)")")/../include"; do
    [ -f "$d/cuda_runtime_api.h" ] && { CUDA_INC=$d; break; }
  done
fi
mkdir -p "$out/cuda"
if [ -z "${CPU_LIB:-}" ]; then
  cmake -S "$top" -B "$out/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFASTDL_CUDA=OFF \
    -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" >/dev/null
  cmake --build "$out/build" --target fastdl_cpu >/dev/null
  CPU_LIB=$out/build/libfastdl_cpu.a
fi
"$PY" "$here/xform.py" "$top/csrc/cuda/device_util.cuh" "$out/cuda/device_util.cuh"
for f in conv pool norm embedding rnn reduce; do "$PY" "$here/xform.py" "$top/csrc/cuda/$f.cu" "$out/$f.cc"; done
# rnn.cu: a 2 KiB inference workspace and split-K chunks down to 2, so that the short test
# sequences take several inference chunks and the split recurrent products.
g++ -std=c++20 -O1 -w -DFASTDL_RNN_INFER_BYTES=2048 -DFASTDL_RNN_SPLIT_MIN_K=2 -I"$here" -I"$out" -I"$top/csrc" -isystem "$CUDA_INC" "$out"/conv.cc \
  "$out"/pool.cc "$out"/norm.cc "$out"/embedding.cc "$out"/rnn.cc "$out"/reduce.cc \
  "$here/driver.cc" "$CPU_LIB" -fopenmp -lpthread -o "$out/emu_test"
"$out/emu_test" "${1:-all}"
