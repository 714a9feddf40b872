/**
 * spin-native: Self-Play Fine-Tuning (SPIN) of causal language models on a libtorch addon.
 * @packageDocumentation
 */
export { SpinNativeError, type ErrorCode } from "./errors.js";
export { DTYPES, type DType, type TensorData } from "./dtype.js";
export { Tensor, type Device, type NestedList, type TensorLike } from "./tensor.js";
export {
  tensor,
  full,
  zeros,
  ones,
  arange,
  rand,
  randn,
  manualSeed,
  cat,
  stack,
  where,
  type TensorOptions,
} from "./create.js";
export { scope, keep } from "./memory.js";
export {
  setNumThreads,
  getNumThreads,
  noGrad,
  isGradEnabled,
  cudaAvailable,
  deviceCount,
  runtimeInfo,
  memoryStats,
  type MemoryStats,
  type RuntimeInfo,
} from "./runtime.js";
