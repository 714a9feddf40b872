/**
 * spin-native: Self-Play Fine-Tuning (SPIN) of causal language models on a libtorch addon.
 * @packageDocumentation
 */
export { SpinNativeError, type ErrorCode } from "./core/errors.js";
export { DTYPES, type DType, type TensorData } from "./core/dtype.js";
export { Tensor, type Device, type NestedList, type TensorLike } from "./core/tensor.js";
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
} from "./core/create.js";
export { scope, keep } from "./core/memory.js";
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
} from "./core/runtime.js";
export { Tokenizer, ZEPHYR_CHAT_TEMPLATE, type ChatMessage } from "./model/tokenizer.js";
export type { AttentionKernel } from "./core/native-types.js";
export { CausalLM, KVCache, type ForwardOptions, type LoadModelOptions, type LogprobsOptions, type ResponseLogprobs } from "./model/causal-lm.js";
export { parseModelConfig, SUPPORTED_MODEL_TYPES, type ModelConfig } from "./model/config.js";
export { type LoraConfig, type LoraOptions } from "./model/lora.js";
export {
  loadSafetensors,
  saveSafetensors,
  readSafetensorsHeader,
  loadCheckpointTensors,
  saveCheckpointTensors,
  type SafetensorsHeader,
  type SafetensorsRecord,
} from "./model/safetensors.js";
export { Optimizer, type OptimizerOptions } from "./spin/optim.js";
export { lrMultiplier, warmupSteps, type SchedulerType } from "./spin/schedule.js";
export { SpinCollator, stepsPerEpoch, totalSteps, type SpinBatch, type SftBatch } from "./spin/collator.js";
export { toSpinRow, splitPrompt, identicalPairShare, type SpinRow, type RowLocation } from "./data/rows.js";
export {
  SpinTrainer,
  SftTrainer,
  epochOrder,
  type SpinTrainerOptions,
  type SftTrainerOptions,
  type Metrics,
  type TrainOptions,
  type TrainResult,
  type TrainerEvents,
} from "./spin/trainer.js";
export {
  OPTIONS,
  SPIN_DEFAULTS,
  TRAINING_DEFAULTS,
  SPIN_LOSS_TYPES,
  type OptionSpec,
  type SpinConfig,
  type SpinLossType,
  type SpinObjective,
  type TrainingConfig,
} from "./spin/config.js";
export { spinLoss, spinMetrics, type PairLogprobs, type SpinLossOptions, type SpinMetrics } from "./spin/objective.js";
export { spinStep, sftStep, type SftStepMetrics, type SpinStepBatch, type SpinStepMetrics, type StepBatch, type StepOptions } from "./spin/step.js";
export { type GenerateOptions, type GenerateResult, type Generation, type StreamedToken } from "./model/generation.js";
export { SelfPlayGenerator, shuffledOrder, spinInstructionPrompt, type SelfPlayGeneratorInit } from "./spin/generator.js";
export { type SelfPlayOptions } from "./spin/self-play-options.js";
export { type GeneratorEvents, type GenerationProgress, type GenerationBatch, type GenerationSummary } from "./spin/self-play-events.js";
export { mergeFractions, type MergeResult } from "./data/fraction-output.js";
export {
  resolveSplitFiles,
  globFiles,
  dataFormatOf,
  DATA_EXTENSIONS,
  type DataSplit,
  type DataFormat,
} from "./data/dataset-files.js";
export { readRows, readSpinRows, streamSpinRows, type RawRow, type ReadRowsOptions } from "./data/dataset-read.js";
export {
  writeJsonl,
  appendJsonl,
  writeParquet,
  convertDataset,
  SPIN_PARQUET_SCHEMA,
  type RowSource,
  type ParquetWriteOptions,
  type ConvertResult,
} from "./data/dataset-write.js";
export {
  mixDatasets,
  mixDatasetFiles,
  seededShuffle,
  fractionCount,
  type MixSource,
  type DatasetMixer,
  type MixFilesOptions,
} from "./data/mixer.js";
export { ROW_SHAPE_COLUMNS, type RawReadOptions } from "./data/dataset-read.js";
export { Distributed, type DistributedOptions, GradientReducer, type ReductionStats, type ShardingStage } from "./distributed/distributed.js";
export { launch, type LaunchOptions, type LaunchResult, rankDevice } from "./distributed/launch.js";
export { generateDataParallel, type DataParallelGeneration } from "./spin/distributed-generation.js";
export {
  runPipeline,
  ORIGINAL_SCHEDULE,
  iterationPaths,
  type PipelineOptions,
  type PipelineResult,
  type IterationRecord,
  type RunState,
} from "./run/pipeline.js";
