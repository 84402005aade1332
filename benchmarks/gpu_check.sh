#!/usr/bin/env bash
# gpu_check.sh [OUTDIR]: the one GPU check. On a machine with an NVIDIA GPU and a python3 that
# has numpy, cupy, pytest, pytest-benchmark, pybind11, cmake, ninja and nvcc (torch with CUDA
# optional: it adds the cuDNN/ATen rows), from the repository root:
#   1. prints nvidia-smi (no GPU: says so in the report and exits 3, never hangs),
#   2. builds _core and _cuda with CMake for this GPU's architecture (no network, no pip;
#      warnings reported, not fatal) and drops the modules into python/fastdl/,
#   3. runs every GPU test in tests/ (pytest -m gpu: test_cuda*.py and any other gpu-marked test)
#      and tests/test_api.py (its stub check reads the freshly built _cuda),
#   4. runs every GPU benchmark in benchmarks/ (pytest -m gpu: bench_cuda_*.py), short rounds,
#   5. writes OUTDIR/gpu_report.md: pass/fail counts, benchmark tables (median, GFLOP/s or GB/s,
#      ratio to the fastest in the group), the failures' tails; raw logs, junit and benchmark
#      JSON beside it.
# OUTDIR defaults to $OUT, else ./gpu_report. Everything runs under one deadline (BUDGET_S,
# default 290 s); each step's timeout is what is left of it. Exit status: 0 all passed,
# 1 a step failed (build, tests or benchmarks), 3 no GPU.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
OUTDIR=${1:-${OUT:-./gpu_report}}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
REPORT=$OUTDIR/gpu_report.md
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-290}
START=$SECONDS
status=0

left() {  # seconds left of the budget, minus a reserve for the report; at least 5
  local l=$((BUDGET_S - (SECONDS - START) - ${1:-15}))
  ((l < 5)) && l=5
  echo "$l"
}
cap() { local a=$1 b=$2; ((a < b)) && echo "$a" || echo "$b"; }

{
  echo "# fastdl GPU check"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
} >"$REPORT"

# ---- 1. the GPU -------------------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1 ||
   ! timeout 30 nvidia-smi -L >"$OUTDIR/nvidia-smi-L.txt" 2>&1 ||
   ! grep -q '^GPU' "$OUTDIR/nvidia-smi-L.txt"; then
  {
    echo
    echo "## Result: no GPU"
    echo
    echo "no GPU: nvidia-smi is missing or lists no device, so nothing was built or run."
    [ -s "$OUTDIR/nvidia-smi-L.txt" ] && { echo; echo '```'; tail -5 "$OUTDIR/nvidia-smi-L.txt"; echo '```'; }
  } >>"$REPORT"
  echo "gpu_check: no GPU (report: $REPORT)"
  exit 3
fi
timeout 30 nvidia-smi | tee "$OUTDIR/nvidia-smi.txt"
arch=$(timeout 30 nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
[[ "$arch" =~ ^[0-9]+$ ]] || arch=90
gpu=$(timeout 30 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
{
  echo "- GPU: $gpu (sm_$arch)"
  echo "- python: $($PY -c 'import sys; print(sys.version.split()[0])' 2>&1)," \
       "cupy $($PY -c 'import cupy; print(cupy.__version__)' 2>/dev/null || echo missing)," \
       "torch $($PY -c 'import torch; print(torch.__version__, "cuda", torch.cuda.is_available())' 2>/dev/null || echo missing)"
} >>"$REPORT"

# ---- 2. build ---------------------------------------------------------------------------------
# nvcc where CMake may not look for it
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=/usr/local/cuda/bin:$PATH
fi
BUILD=${BUILD_DIR:-/tmp/fastdl-gpu-build}
t0=$SECONDS
build_ok=1
# timeout signals its whole process group, so cmake, ninja and nvcc stop with it
timeout -k 5 "$(cap "$(left 120)" 200)" bash -c '
  set -e
  BUILD=$1 arch=$2 PY=$3
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFASTDL_CUDA=ON -DFASTDL_WERROR=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DSKBUILD_PROJECT_VERSION=0.1.0 \
    -DPython_EXECUTABLE="$(command -v "$PY")" -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)"
  cmake --build "$BUILD" -j "$(nproc)"
  cp "$BUILD"/_core*.so "$BUILD"/_cuda*.so python/fastdl/
' gpu_check_build "$BUILD" "$arch" "$PY" >"$OUTDIR/build.log" 2>&1
build_rc=$?
((build_rc == 0)) || build_ok=0
((build_rc == 124 || build_rc == 137)) && echo "gpu_check: the build TIMED OUT" >>"$OUTDIR/build.log"
build_s=$((SECONDS - t0))
if ((build_ok)) && ! PYTHONPATH=python timeout 60 $PY -c \
    'import fastdl, sys; sys.exit(0 if fastdl.cuda_available() else 1)' >>"$OUTDIR/build.log" 2>&1; then
  echo "import fastdl: cuda_available() is False after the build" >>"$OUTDIR/build.log"
  build_ok=0
fi
if ((!build_ok)); then
  {
    echo
    echo "## Result: BUILD FAILED (${build_s} s)"
    echo
    echo '```'
    tail -40 "$OUTDIR/build.log"
    echo '```'
  } >>"$REPORT"
  echo "gpu_check: build failed (report: $REPORT)"
  exit 1
fi
# warnings do not stop this build (another compiler may find new ones): they are counted instead
warnings=$(grep -c -i 'warning' "$OUTDIR/build.log" || true)
echo "- build: ok in ${build_s} s (CMake, sm_$arch, ${warnings} warning lines in build.log)" >>"$REPORT"

# ---- 3. GPU tests (and test_api.py, whose stub check reads the built _cuda) ---------------------
export PYTHONPATH=$PWD/python
t0=$SECONDS
timeout -k 5 "$(cap "$(left 45)" 150)" $PY -m pytest tests -m gpu -q -p no:cacheprovider -rfE \
  --junitxml="$OUTDIR/tests.xml" >"$OUTDIR/tests.log" 2>&1
test_rc=$?
tests_s=$((SECONDS - t0))
t0=$SECONDS
timeout -k 5 "$(cap "$(left 35)" 60)" $PY -m pytest tests/test_api.py -q -p no:cacheprovider -rfE \
  --junitxml="$OUTDIR/api.xml" >"$OUTDIR/api.log" 2>&1
api_rc=$?
api_s=$((SECONDS - t0))

# ---- 4. GPU benchmarks: one pytest per file, so a slow file costs only its own results ---------
t0=$SECONDS
bench_rc=0
rm -f "$OUTDIR"/bench-*.json "$OUTDIR"/bench-*.xml "$OUTDIR/bench.log"
for f in benchmarks/bench_*.py; do
  grep -q 'mark.gpu' "$f" || continue
  name=$(basename "$f" .py)
  echo "== $f" >>"$OUTDIR/bench.log"
  timeout -k 5 "$(cap "$(left 15)" 90)" $PY -m pytest "$f" -m gpu -q -p no:cacheprovider -rfE \
    --benchmark-max-time=0.1 --benchmark-min-rounds=3 --benchmark-warmup=on \
    --benchmark-warmup-iterations=1 --benchmark-json="$OUTDIR/bench-$name.json" \
    --junitxml="$OUTDIR/bench-$name.xml" >>"$OUTDIR/bench.log" 2>&1
  rc=$?
  ((rc == 0)) || bench_rc=$rc
done
bench_s=$((SECONDS - t0))

# ---- 5. report --------------------------------------------------------------------------------
$PY benchmarks/gpu_check_report.py "$OUTDIR" "tests=$test_rc,$tests_s" "api=$api_rc,$api_s" \
  "bench=$bench_rc,$bench_s" >>"$REPORT" 2>&1 || echo "(the report generator failed: see above)" >>"$REPORT"
((test_rc == 0 && api_rc == 0 && bench_rc == 0)) || status=1
echo "- total: $((SECONDS - START)) s" >>"$REPORT"
echo "gpu_check: tests rc=$test_rc, test_api rc=$api_rc, benchmarks rc=$bench_rc," \
     "$((SECONDS - START)) s (report: $REPORT)"
exit $status
