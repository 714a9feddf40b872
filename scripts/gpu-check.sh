#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: builds the CUDA + NCCL variant as CI does without a GPU
# (scripts/build-cuda.sh), then runs the test suite with CUDA tensors: the device tests, bf16
# on CUDA, the SPIN step on the GPU and an NCCL process group (test/distributed.test.ts).
# Each stage says what failed: the build, the load, or the tests.
# One command: bash scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

fail() { echo "gpu-check: FAIL at $1" >&2; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || fail "nvidia-smi (no driver or no GPU)"

bash scripts/build-cuda.sh || fail "build (compile or link; see the compiler's errors above)"
[[ -f dist/lib/index.js ]] || npx tsc -p tsconfig.build.json || fail "TypeScript build"

export SPIN_NATIVE_ADDON=build-cuda/Release/spin_native.node
node dist/lib/cli.js info || fail "load (the addon did not load against its libtorch)"
node --input-type=module -e '
  import { runtimeInfo } from "./dist/lib/index.js";
  const info = runtimeInfo();
  if (info.cudaDeviceCount < 1) throw new Error("the addon sees no CUDA device");
  if (!info.distributedBackends.includes("nccl")) throw new Error("this build has no NCCL backend");
  console.log(`gpu-check: libtorch ${info.torchVersion}, ${info.cudaDeviceCount} GPU(s), backends ${info.distributedBackends.join(", ")}`);
' || fail "runtime (CUDA devices or NCCL missing)"
SPIN_TEST_DEVICE=cuda:0 npx vitest run || fail "tests on cuda:0"
echo "gpu-check: PASS"
