// What the commands share: reading the run config (with `threads`), output folders, Ctrl-C,
// model-load and generation options from config keys, and rows from datasets.
import { mkdir } from "node:fs/promises";

import type { DType } from "../../core/dtype.js";
import { SpinNativeError } from "../../core/errors.js";
import { resolveSplitFiles } from "../../data/dataset-files.js";
import { type RawRow, readRows, readSpinRows } from "../../data/dataset-read.js";
import { mixDatasets } from "../../data/mixer.js";
import type { SpinRow } from "../../data/rows.js";
import { rankDevice } from "../../distributed/launch.js";
import type { CausalLM, LoadModelOptions } from "../../model/causal-lm.js";
import { TRAINING_DEFAULTS } from "../../spin/config.js";
import type { SelfPlayOptions } from "../../spin/self-play-options.js";
import { type RawConfig, loraOptions, numberKey, stringKey } from "../config.js";

/** A command's arguments: an optional config file first, then `--key=value` flags. */
export function splitArguments(argv: string[]): { file: string | null; flags: string[] } {
  const file = argv[0] && !argv[0].startsWith("--") ? argv[0] : null;
  return { file, flags: file ? argv.slice(1) : argv };
}

/** Raw rows (any shape) of one split of a source, file after file. */
export async function* streamRawRows(source: string, split: "train" | "test"): AsyncGenerator<RawRow> {
  for (const file of await resolveSplitFiles(source, split)) yield* readRows(file);
}

/** Creates an output folder before any work, so one that cannot be made fails at once, with the OS's reason. */
export async function makeOutputFolder(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (error) {
    throw new SpinNativeError(`cannot create output folder ${dir}: ${(error as Error).message}`, "IO", "cli");
  }
}

/** A run stopped by Ctrl-C: exit code 130 (as a shell reports a SIGINT), and how to go on. */
export function interrupted(what: string): void {
  process.exitCode = 130;
  process.stderr.write(`spin-native: interrupted: ${what}; re-run the same command to resume\n`);
}

/** An AbortSignal that Ctrl-C fires. */
export function interruptSignal(): AbortSignal {
  const abort = new AbortController();
  process.once("SIGINT", () => abort.abort());
  return abort.signal;
}

/**
 * The model of model_name_or_path with its adapter: the `adapter` folder when given, else with
 * use_peft and `training` a fresh adapter (the LoRA keys).
 */
export async function loadModel(config: RawConfig, training = false): Promise<CausalLM> {
  const { CausalLM } = await import("../../model/causal-lm.js");
  const adapter = stringKey(config, "adapter");
  const lora = loraOptions(config);
  const attach = adapter ? { adapter } : lora && training ? { lora } : {};
  return CausalLM.load(stringKey(config, "model_name_or_path", true), { ...loadOptions(config), ...attach });
}

export function loadOptions(config: RawConfig): LoadModelOptions {
  const dtype = stringKey(config, "torch_dtype");
  const device = stringKey(config, "device");
  // Under launch, "cuda" is this rank's GPU.
  return { ...(dtype && dtype !== "auto" ? { dtype: dtype as DType } : {}), ...(device ? { device: rankDevice(device) } : {}) };
}

export function generationOptions(config: RawConfig): SelfPlayOptions {
  const pick = <T>(key: string) => (config[key] ?? undefined) as T | undefined;
  const options: SelfPlayOptions = {};
  const set = <K extends keyof SelfPlayOptions>(field: K, value: SelfPlayOptions[K] | undefined) => {
    if (value !== undefined) options[field] = value;
  };
  set("batchSize", numberKey(config, "batch_size"));
  set("maxNewTokens", numberKey(config, "max_new_tokens"));
  set("fracLen", numberKey(config, "frac_len"));
  set("dataFrac", numberKey(config, "data_frac"));
  set("promptFormat", pick<SelfPlayOptions["promptFormat"]>("prompt_format"));
  set("doSample", pick<boolean>("do_sample"));
  set("temperature", numberKey(config, "temperature"));
  set("topK", numberKey(config, "top_k"));
  set("topP", numberKey(config, "top_p"));
  set("minP", numberKey(config, "min_p"));
  set("repetitionPenalty", numberKey(config, "repetition_penalty"));
  set("format", pick<SelfPlayOptions["format"]>("format"));
  set("seed", numberKey(config, "seed"));
  return options;
}

/** dataset_mixer {path: fraction} (or a single input path) → rows of one split. */
export async function mixedRows(config: RawConfig, split: "train" | "test"): Promise<SpinRow[]> {
  const mixer = config.dataset_mixer;
  if (mixer && typeof mixer === "object" && !Array.isArray(mixer)) {
    const sources = [];
    for (const [source, fraction] of Object.entries(mixer)) {
      sources.push({ rows: await readSpinRows(source, split), fraction: Number(fraction) });
    }
    return mixDatasets(sources, numberKey(config, "seed") ?? TRAINING_DEFAULTS.seed);
  }
  return readSpinRows(stringKey(config, "input", true), split);
}
