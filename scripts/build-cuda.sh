#!/usr/bin/env bash
# Builds the CUDA + NCCL variant of the addon into build-cuda/ (cmake-js, find_package(Torch)),
# the same way on a GPU machine (scripts/gpu-check.sh) and on CI without one (.ci/run).
# libtorch: LIBTORCH if set, else pip torch's CUDA build installed into .torch/cuda
# (scripts/torch-wheel.sh cuda), else an importable Python torch. Exits 3 when none is to be had.
# Load the result with SPIN_NATIVE_ADDON=build-cuda/Release/spin_native.node.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z ${LIBTORCH:-} ]]; then
  if prefix="$(bash scripts/torch-wheel.sh cuda | tail -n 1)"; then
    export LIBTORCH="$prefix"
  elif prefix="$(python3 -c 'import torch; assert torch.version.cuda; print(torch.utils.cmake_prefix_path)' 2>/dev/null)"; then
    echo "build-cuda: using the CUDA torch of $(command -v python3)" >&2
    export CMAKE_PREFIX_PATH="$prefix"
  else
    echo "build-cuda: no CUDA libtorch here (no pip wheel, no Python torch with CUDA)" >&2
    exit 3
  fi
fi
node scripts/libtorch.mjs --describe >&2
if [[ $(node scripts/libtorch.mjs --describe) != *'"cuda": true'* ]]; then
  echo "build-cuda: the libtorch found has no CUDA" >&2
  exit 1
fi
# TorchConfig's CUDA part wants the toolkit (nvcc) of the libtorch's CUDA version.
command -v nvcc >/dev/null || [[ -x ${CUDA_HOME:-/usr/local/cuda}/bin/nvcc ]] || {
  echo "build-cuda: nvcc not found: install the CUDA toolkit of the libtorch's CUDA version, or set CUDA_HOME" >&2
  exit 1
}
[[ -d node_modules ]] || npm ci --ignore-scripts --no-audit --no-fund
npx cmake-js rebuild --out build-cuda
