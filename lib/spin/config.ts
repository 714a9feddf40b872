// Training configuration: names follow transformers' TrainingArguments (camelCased), the
// defaults are the original SPIN configs' where they have one. OPTIONS is the one table of
// every training option — its config.yaml key, what it takes, its default, its help line —
// from which the defaults, the validation, the CLI's keys and its help derive.
import { SpinNativeError } from "../core/errors.js";
import { type NumberRule, describeRule, fitsRule, showValue } from "../core/validate.js";
import { SCHEDULER_TYPES, type SchedulerType } from "./schedule.js";

export const OPTIMIZER_KINDS = ["rmsprop", "adamw"] as const;
export const SPIN_LOSS_TYPES = ["sigmoid", "hinge", "ipo"] as const;
export type SpinLossType = (typeof SPIN_LOSS_TYPES)[number];

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
  optim: (typeof OPTIMIZER_KINDS)[number];
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

/** The SPIN objective's settings (see spinLoss and spinStep). */
export interface SpinObjective {
  /** β of the SPIN loss (iterations 0–2: 0.1; 3: 5.0). */
  beta: number;
  lossType: SpinLossType;
  /** > 0: the conservative (label-smoothed) sigmoid loss. */
  labelSmoothing: number;
  /**
   * α ≥ 0: adds α × the mean negative log-likelihood per real-response token to the SPIN loss
   * (RPO / iterative reasoning preference optimisation; TRL's rpo_alpha), logged as loss/spin
   * and loss/sft. 0 (the default) is the original method.
   */
  sftWeight: number;
  /**
   * Score each response by its mean log-prob per token instead of the sum. With lossType "ipo"
   * this is TRL ≥ 0.7.11's IPO; false (the default) is TRL ≤ 0.7.10's, and the original's.
   */
  averageLogProb: boolean;
}

export interface SpinConfig extends TrainingConfig, SpinObjective {
  /** Compute the opponent's log-probs once before training (default) instead of a live opponent model. */
  precomputeOpponent: boolean;
}

/** What an option takes: a number under a rule, one of some strings, a boolean, a folder path. */
export type OptionRule = { number: NumberRule } | { oneOf: readonly string[] } | "boolean" | "folder";

/** One row of the options table. */
export interface OptionSpec<V> {
  /** The config.yaml key (the original's TrainingArguments name); null: an API-only field. */
  key: string | null;
  rule: OptionRule;
  default: V;
  help: string;
  /** Other config.yaml spellings of a value (the original's optimizer names). */
  aliases?: Record<string, V>;
  /** A SPIN-only option: SftTrainer ignores it. */
  spin?: true;
}

type OptionTable = { [F in Exclude<keyof SpinConfig, "outputDir">]: OptionSpec<SpinConfig[F]> } & { outputDir: Omit<OptionSpec<string>, "default"> };

const positiveInteger: NumberRule = { integer: true, min: 1 };
const unitInterval: NumberRule = { min: 0, max: 1, maxOpen: true };

/** Every training option, in the order `--help` lists them. */
export const OPTIONS: OptionTable = {
  outputDir: { key: "output_dir", rule: "folder", help: "the run folder (checkpoints, metrics.jsonl, the model)" },
  learningRate: { key: "learning_rate", rule: { number: { min: 0 } }, default: 5e-7, help: "peak learning rate" },
  numTrainEpochs: { key: "num_train_epochs", rule: { number: positiveInteger }, default: 1, help: "planned epochs (the schedule spans them)" },
  stopAfterEpochs: { key: "stop_after_epochs", rule: { number: { ...positiveInteger, nullable: true } }, default: null, help: "stop early, keeping the planned schedule" },
  maxSteps: { key: "max_steps", rule: { number: { integer: true, min: 0 } }, default: 0, help: "> 0: total updates (overrides epochs)" },
  perDeviceTrainBatchSize: { key: "per_device_train_batch_size", rule: { number: positiveInteger }, default: 8, help: "pairs per micro-batch per rank" },
  gradientAccumulationSteps: { key: "gradient_accumulation_steps", rule: { number: positiveInteger }, default: 1, help: "micro-batches per update" },
  maxGradNorm: { key: "max_grad_norm", rule: { number: { min: 0 } }, default: 1.0, help: "global grad-norm clipping (0: none)" },
  optim: { key: "optim", rule: { oneOf: OPTIMIZER_KINDS }, default: "rmsprop", help: "optimizer", aliases: { adamw_torch: "adamw", adamw_hf: "adamw" } },
  weightDecay: { key: "weight_decay", rule: { number: { min: 0 } }, default: 0, help: "decoupled weight decay" },
  rmspropAlpha: { key: "rmsprop_alpha", rule: { number: unitInterval }, default: 0.99, help: "RMSprop smoothing" },
  adamBeta1: { key: "adam_beta1", rule: { number: unitInterval }, default: 0.9, help: "AdamW β1" },
  adamBeta2: { key: "adam_beta2", rule: { number: unitInterval }, default: 0.999, help: "AdamW β2" },
  adamEpsilon: { key: "adam_epsilon", rule: { number: { min: 0, minOpen: true } }, default: 1e-8, help: "optimizer ε" },
  lrSchedulerType: { key: "lr_scheduler_type", rule: { oneOf: SCHEDULER_TYPES }, default: "linear", help: "learning-rate schedule" },
  warmupRatio: { key: "warmup_ratio", rule: { number: { min: 0, max: 1 } }, default: 0.1, help: "warmup = ceil(ratio × updates)" },
  warmupSteps: { key: "warmup_steps", rule: { number: { integer: true, min: 0, nullable: true } }, default: null, help: "warmup updates (overrides the ratio)" },
  // The data order's PRNG takes 32 bits: larger seeds would repeat smaller ones.
  seed: { key: "seed", rule: { number: { integer: true, min: 0, max: 2 ** 32 - 1 } }, default: 42, help: "seeds the data order" },
  loggingSteps: { key: "logging_steps", rule: { number: positiveInteger }, default: 10, help: "log every N updates" },
  evalSteps: { key: "eval_steps", rule: { number: { ...positiveInteger, nullable: true } }, default: null, help: "evaluate every N updates" },
  saveStrategy: { key: "save_strategy", rule: { oneOf: ["epoch", "steps", "no"] }, default: "epoch", help: "when to checkpoint", aliases: { epochs: "epoch" } },
  saveSteps: { key: "save_steps", rule: { number: positiveInteger }, default: 500, help: "checkpoint every N updates (save_strategy steps)" },
  saveTotalLimit: { key: "save_total_limit", rule: { number: { ...positiveInteger, nullable: true } }, default: null, help: "keep the newest N checkpoints" },
  gradientCheckpointing: { key: "gradient_checkpointing", rule: "boolean", default: false, help: "recompute layer activations in backward" },
  bf16: { key: "bf16", rule: "boolean", default: false, help: "bf16 autocast, float32 master weights" },
  maxLength: { key: "max_length", rule: { number: positiveInteger }, default: 1024, help: "tokens per prompt + response" },
  maxPromptLength: { key: "max_prompt_length", rule: { number: positiveInteger }, default: 512, help: "prompt tokens kept (from the end)" },
  onNonFinite: { key: "on_non_finite", rule: { oneOf: ["error", "skip"] }, default: "error", help: "a non-finite loss or gradient: stop, or drop that update" },
  logToConsole: { key: null, rule: "boolean", default: false, help: "print log lines as well as metrics.jsonl" },
  beta: { key: "beta", rule: { number: { min: 0, minOpen: true } }, default: 0.1, help: "β of the SPIN loss", spin: true },
  lossType: { key: "loss_type", rule: { oneOf: SPIN_LOSS_TYPES }, default: "sigmoid", help: "sigmoid (the original), hinge or ipo", spin: true },
  labelSmoothing: { key: "label_smoothing", rule: { number: { min: 0, max: 0.5, maxOpen: true } }, default: 0, help: "conservative sigmoid loss ε", spin: true },
  sftWeight: { key: "sft_weight", rule: { number: { min: 0 } }, default: 0, help: "α × real-response NLL added to the loss", spin: true },
  averageLogProb: { key: "average_log_prob", rule: "boolean", default: false, help: "mean per-token log-probs (ipo: TRL ≥ 0.7.11's form)", spin: true },
  precomputeOpponent: { key: "precompute_opponent", rule: "boolean", default: true, help: "opponent log-probs computed once before training", spin: true },
};

const FIELDS = Object.keys(OPTIONS) as (keyof SpinConfig)[];
const spinOnly = (field: keyof SpinConfig): boolean => field !== "outputDir" && OPTIONS[field].spin === true;

function defaultsOf<T>(fields: (keyof SpinConfig)[]): Omit<T, "outputDir"> {
  return Object.fromEntries(fields.filter((f) => f !== "outputDir").map((f) => [f, (OPTIONS[f] as OptionSpec<unknown>).default])) as Omit<T, "outputDir">;
}

export const TRAINING_DEFAULTS: Omit<TrainingConfig, "outputDir"> = defaultsOf<TrainingConfig>(FIELDS.filter((f) => !spinOnly(f)));
export const SPIN_DEFAULTS: Omit<SpinConfig, "outputDir"> = defaultsOf<SpinConfig>(FIELDS);

/** What `rule` asks for, in words ("an integer ≥ 1", "one of …"), or null when `value` fits it. */
export function ruleProblem(rule: OptionRule, value: unknown): string | null {
  if (rule === "folder") return typeof value === "string" && value !== "" ? null : "a folder path";
  if (rule === "boolean") return typeof value === "boolean" ? null : "true or false";
  if ("oneOf" in rule) return rule.oneOf.includes(value as string) ? null : `one of ${rule.oneOf.join(", ")}`;
  return fitsRule(value, rule.number) ? null : describeRule(rule.number);
}

/**
 * What `value` must be to be SpinConfig's `field` ("an integer ≥ 1", "one of …"), or null when
 * it is: a number must be a finite number (not a string that parses), in range, an integer
 * where one is needed.
 */
export function fieldProblem(field: keyof SpinConfig, value: unknown): string | null {
  return ruleProblem(OPTIONS[field].rule, value);
}

/** Throws INVALID_ARGUMENT naming `where` and the field when `value` does not fit it. */
export function checkField(field: keyof SpinConfig, value: unknown, where: string): void {
  const expected = fieldProblem(field, value);
  if (expected !== null) throw new SpinNativeError(`${where}: ${field} must be ${expected}, got ${showValue(value)}`, "INVALID_ARGUMENT", where);
}

/**
 * Fills defaults and rejects every value that cannot work (see {@link fieldProblem}), naming
 * the field. SPIN fields are checked when present (SftTrainer ignores them).
 */
export function resolveConfig<T extends TrainingConfig>(defaults: Omit<T, "outputDir">, given: Partial<T> & { outputDir: string }): T {
  const config = { ...defaults, ...given } as T;
  const values = config as Partial<Record<keyof SpinConfig, unknown>>;
  // A misspelt field would otherwise be ignored and its default used in silence.
  for (const field of Object.keys(given)) {
    if (!(field in OPTIONS)) {
      const known = FIELDS.find((k) => k.toLowerCase() === field.toLowerCase().replace(/_/g, ""));
      throw new SpinNativeError(`trainer config: unknown field '${field}'${known ? ` (did you mean '${known}'?)` : ""}`, "INVALID_ARGUMENT", "trainer");
    }
  }
  for (const field of FIELDS) {
    if (spinOnly(field) && values[field] === undefined) continue;
    const expected = fieldProblem(field, values[field]);
    if (expected !== null) throw new SpinNativeError(`trainer config: ${field} must be ${expected}, got ${showValue(values[field])}`, "INVALID_ARGUMENT", "trainer");
  }
  return config;
}
