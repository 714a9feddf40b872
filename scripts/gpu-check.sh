#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and a pip torch: builds the addon against the CUDA
# libtorch inside that wheel (cmake-js, find_package(Torch)) and runs the test suite with
# CUDA tensors, bf16 and NCCL (a process group of one on the GPU: test/distributed.test.ts).
# One command: bash scripts/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

python3 - <<'PY'
import torch
assert torch.cuda.is_available(), "torch sees no CUDA device"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
      f"bf16 {torch.cuda.is_bf16_supported()}, NCCL {torch.cuda.nccl.version()}")
PY
CMAKE_PREFIX_PATH="$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
export CMAKE_PREFIX_PATH
node scripts/libtorch.mjs --describe

[[ -d node_modules ]] || npm ci --ignore-scripts --no-audit --no-fund
nccl_failed=""
if ! npx cmake-js rebuild --out build-cuda; then
  # Check the rest of the CUDA path all the same, then fail.
  echo "gpu-check: the build with NCCL failed; rebuilding without it (SPIN_NCCL=OFF)" >&2
  nccl_failed=1
  npx cmake-js rebuild --out build-cuda --CDSPIN_NCCL=OFF
fi
npx tsc -p tsconfig.build.json

export SPIN_NATIVE_ADDON=build-cuda/Release/spin_native.node
node dist/lib/cli.js info
SPIN_TEST_DEVICE=cuda:0 npx vitest run
if [[ -n $nccl_failed ]]; then
  echo "gpu-check: NCCL did not compile (see the first build's errors above)" >&2
  exit 1
fi
