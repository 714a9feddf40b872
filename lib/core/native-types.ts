// The raw native binding's types (native/addon.cc), declared once and emitted with the
// package's declarations. lib/core/native.ts is the only door to the binding itself.

/**
 * Codes of SpinNativeError; native/errors.cc ErrorCodeName spells the native ones. BUSY (a
 * model in use by another call) and LOCKED (an output folder held by another run) come from
 * lib/ only.
 */
export type ErrorCode =
  | "SHAPE_MISMATCH"
  | "DTYPE"
  | "DEVICE"
  | "OUT_OF_MEMORY"
  | "DISPOSED"
  | "IO"
  | "INVALID_ARGUMENT"
  | "TORCH"
  | "BUSY"
  | "LOCKED";

/** Element types a tensor can hold. */
export type DType = "float32" | "float64" | "float16" | "bfloat16" | "int32" | "int64" | "uint8" | "bool";

/** Typed arrays that carry tensor data; 16-bit floats travel as raw bits in a Uint16Array. */
export type TensorData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array;

export type UnaryOp =
  | "neg" | "abs" | "sqrt" | "rsqrt" | "square" | "reciprocal" | "exp" | "log" | "log1p"
  | "sigmoid" | "logSigmoid" | "tanh" | "relu" | "silu" | "sign" | "floor" | "ceil" | "round"
  | "logicalNot" | "isNan" | "isFinite";

export type BinaryOp =
  | "add" | "sub" | "mul" | "div" | "pow" | "maximum" | "minimum"
  | "eq" | "ne" | "lt" | "le" | "gt" | "ge" | "logicalAnd" | "logicalOr";

export type ReduceOp = "sum" | "mean" | "prod" | "amax" | "amin" | "argmax" | "argmin" | "logsumexp" | "all" | "any";

/** A number or boolean operand is wrapped like a Python scalar: it follows the tensor's dtype. */
export type Operand = NativeTensor | number | boolean;

export interface NativeTensor {
  readonly shape: number[];
  readonly dtype: DType;
  readonly device: string;
  readonly disposed: boolean;
  readonly nbytes: number;
  readonly requiresGrad: boolean;
  readonly isLeaf: boolean;
  dispose(): void;
  to(device: string | null, dtype: DType | null): NativeTensor;
  contiguous(): NativeTensor;
  clone(): NativeTensor;
  detach(): NativeTensor;
  copyFrom(source: NativeTensor): void;
  toTypedArray(): TensorData;
  item(): number | boolean;
  unary(op: UnaryOp): NativeTensor;
  binary(op: BinaryOp, other: Operand): NativeTensor;
  reduce(op: ReduceOp, dims: number[] | null, keepDim: boolean): NativeTensor;
  softmax(dim: number, log: boolean): NativeTensor;
  clamp(min: number | null, max: number | null): NativeTensor;
  dropout(p: number): NativeTensor;
  matmul(other: NativeTensor): NativeTensor;
  matmulAsync(other: NativeTensor): Promise<NativeTensor>;
  gather(dim: number, index: NativeTensor): NativeTensor;
  indexSelect(dim: number, index: NativeTensor): NativeTensor;
  select(dim: number, index: number): NativeTensor;
  slice(dim: number, start: number | null, end: number | null, step: number): NativeTensor;
  reshape(shape: number[]): NativeTensor;
  transpose(dim0: number, dim1: number): NativeTensor;
  permute(dims: number[]): NativeTensor;
  squeeze(dim: number | null): NativeTensor;
  unsqueeze(dim: number): NativeTensor;
  expand(shape: number[]): NativeTensor;
  setRequiresGrad(requiresGrad: boolean): void;
  backward(gradient: NativeTensor | null, retainGraph: boolean): void;
  grad(): NativeTensor | null;
  zeroGrad(): void;
}

/** The decoder settings createModel takes (lib/model/config.ts ModelConfig satisfies it). */
export interface NativeModelConfig {
  architecture: "llama" | "gpt2";
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  maxPositions: number;
  normEps: number;
  tieWordEmbeddings: boolean;
  ropeTheta: number;
  ropeScaling: "none" | "linear" | "llama3";
  ropeFactor: number;
  ropeLowFreqFactor: number;
  ropeHighFreqFactor: number;
  ropeOriginalMaxPositions: number;
  slidingWindow: number | null;
  slidingWindowFromLayer: number;
  qkvBias: boolean;
  oBias: boolean;
  mlpBias: boolean;
}

export interface NativeKVCache {
  readonly length: number;
  readonly capacity: number;
  reset(): void;
  dispose(): void;
}

export interface NativeResponseLogprobs {
  sum: NativeTensor;
  tokens: NativeTensor;
  logitMean: NativeTensor;
}

/** The arguments of a forward pass, on the JS thread or a worker. */
type NativeForwardArgs = [
  ids: NativeTensor,
  attentionMask: NativeTensor,
  positions: NativeTensor | null,
  logitsAt: NativeTensor | null,
  cache: NativeKVCache | null,
  checkpoint: boolean,
];

/** How attention is computed: libtorch's fused scaled_dot_product_attention, or explicit scores and softmax. */
export type AttentionKernel = "sdpa" | "eager";

export interface NativeModel {
  forward(...args: NativeForwardArgs): NativeTensor;
  forwardAsync(...args: NativeForwardArgs): Promise<NativeTensor>;
  logprobs(ids: NativeTensor, attentionMask: NativeTensor, labels: NativeTensor, checkpoint: boolean, packing: boolean): Promise<NativeResponseLogprobs>;
  parameters(): Record<string, NativeTensor>;
  /** The projections an adapter can target, in forward order. */
  linearModules(): { name: string; in: number; out: number }[];
  /** Attaches a LoRA adapter (tensors named "<module>.lora_A.weight" / ".lora_B.weight") and freezes the base; null detaches. */
  setAdapter(adapter: { scale: number; dropout: number; tensors: Record<string, NativeTensor> } | null): void;
  adapterTensors(): Record<string, NativeTensor> | null;
  /** The adapted modules' weights with the adapter folded in, as new tensors. */
  mergedWeights(): Record<string, NativeTensor>;
  mergeAdapter(): void;
  attention(): AttentionKernel;
  setAttention(kernel: AttentionKernel): void;
  newCache(batch: number, capacity: number): NativeKVCache;
  dispose(): void;
}

/** Resolved values: the native side has no defaults. */
export interface NativeOptimizerOptions {
  kind: "rmsprop" | "adamw";
  alpha: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export interface NativeOptimizer {
  readonly steps: number;
  readonly disposed: boolean;
  dispose(): void;
  step(lr: number, maxGradNorm: number): Promise<{ gradNorm: number; applied: boolean }>;
  state(): Record<string, NativeTensor>;
  loadState(state: Record<string, NativeTensor>, steps: number): void;
  /** Frees the gradients (and a sharded optimizer's gradient shards) without an update. */
  discardGradients(): void;
  /** ZeRO stage 3: frees the layers' weights, keeping this rank's shards. */
  shardParameters(): void;
  /** ZeRO stage 3: makes every weight whole again (a collective). */
  gatherParameters(): Promise<void>;
  /** ZeRO stage 3 (a collective): every trained weight, whole, on the CPU of rank `root` (null elsewhere), a layer at a time. */
  gatheredWeights(root: number): Promise<Record<string, NativeTensor> | null>;
}

/** ZeRO sharding of an optimizer over the joined process group. */
export interface NativeSharding {
  /** 1: optimizer state; 2: + gradients; 3: + the layers' weights. */
  stage: number;
  /** The flat buckets the partition cuts (the gradient reducer's). */
  bucketBytes: number;
}

export interface NativeGradientReducer {
  /** The next backward pass starts each bucket's all-reduce as soon as its gradients are final. */
  arm(): void;
  /** Reduces the buckets not yet started, waits for all, and writes the averaged gradients. */
  finish(): Promise<{ buckets: number; overlapped: number }>;
  /** Removes the hooks. */
  dispose(): void;
}

/** A train step's resolved options (the native side has no defaults). */
export interface NativeStepOptions {
  /** Multiplies the loss before backward (1 / gradient-accumulation steps). */
  scale: number;
  checkpoint: boolean;
  /** false: forward and metrics only (evaluation). */
  backward: boolean;
  /** Run the forward under bf16 autocast (float32 master weights stay float32). */
  autocastBf16: boolean;
  /** Run the rows packed without padding (SPIN: each pair's prompt once). */
  packing: boolean;
}

export interface NativeSpinLossOptions {
  lossType: "sigmoid" | "hinge" | "ipo";
  beta: number;
  labelSmoothing: number;
}

export interface NativeSpinStepOptions extends NativeStepOptions, NativeSpinLossOptions {
  /** α of the SFT term (mean NLL per real-response token); 0: the original loss. */
  sftWeight: number;
  /** Per-token mean log-probs instead of sums. */
  averageLogProb: boolean;
}

/** A collated batch: rows [real; generated] for SPIN, response rows for SFT. */
export interface NativeBatch {
  ids: NativeTensor;
  attentionMask: NativeTensor;
  labels: NativeTensor;
}

export interface NativeSpinBatch extends NativeBatch {
  opponentReal: NativeTensor;
  opponentGenerated: NativeTensor;
  identical: NativeTensor | null;
}

export interface NativeGenerateOptions {
  maxNewTokens: number;
  doSample: boolean;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  eosTokenIds: number[];
  stopSequences: number[][];
  /** One seed per prompt row. */
  seeds: number[];
  /** Rows decoding together (continuous batching). */
  maxBatchSequences: number;
  /** Prompt tokens prefilled together when rows join. */
  prefillTokenBudget: number;
}

export interface NativeGenerateResult {
  /** New token ids per prompt row (EOS or stop tokens included when they ended the row). */
  tokens: number[][];
  finish: ("eos" | "stop" | "length")[];
  prefillSeconds: number;
  decodeSeconds: number;
  /** Of decodeSeconds, the time spent choosing the next tokens (processors, filters, draw). */
  samplingSeconds: number;
  /** Decode steps run (the longest row's new tokens). */
  steps: number;
}

export interface SafetensorsRecordInput {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export interface BuildInfo {
  /** libtorch version of the headers the addon was compiled with. */
  torchVersion: string;
  /** _GLIBCXX_USE_CXX11_ABI of the build (libtorch 2.x: always true). */
  cxx11Abi: boolean;
  /** C++ standard, two digits: 17 or 20. */
  cxxStandard: number;
  /** Whether NCCL collectives were compiled in. */
  nccl: boolean;
}

export interface RuntimeInfo {
  torchVersion: string;
  numThreads: number;
  availableCores: number;
  cudaDeviceCount: number;
  /** libtorch's own report: OpenMP, intra-op threads, BLAS/MKL configuration. */
  parallelInfo: string;
  /** BLAS_INFO of libtorch's build configuration: "open" (OpenBLAS), "mkl", … */
  blasBuild: string;
  /** TORCH_VERSION of the libtorch loaded at run time ("unknown" if it does not say). */
  loadedTorchVersion: string;
  /** What this addon binary was compiled against. */
  builtAgainst: BuildInfo;
  /** c10d backends in this build: "gloo" for CPU tensors, "nccl" for CUDA tensors. */
  distributedBackends: ("gloo" | "nccl")[];
}

export interface MemoryStats {
  /** Native tensor handles not yet disposed or collected. */
  liveTensors: number;
  /** Host bytes those handles report to V8's garbage collector. */
  reportedBytes: number;
  /** Optimizers not yet disposed or collected. */
  liveOptimizers: number;
  /** Bytes of their state, reported to V8 as well. */
  optimizerBytes: number;
}

export interface NativeBinding {
  readonly NativeTensor: abstract new (...args: never[]) => NativeTensor;
  registerErrorClass(errorClass: new (message: string, code: ErrorCode, call: string) => Error): void;
  fromTypedArray(data: TensorData, shape: number[], dtype: DType, device?: string | null): NativeTensor;
  full(shape: number[], value: number, dtype?: DType | null, device?: string | null): NativeTensor;
  arange(start: number, end: number, step: number, dtype?: DType | null, device?: string | null): NativeTensor;
  random(kind: "uniform" | "normal", shape: number[], dtype?: DType | null, device?: string | null): NativeTensor;
  manualSeed(seed: number): void;
  cat(tensors: NativeTensor[], dim: number): NativeTensor;
  stack(tensors: NativeTensor[], dim: number): NativeTensor;
  where(condition: NativeTensor, a: Operand, b: Operand): NativeTensor;
  setNumThreads(threads: number): void;
  getNumThreads(): number;
  setGradEnabled(enabled: boolean): boolean;
  isGradEnabled(): boolean;
  cudaDeviceCount(): number;
  runtimeInfo(): RuntimeInfo;
  memoryStats(): MemoryStats;
  createModel(config: NativeModelConfig, parameters: Record<string, NativeTensor>): NativeModel;
  mapSafetensors(
    path: string,
    dataStart: number,
    records: SafetensorsRecordInput[],
    dtype: DType | null,
    device: string | null,
    /** Views of a private mapping instead of owned copies (see LoadOptions.mmap). */
    mmap: boolean,
  ): Promise<[string, NativeTensor][]>;
  writeSafetensors(path: string, header: Uint8Array, tensors: NativeTensor[]): Promise<void>;
  createOptimizer(model: NativeModel, options: NativeOptimizerOptions, sharding?: NativeSharding): NativeOptimizer;
  spinTrainStep(model: NativeModel, batch: NativeSpinBatch, options: NativeSpinStepOptions): Promise<Record<string, number>>;
  /** The SPIN loss (a scalar with autograd) of per-pair log-probs. */
  spinLoss(
    policyReal: NativeTensor,
    policyGenerated: NativeTensor,
    opponentReal: NativeTensor,
    opponentGenerated: NativeTensor,
    identical: NativeTensor | null,
    options: NativeSpinLossOptions,
  ): NativeTensor;
  spinMetrics(
    policyReal: NativeTensor,
    policyGenerated: NativeTensor,
    opponentReal: NativeTensor,
    opponentGenerated: NativeTensor,
    identical: NativeTensor | null,
    options: { beta: number },
  ): Record<string, number>;
  generate(
    model: NativeModel,
    prompts: number[][],
    options: NativeGenerateOptions,
    onTokens?: (rows: number[], tokens: number[]) => void,
  ): Promise<NativeGenerateResult>;
  initProcessGroup(options: {
    rank: number;
    worldSize: number;
    masterAddr: string;
    masterPort: number;
    localRank: number;
    singleNode: boolean;
    timeoutMs: number;
    /** Every rank of the job gives the same id; the rendezvous refuses a rank of another job. */
    jobId: string;
  }): Promise<void>;
  destroyProcessGroup(): void;
  allReduce(tensor: NativeTensor, op: "sum" | "avg" | "max"): Promise<void>;
  broadcast(tensor: NativeTensor, root: number): Promise<void>;
  allGather(tensor: NativeTensor): Promise<NativeTensor[]>;
  barrier(): Promise<void>;
  /** Hooks the model's parameters (those requiring grad); needs a joined process group. */
  /** With a stage-2 optimizer, the reducer keeps this rank's gradient shards in it. */
  createGradientReducer(model: NativeModel, bucketBytes: number, optimizer?: NativeOptimizer): NativeGradientReducer;
  broadcastParameters(model: NativeModel, root: number): Promise<void>;
  sftTrainStep(model: NativeModel, batch: NativeBatch, options: NativeStepOptions): Promise<Record<string, number>>;
}
