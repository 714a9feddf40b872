// Training configuration: names follow transformers' TrainingArguments (camelCased), the
// defaults are the original SPIN configs' where they have one.
import { SpinNativeError } from "../errors.js";
import type { SchedulerType } from "../schedule.js";

export interface TrainingConfig {
  /** Run folder: checkpoints, metrics.jsonl, cached opponent log-probs. */
  outputDir: string;
  /** Peak learning rate (SPIN iterations 0–1: 5e-7; 2–3: 1e-7). */
  learningRate: number;
  /** Planned epochs: the schedule spans them all. */
  numTrainEpochs: number;
  /** Stop after this many epochs while keeping the schedule of numTrainEpochs (the released SPIN checkpoints: plan 6, stop after 2). */
  stopAfterEpochs: number | null;
  /** When > 0, the total number of updates (overrides epochs). */
  maxSteps: number;
  perDeviceTrainBatchSize: number;
  gradientAccumulationSteps: number;
  /** Global grad-norm clipping (0: none). */
  maxGradNorm: number;
  optim: "rmsprop" | "adamw";
  weightDecay: number;
  rmspropAlpha: number;
  adamBeta1: number;
  adamBeta2: number;
  adamEpsilon: number;
  lrSchedulerType: SchedulerType;
  /** Warmup = ceil(warmupRatio × total updates), unless warmupSteps is set. */
  warmupRatio: number;
  warmupSteps: number | null;
  /** Seeds the data order (a permutation per epoch). */
  seed: number;
  loggingSteps: number;
  /** Evaluate every N updates (needs eval rows); null: only when asked. */
  evalSteps: number | null;
  saveStrategy: "epoch" | "steps" | "no";
  saveSteps: number;
  /** Keep only the newest N checkpoints (null: all). */
  saveTotalLimit: number | null;
  gradientCheckpointing: boolean;
  /** bf16 autocast with float32 master weights (the original runs' setting on GPUs; on this CPU, slower than float32). */
  bf16: boolean;
  maxLength: number;
  maxPromptLength: number;
  /** A non-finite loss or gradient: stop with an error ("error") or drop that update ("skip"). */
  onNonFinite: "error" | "skip";
  /** Print log lines to the console as well as metrics.jsonl. */
  logToConsole: boolean;
}

export interface SpinConfig extends TrainingConfig {
  /** β of the SPIN loss (iterations 0–2: 0.1; 3: 5.0). */
  beta: number;
  lossType: "sigmoid" | "hinge" | "ipo";
  /** > 0: the conservative (label-smoothed) sigmoid loss. */
  labelSmoothing: number;
  /** Compute the opponent's log-probs once before training (default) instead of a live opponent model. */
  precomputeOpponent: boolean;
}

export const TRAINING_DEFAULTS: Omit<TrainingConfig, "outputDir"> = {
  learningRate: 5e-7,
  numTrainEpochs: 1,
  stopAfterEpochs: null,
  maxSteps: 0,
  perDeviceTrainBatchSize: 8,
  gradientAccumulationSteps: 1,
  maxGradNorm: 1.0,
  optim: "rmsprop",
  weightDecay: 0,
  rmspropAlpha: 0.99,
  adamBeta1: 0.9,
  adamBeta2: 0.999,
  adamEpsilon: 1e-8,
  lrSchedulerType: "linear",
  warmupRatio: 0.1,
  warmupSteps: null,
  seed: 42,
  loggingSteps: 10,
  evalSteps: null,
  saveStrategy: "epoch",
  saveSteps: 500,
  saveTotalLimit: null,
  gradientCheckpointing: false,
  bf16: false,
  maxLength: 1024,
  maxPromptLength: 512,
  onNonFinite: "error",
  logToConsole: false,
};

export const SPIN_DEFAULTS: Omit<SpinConfig, "outputDir"> = {
  ...TRAINING_DEFAULTS,
  beta: 0.1,
  lossType: "sigmoid",
  labelSmoothing: 0,
  precomputeOpponent: true,
};

/** Fills defaults and rejects values that cannot work, naming the field. */
export function resolveConfig<T extends TrainingConfig>(defaults: Omit<T, "outputDir">, given: Partial<T> & { outputDir: string }): T {
  const config = { ...defaults, ...given } as T;
  const fail = (field: string, expected: string): never => {
    throw new SpinNativeError(`trainer config: ${field} must be ${expected}, got ${JSON.stringify((config as Record<string, unknown>)[field])}`, "INVALID_ARGUMENT", "trainer");
  };
  if (typeof config.outputDir !== "string" || config.outputDir === "") fail("outputDir", "a folder path");
  const positiveInts = ["numTrainEpochs", "perDeviceTrainBatchSize", "gradientAccumulationSteps", "loggingSteps", "saveSteps", "maxLength", "maxPromptLength"] as const;
  for (const field of positiveInts) if (!Number.isInteger(config[field]) || config[field] < 1) fail(field, "a positive integer");
  if (!(config.learningRate >= 0)) fail("learningRate", "a non-negative number");
  if (!(config.maxGradNorm >= 0)) fail("maxGradNorm", "a non-negative number");
  if (!(config.warmupRatio >= 0 && config.warmupRatio <= 1)) fail("warmupRatio", "in [0, 1]");
  if (!Number.isInteger(config.maxSteps) || config.maxSteps < 0) fail("maxSteps", "a non-negative integer");
  if (config.stopAfterEpochs !== null && (!Number.isInteger(config.stopAfterEpochs) || config.stopAfterEpochs < 1)) fail("stopAfterEpochs", "a positive integer or null");
  if (!["rmsprop", "adamw"].includes(config.optim)) fail("optim", "rmsprop or adamw");
  if (!["linear", "cosine", "constant", "constant_with_warmup"].includes(config.lrSchedulerType)) fail("lrSchedulerType", "linear, cosine, constant or constant_with_warmup");
  if (!["epoch", "steps", "no"].includes(config.saveStrategy)) fail("saveStrategy", "epoch, steps or no");
  if (!["error", "skip"].includes(config.onNonFinite)) fail("onNonFinite", "error or skip");
  const inRange = (field: keyof TrainingConfig, low: number, high: number, lowOpen: boolean, highOpen: boolean) => {
    const v = config[field] as number;
    const ok = typeof v === "number" && (lowOpen ? v > low : v >= low) && (highOpen ? v < high : v <= high);
    if (!ok) fail(field, `in ${lowOpen ? "(" : "["}${low}, ${high}${highOpen ? ")" : "]"}`);
  };
  inRange("adamBeta1", 0, 1, false, true);
  inRange("adamBeta2", 0, 1, false, true);
  inRange("rmspropAlpha", 0, 1, false, true);
  inRange("adamEpsilon", 0, Infinity, false, true);
  inRange("weightDecay", 0, Infinity, false, true);
  if (config.warmupSteps !== null && (!Number.isInteger(config.warmupSteps) || config.warmupSteps < 0)) fail("warmupSteps", "a non-negative integer or null");
  if (config.evalSteps !== null && (!Number.isInteger(config.evalSteps) || config.evalSteps < 1)) fail("evalSteps", "a positive integer or null");
  if (config.saveTotalLimit !== null && (!Number.isInteger(config.saveTotalLimit) || config.saveTotalLimit < 1)) fail("saveTotalLimit", "a positive integer or null");
  const spin = config as Partial<SpinConfig>;
  if (spin.labelSmoothing !== undefined && !(spin.labelSmoothing >= 0 && spin.labelSmoothing < 0.5)) fail("labelSmoothing", "in [0, 0.5)");
  if (spin.beta !== undefined && !(spin.beta > 0)) fail("beta", "a positive number");
  if (spin.lossType !== undefined && !["sigmoid", "hinge", "ipo"].includes(spin.lossType)) fail("lossType", "sigmoid, hinge or ipo");
  return config;
}
