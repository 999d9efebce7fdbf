#!/usr/bin/env bash
# The GPU check in one command, on a machine with CUDA, python3 + torch, CMake, ninja and pytest but
# no Halide (bench/gpu/README.md): builds the operator library from a kernel pack against that
# machine's torch, runs the CUDA tests and the GPU benchmarks, and writes device_check.log,
# cuda_tests.xml, bench_cuda.json, bench_cuda.md and profile.txt into OUT.
#
#   bench/gpu/device_check.sh PACK OUT [BUILD]     (BUILD: default /tmp/smoe-gpu-build)
set -uo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: bench/gpu/device_check.sh PACK OUT [BUILD]" >&2
  exit 2
fi
root="$(cd "$(dirname "$0")/../.." && pwd)"
pack="$(cd "$1" && pwd)" || exit 2
mkdir -p "$2" && out="$(cd "$2" && pwd)"
build="${3:-/tmp/smoe-gpu-build}"
python="${PYTHON:-python3}"
exec > >(tee "$out/device_check.log") 2>&1
step() { echo "== $(date +%T) $*"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
"$python" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "device:", torch.cuda.get_device_name() if torch.cuda.is_available() else "none")'
grep -m1 "model name" /proc/cpuinfo; nproc

step "build the operator library from $pack"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython_EXECUTABLE="$(command -v "$python")" \
  -DSMOE_PREBUILT_KERNELS="$pack" || exit 1
cmake --build "$build" -j "$(nproc)" || exit 1
export PYTHONPATH="$build/python${PYTHONPATH:+:$PYTHONPATH}" SMOE_LIBRARY="$build/lib/libsmoe_ops.so"

step "CUDA tests"
(cd "$root/tests/python" && "$python" -m pytest -q -rs --junitxml="$out/cuda_tests.xml" test_cuda.py)
tests=$?

step "GPU benchmarks"
PYTHONUNBUFFERED=1 "$python" "$root/bench/gpu/bench_cuda.py" --profile --out "$out" ${SMOE_BENCH_ARGS:-}
bench=$?
step "done: tests rc $tests, benchmarks rc $bench"
[[ $tests -eq 0 && $bench -eq 0 ]]
