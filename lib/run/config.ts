// Run configs in the original SPIN's config.yaml vocabulary (TrainingArguments and
// ModelArguments/DataArguments names), read from YAML with `--key=value` overrides. Unlike
// the original, an unknown key is an error that names the nearest valid key, and so is a value
// of the wrong type (`beta: "0.1"` is a string, not a number), non-finite, out of range, or not
// an integer where one is needed — all checked when the config is read, before any work.
import { readFile } from "node:fs/promises";
import path from "node:path";

import { parse as parseYaml } from "yaml";

import { SpinNativeError } from "../core/errors.js";
import { type ShardingStage, shardingStage } from "../distributed/sharding.js";
import { type NumberRule, describeRule, fitsRule, showValue } from "../core/validate.js";
import type { LoraOptions } from "../model/lora.js";
import { OPTIONS, type OptionSpec, type SpinConfig, fieldProblem } from "../spin/config.js";

type Value = string | number | boolean | null | Value[] | { [key: string]: Value };
export type RawConfig = Record<string, Value>;

/** config.yaml keys that map onto SpinConfig fields (from the options table). */
const TRAINING_KEYS: Record<string, keyof SpinConfig> = Object.fromEntries(
  (Object.entries(OPTIONS) as [keyof SpinConfig, OptionSpec<unknown>][]).flatMap(([field, spec]) => (spec.key === null ? [] : [[spec.key, field]])),
);

/** Keys of the run itself (model, data, iterations, generation). */
const RUN_KEYS = [
  "model_name_or_path",
  "torch_dtype",
  "device",
  "dataset_mixer",
  "dataset_splits",
  "iterations",
  "iteration_schedule",
  "previous_fraction",
  "batch_size",
  "max_new_tokens",
  "frac_len",
  "data_frac",
  "prompt_format",
  "do_sample",
  "temperature",
  "top_k",
  "top_p",
  "min_p",
  "repetition_penalty",
  "threads",
  "input",
  "split",
  "format",
  "opponent",
  "run_dir",
  "ddp_bucket_cap_mb",
  "ddp_timeout",
  "zero_stage",
  "config_file",
  "allow_config_change",
  "use_peft",
  "lora_r",
  "lora_alpha",
  "lora_dropout",
  "lora_target_modules",
  "adapter",
  "merge_adapters",
] as const;

/** Keys of the original configs that have no effect here (multi-GPU, hub, logging backends). */
const ACCEPTED_WITHOUT_EFFECT = [
  "hub_model_id",
  "push_to_hub",
  "preprocessing_num_workers",
  "log_level",
  "use_flash_attention_2",
  "do_eval",
  "evaluation_strategy",
  "per_device_eval_batch_size",
  "report_to",
  "overwrite_output_dir",
  "model_revision",
  "trust_remote_code",
];

export const KNOWN_KEYS: readonly string[] = [...Object.keys(TRAINING_KEYS), ...RUN_KEYS, ...ACCEPTED_WITHOUT_EFFECT];

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, previous + (a[i - 1] === b[j - 1] ? 0 : 1));
      previous = current;
    }
  }
  return row[b.length]!;
}

/**
 * The known key closest to `key`: first the keys that contain every `_`-separated word of it
 * (`warmup` → `warmup_ratio`), then by edit distance, keys that have an effect before the
 * accepted-without-effect ones (`per_device_batch_size` → `per_device_train_batch_size`, not
 * `per_device_eval_batch_size`).
 */
export function nearestKey(key: string, among: readonly string[] = KNOWN_KEYS): string {
  const lower = key.toLowerCase();
  const words = lower.split("_").filter((w) => w !== "");
  const score = (candidate: string): [number, number] => [
    words.length > 0 && words.every((w) => candidate.includes(w)) ? 0 : 1,
    editDistance(lower, candidate) + (ACCEPTED_WITHOUT_EFFECT.includes(candidate) ? 2 : 0),
  ];
  return [...among]
    .map((candidate) => ({ candidate, score: score(candidate) }))
    .sort((x, y) => x.score[0] - y.score[0] || x.score[1] - y.score[1])[0]!.candidate;
}

function checkKeys(config: RawConfig, where: string): void {
  for (const key of Object.keys(config)) {
    if (!KNOWN_KEYS.includes(key)) {
      throw new SpinNativeError(`${where}: unknown key '${key}' — did you mean '${nearestKey(key)}'?`, "INVALID_ARGUMENT", "config");
    }
  }
}

/**
 * A `--key=value` override: numbers, booleans and null parsed as YAML scalars, except for keys
 * whose value is text (`--output_dir=2024` is a folder, not a number).
 */
function parseOverride(argument: string): [string, Value] {
  const match = /^--([A-Za-z0-9_.-]+)=(.*)$/s.exec(argument);
  if (!match) throw new SpinNativeError(`argument '${argument}' is not of the form --key=value`, "INVALID_ARGUMENT", "config");
  const value = parseYaml(match[2]!) as Value;
  return [match[1]!, TEXT_KEYS.includes(match[1]!) && (typeof value === "number" || typeof value === "boolean") ? match[2]! : value];
}

function valueError(where: string, key: string, expected: string, value: unknown): SpinNativeError {
  return new SpinNativeError(`${where}: '${key}' must be ${expected}, got ${showValue(value)}`, "INVALID_ARGUMENT", "config");
}

/** Checks one key's value (null: unset, except for training keys); throws naming the key. */
type KeyCheck = (value: Value, key: string, where: string) => void;

const number =
  (rule: NumberRule): KeyCheck =>
  (value, key, where) => {
    if (value !== null && !fitsRule(value, rule)) throw valueError(where, key, describeRule(rule), value);
  };

const oneOf =
  (...choices: string[]): KeyCheck =>
  (value, key, where) => {
    if (value !== null && !choices.includes(value as string)) throw valueError(where, key, `one of ${choices.join(", ")}`, value);
  };

const textValue: KeyCheck = (value, key, where) => {
  if (value !== null && (typeof value !== "string" || value === "")) throw valueError(where, key, "a non-empty string", value);
};

const flag: KeyCheck = (value, key, where) => {
  if (value !== null && typeof value !== "boolean") throw valueError(where, key, "true or false", value);
};

/** The value of a training key as its SpinConfig field takes it (the original's other spellings mapped). */
function trainingValue(key: string, value: Value): unknown {
  const aliases = (OPTIONS[TRAINING_KEYS[key]!] as OptionSpec<unknown>).aliases;
  return aliases && Object.hasOwn(aliases, String(value)) ? aliases[String(value)] : value;
}

/** Checks a training key's value as its SpinConfig field (null included: it is not "unset" there); `shown` names it in the error. */
function checkTraining(key: string, value: Value, where: string, shown = key): void {
  const expected = fieldProblem(TRAINING_KEYS[key]!, trainingValue(key, value));
  if (expected === null) return;
  const aliases = Object.keys((OPTIONS[TRAINING_KEYS[key]!] as OptionSpec<unknown>).aliases ?? {});
  throw valueError(where, shown, aliases.length > 0 ? `${expected}, ${aliases.join(", ")}` : expected, value);
}

/** iteration_schedule: a list of mappings of training keys (output_dir excepted), each value checked as the key's. */
const schedule: KeyCheck = (value, _key, where) => {
  if (value === null) return;
  if (!Array.isArray(value)) throw new SpinNativeError(`${where}: 'iteration_schedule' must be a list of mappings, one per iteration`, "INVALID_ARGUMENT", "config");
  const allowed = Object.keys(TRAINING_KEYS).filter((key) => key !== "output_dir");
  value.forEach((entry, t) => {
    if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
      throw new SpinNativeError(`${where}: iteration_schedule[${t}] must be a mapping of training keys (learning_rate, beta, …)`, "INVALID_ARGUMENT", "config");
    }
    for (const [key, setting] of Object.entries(entry)) {
      if (!allowed.includes(key)) {
        throw new SpinNativeError(`${where}: iteration_schedule[${t}]: unknown key '${key}' — did you mean '${nearestKey(key, allowed)}'?`, "INVALID_ARGUMENT", "config");
      }
      checkTraining(key, setting, where, `iteration_schedule[${t}].${key}`);
    }
  });
};

const fraction: NumberRule = { min: 0, max: 1, minOpen: true };

/** dataset_mixer: {path: fraction}, 0 < fraction ≤ 1, at least one path. */
const mixer: KeyCheck = (value, key, where) => {
  if (value === null) return;
  if (typeof value !== "object" || Array.isArray(value) || Object.keys(value).length === 0) throw valueError(where, key, "a mapping {path: fraction} of at least one path", value);
  for (const [source, share] of Object.entries(value)) {
    if (!fitsRule(share, fraction)) {
      throw new SpinNativeError(`${where}: the dataset_mixer fraction of ${source} must be a number with 0 < fraction ≤ 1, got ${showValue(share)}`, "INVALID_ARGUMENT", "config");
    }
  }
};

const textList: KeyCheck = (value, key, where) => {
  if (value !== null && !(Array.isArray(value) && value.every((v) => typeof v === "string"))) throw valueError(where, key, "a list of strings", value);
};

/** lora_target_modules: a list of module names, or "all-linear". */
const targetModules: KeyCheck = (value, key, where) => {
  if (value !== null && value !== "all-linear") textList(value, key, where);
};

const positiveInteger = number({ integer: true, min: 1 });
const nonNegativeInteger = number({ integer: true, min: 0 });
const positive = number({ min: 0, minOpen: true });

/** The value each run key takes. */
const RUN_CHECKS: Record<(typeof RUN_KEYS)[number], KeyCheck> = {
  model_name_or_path: textValue,
  torch_dtype: oneOf("auto", "float32", "float64", "float16", "bfloat16"),
  device: textValue,
  dataset_mixer: mixer,
  dataset_splits: textList,
  iterations: positiveInteger,
  iteration_schedule: schedule,
  previous_fraction: number(fraction),
  batch_size: positiveInteger,
  max_new_tokens: positiveInteger,
  frac_len: nonNegativeInteger,
  data_frac: nonNegativeInteger,
  prompt_format: oneOf("chat", "spin-instruction"),
  do_sample: flag,
  temperature: number({ min: 0 }),
  top_k: nonNegativeInteger,
  top_p: number({ min: 0, max: 1, minOpen: true }),
  min_p: number({ min: 0, max: 1 }),
  repetition_penalty: positive,
  threads: positiveInteger,
  input: textValue,
  split: oneOf("train", "test"),
  format: oneOf("jsonl", "parquet"),
  opponent: textValue,
  run_dir: textValue,
  ddp_bucket_cap_mb: positive,
  ddp_timeout: positive,
  zero_stage: nonNegativeInteger,
  config_file: textValue,
  allow_config_change: flag,
  use_peft: flag,
  lora_r: positiveInteger,
  lora_alpha: positive,
  lora_dropout: number({ min: 0, max: 1, maxOpen: true }),
  lora_target_modules: targetModules,
  adapter: textValue,
  merge_adapters: flag,
};

/** Keys whose value is text: an override keeps what was typed. */
const TEXT_KEYS: readonly string[] = ["output_dir", ...Object.entries(RUN_CHECKS).filter(([, check]) => check === textValue).map(([key]) => key)];

/** Checks one key's value (unknown keys are checked before); throws naming the key and `where` it was set. */
function checkValue(key: string, value: Value, where: string): void {
  if (Object.hasOwn(TRAINING_KEYS, key)) checkTraining(key, value, where);
  else if (Object.hasOwn(RUN_CHECKS, key)) RUN_CHECKS[key as keyof typeof RUN_CHECKS](value, key, where);
}

/**
 * Reads a YAML config (optional) and applies `--key=value` overrides. Unknown keys and values
 * that do not fit their key are errors naming the key and where it was set.
 */
export async function loadRunConfig(file: string | null, overrides: string[]): Promise<RawConfig> {
  let config: RawConfig = {};
  const origin = new Map<string, string>();
  if (file) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      throw new SpinNativeError(`cannot read config ${file}: ${(error as Error).message}`, "IO", "config");
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (error) {
      throw new SpinNativeError(`${file} is not valid YAML: ${(error as Error).message}`, "INVALID_ARGUMENT", "config");
    }
    if (parsed !== null && (typeof parsed !== "object" || Array.isArray(parsed))) {
      throw new SpinNativeError(`${file}: the config must be a mapping of keys to values`, "INVALID_ARGUMENT", "config");
    }
    config = (parsed ?? {}) as RawConfig;
    checkKeys(config, file);
    for (const key of Object.keys(config)) origin.set(key, file);
  }
  for (const argument of overrides) {
    const [key, value] = parseOverride(argument);
    checkKeys({ [key]: value }, "command line");
    config[key] = value;
    origin.set(key, "command line");
  }
  for (const [key, value] of Object.entries(config)) checkValue(key, value, origin.get(key)!);
  return config;
}

/** The SpinConfig fields a raw config sets; a value that does not fit its key is an error naming the key. */
export function trainingFields(config: RawConfig): Partial<SpinConfig> {
  const fields: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(TRAINING_KEYS)) {
    const value = config[key];
    if (value === undefined) continue;
    checkTraining(key, value, "config");
    fields[field] = trainingValue(key, value);
  }
  return fields as Partial<SpinConfig>;
}

/**
 * The per-iteration training settings of `iteration_schedule` (a list of mappings of training
 * keys, e.g. `[{learning_rate: 5.0e-7, beta: 0.1}, …]`), or undefined when the key is absent.
 * An entry that is not a mapping, holds a key other than a training key (naming the nearest
 * training key) or a value that does not fit its key is an error.
 */
export function iterationSchedule(config: RawConfig): Partial<SpinConfig>[] | undefined {
  const value = config.iteration_schedule;
  if (value === undefined || value === null) return undefined;
  schedule(value, "iteration_schedule", "config");
  return (value as RawConfig[]).map((entry) => trainingFields(entry));
}

export function stringKey(config: RawConfig, key: string, required: true): string;
export function stringKey(config: RawConfig, key: string, required?: false): string | undefined;
export function stringKey(config: RawConfig, key: string, required = false): string | undefined {
  const value = config[key];
  if (value === undefined || value === null) {
    if (required) throw new SpinNativeError(`config: '${key}' is required`, "INVALID_ARGUMENT", "config");
    return undefined;
  }
  if (typeof value !== "string") throw new SpinNativeError(`config: '${key}' must be a string`, "INVALID_ARGUMENT", "config");
  return value;
}

export function numberKey(config: RawConfig, key: string): number | undefined {
  const value = config[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number") throw new SpinNativeError(`config: '${key}' must be a number`, "INVALID_ARGUMENT", "config");
  return value;
}

/**
 * The data-parallel settings of a config, with transformers' names: ddp_bucket_cap_mb (MiB,
 * default 25), ddp_timeout (seconds, default 1800 as transformers; a dead rank fails the job
 * after it) and the ZeRO stage: zero_stage, or else the one in config_file — an accelerate
 * config (its deepspeed_config's zero_stage, or the DeepSpeed JSON its deepspeed_config_file
 * names) or a DeepSpeed JSON (zero_optimization.stage), as the original's --config_file.
 */
export async function distributedOptions(config: RawConfig): Promise<{ bucketBytes?: number; timeoutMs: number; sharding: ShardingStage }> {
  const positive = (key: string) => {
    const value = numberKey(config, key);
    if (value !== undefined && !(value > 0)) throw new SpinNativeError(`config: '${key}' must be a positive number`, "INVALID_ARGUMENT", "config");
    return value;
  };
  const bucketMb = positive("ddp_bucket_cap_mb");
  const configFile = stringKey(config, "config_file");
  const given = numberKey(config, "zero_stage");
  const fromFile = given === undefined && configFile !== undefined;
  const stage = given ?? (fromFile ? await zeroStageOf(configFile) : 0);
  return {
    ...(bucketMb !== undefined ? { bucketBytes: Math.round(bucketMb * 2 ** 20) } : {}),
    timeoutMs: (positive("ddp_timeout") ?? 1800) * 1000,
    sharding: shardingStage(stage, `config: zero_stage${fromFile ? ` (from ${configFile})` : ""}`),
  };
}

/** The ZeRO stage an accelerate or DeepSpeed config file asks for (0 when it names none). */
async function zeroStageOf(file: string): Promise<unknown> {
  const read = async (name: string): Promise<Record<string, unknown>> => {
    let text: string;
    try {
      text = await readFile(name, "utf8");
    } catch (error) {
      throw new SpinNativeError(`config: cannot read config_file ${name}: ${(error as Error).message}`, "IO", "config");
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text); // YAML is a superset of JSON
    } catch (error) {
      throw new SpinNativeError(`config: config_file ${name} is neither YAML nor JSON: ${(error as Error).message}`, "INVALID_ARGUMENT", "config");
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new SpinNativeError(`config: config_file ${name} must hold a mapping`, "INVALID_ARGUMENT", "config");
    }
    return parsed as Record<string, unknown>;
  };
  const field = (object: unknown, key: string): unknown => (object !== null && typeof object === "object" ? (object as Record<string, unknown>)[key] : undefined);
  const top = await read(file);
  const accelerate = field(top, "deepspeed_config");
  if (field(accelerate, "zero_stage") !== undefined) return field(accelerate, "zero_stage");
  const deepspeedFile = field(accelerate, "deepspeed_config_file");
  const deepspeed = typeof deepspeedFile === "string" ? await read(path.resolve(path.dirname(file), deepspeedFile)) : top;
  return field(field(deepspeed, "zero_optimization"), "stage") ?? 0;
}


/**
 * The LoRA settings of a config (the original's ModelArguments: use_peft, lora_r, lora_alpha,
 * lora_dropout, lora_target_modules), or null without use_peft.
 */
export function loraOptions(config: RawConfig): LoraOptions | null {
  if (config.use_peft !== true) return null;
  const targets = config.lora_target_modules;
  return {
    ...(numberKey(config, "lora_r") !== undefined ? { r: numberKey(config, "lora_r")! } : {}),
    ...(numberKey(config, "lora_alpha") !== undefined ? { alpha: numberKey(config, "lora_alpha")! } : {}),
    ...(numberKey(config, "lora_dropout") !== undefined ? { dropout: numberKey(config, "lora_dropout")! } : {}),
    ...(targets !== undefined && targets !== null ? { targetModules: targets === "all-linear" ? "all-linear" : (targets as string[]) } : {}),
  };
}
