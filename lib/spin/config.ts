// Training configuration: names follow transformers' TrainingArguments (camelCased), the
// defaults are the original SPIN configs' where they have one.
import { SpinNativeError } from "../core/errors.js";
import type { SchedulerType } from "./schedule.js";

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
  /**
   * α ≥ 0: adds α × the mean negative log-likelihood per real-response token to the SPIN loss
   * (RPO / iterative reasoning preference optimisation; TRL's rpo_alpha), logged as loss/spin
   * and loss/sft. 0 (the default) is the original method.
   */
  sftWeight: number;
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
  sftWeight: 0,
  precomputeOpponent: true,
};

/** A numeric field's constraint: bounds (open or closed), integer-ness, whether null is allowed. */
export interface NumberRule {
  min?: number;
  max?: number;
  minOpen?: boolean;
  maxOpen?: boolean;
  integer?: boolean;
  nullable?: boolean;
}

/** What a rule accepts, in words: "an integer ≥ 1", "a finite number in [0, 1)", "… or null". */
export function describeRule(rule: NumberRule): string {
  const kind = rule.integer ? "an integer" : "a finite number";
  let range = "";
  if (rule.min !== undefined && rule.max !== undefined) range = ` in ${rule.minOpen ? "(" : "["}${rule.min}, ${rule.max}${rule.maxOpen ? ")" : "]"}`;
  else if (rule.min !== undefined) range = ` ${rule.minOpen ? ">" : "≥"} ${rule.min}`;
  return `${kind}${range}${rule.nullable ? " or null" : ""}`;
}

/** Whether `value` satisfies `rule`: a number (not a numeric string), finite, in range, integer where asked. */
export function fitsRule(value: unknown, rule: NumberRule): boolean {
  if (value === null) return rule.nullable === true;
  if (typeof value !== "number" || !Number.isFinite(value)) return false;
  if (rule.integer && !Number.isSafeInteger(value)) return false;
  if (rule.min !== undefined && (rule.minOpen ? !(value > rule.min) : !(value >= rule.min))) return false;
  if (rule.max !== undefined && (rule.maxOpen ? !(value < rule.max) : !(value <= rule.max))) return false;
  return true;
}

/** A value as error messages show it: numbers as JS writes them (NaN, Infinity), the rest as JSON. */
export function showValue(value: unknown): string {
  return typeof value === "number" ? String(value) : JSON.stringify(value) ?? String(value);
}

const positiveInteger: NumberRule = { integer: true, min: 1 };
const unitInterval: NumberRule = { min: 0, max: 1, maxOpen: true };

/** What a field takes: a number under a rule, one of some strings, a boolean, a folder path. */
type FieldRule = { number: NumberRule } | { oneOf: readonly string[] } | "boolean" | "folder";

const FIELD_RULES: Record<keyof SpinConfig, FieldRule> = {
  outputDir: "folder",
  learningRate: { number: { min: 0 } },
  numTrainEpochs: { number: positiveInteger },
  stopAfterEpochs: { number: { ...positiveInteger, nullable: true } },
  maxSteps: { number: { integer: true, min: 0 } },
  perDeviceTrainBatchSize: { number: positiveInteger },
  gradientAccumulationSteps: { number: positiveInteger },
  maxGradNorm: { number: { min: 0 } },
  optim: { oneOf: ["rmsprop", "adamw"] },
  weightDecay: { number: { min: 0 } },
  rmspropAlpha: { number: unitInterval },
  adamBeta1: { number: unitInterval },
  adamBeta2: { number: unitInterval },
  adamEpsilon: { number: { min: 0, minOpen: true } },
  lrSchedulerType: { oneOf: ["linear", "cosine", "constant", "constant_with_warmup"] },
  warmupRatio: { number: { min: 0, max: 1 } },
  warmupSteps: { number: { integer: true, min: 0, nullable: true } },
  // The data order's PRNG takes 32 bits: larger seeds would repeat smaller ones.
  seed: { number: { integer: true, min: 0, max: 2 ** 32 - 1 } },
  loggingSteps: { number: positiveInteger },
  evalSteps: { number: { ...positiveInteger, nullable: true } },
  saveStrategy: { oneOf: ["epoch", "steps", "no"] },
  saveSteps: { number: positiveInteger },
  saveTotalLimit: { number: { ...positiveInteger, nullable: true } },
  gradientCheckpointing: "boolean",
  bf16: "boolean",
  maxLength: { number: positiveInteger },
  maxPromptLength: { number: positiveInteger },
  onNonFinite: { oneOf: ["error", "skip"] },
  logToConsole: "boolean",
  beta: { number: { min: 0, minOpen: true } },
  lossType: { oneOf: ["sigmoid", "hinge", "ipo"] },
  labelSmoothing: { number: { min: 0, max: 0.5, maxOpen: true } },
  sftWeight: { number: { min: 0 } },
  precomputeOpponent: "boolean",
};

/**
 * What `value` must be to be SpinConfig's `field` ("an integer ≥ 1", "one of …"), or null when
 * it is: a number must be a finite number (not a string that parses), in range, an integer
 * where one is needed.
 */
export function fieldProblem(field: keyof SpinConfig, value: unknown): string | null {
  const rule = FIELD_RULES[field];
  if (rule === "folder") return typeof value === "string" && value !== "" ? null : "a folder path";
  if (rule === "boolean") return typeof value === "boolean" ? null : "true or false";
  if ("oneOf" in rule) return rule.oneOf.includes(value as string) ? null : `one of ${rule.oneOf.join(", ")}`;
  return fitsRule(value, rule.number) ? null : describeRule(rule.number);
}

const SPIN_ONLY: readonly (keyof SpinConfig)[] = ["beta", "lossType", "labelSmoothing", "sftWeight", "precomputeOpponent"];

/**
 * Fills defaults and rejects every value that cannot work (see {@link fieldProblem}), naming
 * the field. SPIN fields are checked when present (SftTrainer ignores them).
 */
export function resolveConfig<T extends TrainingConfig>(defaults: Omit<T, "outputDir">, given: Partial<T> & { outputDir: string }): T {
  const config = { ...defaults, ...given } as T;
  const values = config as Partial<Record<keyof SpinConfig, unknown>>;
  // A misspelt field would otherwise be ignored and its default used in silence.
  for (const field of Object.keys(given)) {
    if (!(field in FIELD_RULES)) {
      const known = Object.keys(FIELD_RULES).find((k) => k.toLowerCase() === field.toLowerCase().replace(/_/g, ""));
      throw new SpinNativeError(`trainer config: unknown field '${field}'${known ? ` (did you mean '${known}'?)` : ""}`, "INVALID_ARGUMENT", "trainer");
    }
  }
  for (const field of Object.keys(FIELD_RULES) as (keyof SpinConfig)[]) {
    if (SPIN_ONLY.includes(field) && values[field] === undefined) continue;
    const expected = fieldProblem(field, values[field]);
    if (expected !== null) throw new SpinNativeError(`trainer config: ${field} must be ${expected}, got ${showValue(values[field])}`, "INVALID_ARGUMENT", "trainer");
  }
  return config;
}
