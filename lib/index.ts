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
export { Tokenizer, ZEPHYR_CHAT_TEMPLATE, type ChatMessage } from "./tokenizer.js";
export { CausalLM, KVCache, type ForwardOptions, type LoadModelOptions, type ResponseLogprobs } from "./model.js";
export { parseModelConfig, SUPPORTED_MODEL_TYPES, type ModelConfig } from "./model-config.js";
export {
  loadSafetensors,
  saveSafetensors,
  readSafetensorsHeader,
  loadCheckpointTensors,
  saveCheckpointTensors,
  type SafetensorsHeader,
  type SafetensorsRecord,
} from "./safetensors.js";
