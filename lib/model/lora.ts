// LoRA adapters in PEFT's format (adapter_config.json + adapter_model.safetensors, tensors
// named "base_model.model.<module>.lora_A.weight"). The native decoder computes
// W x + b + s·B A dropout(x) with s = α/r (α/√r for rsLoRA); this file names, initialises,
// reads, writes and checks adapters. A fresh adapter is PEFT's default: A Kaiming-uniform
// (bound 1/√in, PyTorch's nn.Linear init), B zero, so the model's outputs are unchanged.
import { readFile } from "node:fs/promises";
import path from "node:path";

import { writeDirAtomic, writeFileAtomic } from "../core/atomic.js";
import { tensor } from "../core/create.js";
import { SpinNativeError } from "../core/errors.js";
import type { DType } from "../core/dtype.js";
import type { NativeModel } from "../core/native-types.js";
import { mulberry32 } from "../core/random.js";
import { Tensor } from "../core/tensor.js";
import { describeRule, fitsRule, showValue } from "../core/validate.js";
import { loadSafetensors, saveSafetensors } from "./safetensors.js";

/** LoRA settings, with PEFT's LoraConfig meaning. */
export interface LoraOptions {
  /** Rank r (PEFT `r`, the original's `lora_r`). Default 16. */
  r?: number;
  /** α (`lora_alpha`); the update is scaled by α/r. Default 32. */
  alpha?: number;
  /** Dropout on the adapter's input while training (`lora_dropout`). Default 0.05. */
  dropout?: number;
  /**
   * Modules to adapt, by HF name or name suffix (`q_proj`, `self_attn.v_proj`, GPT-2's
   * `c_attn`, …), or "all-linear" (every projection of the decoder, not lm_head). Default:
   * PEFT's for the family (q_proj and v_proj; GPT-2: c_attn).
   */
  targetModules?: readonly string[] | "all-linear";
  /** rsLoRA: scale by α/√r instead of α/r. Default false. */
  useRslora?: boolean;
  /** Seeds A's initialisation. Default 0. */
  seed?: number;
}

/** An attached adapter's settings. */
export interface LoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  /** What the adapter was asked to target (as given, or as the adapter_config.json says). */
  targetModules: string[] | "all-linear";
  useRslora: boolean;
  /** The adapted modules' full names, in forward order. */
  modules: string[];
}

/**
 * The adapter's dtype over a base of `base`: the base's own for float32 and float64, float32
 * over a 16-bit base (PEFT's autocast_adapter_dtype).
 */
export function adapterDtype(base: DType): DType {
  return base === "float64" ? "float64" : "float32";
}

/** PEFT's prefix of every tensor name in adapter_model.safetensors (a causal LM). */
const PEFT_PREFIX = "base_model.model.";
export const ADAPTER_CONFIG = "adapter_config.json";
export const ADAPTER_WEIGHTS = "adapter_model.safetensors";

const DEFAULT_TARGETS: Record<string, string[]> = { gpt2: ["c_attn"], llama: ["q_proj", "v_proj"], mistral: ["q_proj", "v_proj"], qwen2: ["q_proj", "v_proj"] };

function invalid(message: string, call: string): SpinNativeError {
  return new SpinNativeError(message, "INVALID_ARGUMENT", call);
}

/** The modules of `available` that `targets` select (PEFT's rule: the full name, or a suffix after a dot). */
function selectModules(available: readonly string[], targets: readonly string[] | "all-linear", call: string): string[] {
  if (targets === "all-linear") return [...available];
  const selected = available.filter((name) => targets.some((t) => name === t || name.endsWith(`.${t}`)));
  const unmatched = targets.filter((t) => !available.some((name) => name === t || name.endsWith(`.${t}`)));
  if (unmatched.length > 0) {
    const kinds = [...new Set(available.map((name) => name.split(".").slice(-1)[0]!))];
    throw invalid(`${call}: target module${unmatched.length > 1 ? "s" : ""} ${unmatched.map((t) => `'${t}'`).join(", ")} match no linear module of this model; its linear modules: ${kinds.join(", ")} (or "all-linear")`, call);
  }
  return selected;
}

/** The fields of {@link LoraOptions}: anything else is refused (a misspelt option would otherwise be ignored). */
const LORA_OPTION_KEYS: readonly string[] = ["r", "alpha", "dropout", "targetModules", "useRslora", "seed"] satisfies (keyof LoraOptions)[];

/** Checks and fills LoRA options, naming the one that is wrong. */
export function resolveLoraOptions(options: LoraOptions, modelType: string, available: readonly string[], call: string): LoraConfig & { seed: number } {
  if (typeof options !== "object" || options === null || Array.isArray(options)) throw invalid(`${call}: LoRA options must be an object, got ${showValue(options)}`, call);
  const unknown = Object.keys(options).filter((key) => !LORA_OPTION_KEYS.includes(key));
  if (unknown.length > 0) throw invalid(`${call}: unknown LoRA option ${unknown.map((k) => `'${k}'`).join(", ")}; the options are ${LORA_OPTION_KEYS.join(", ")}`, call);
  if (options.useRslora !== undefined && typeof options.useRslora !== "boolean") throw invalid(`${call}: useRslora must be true or false, got ${showValue(options.useRslora)}`, call);
  const r = options.r ?? 16;
  const alpha = options.alpha ?? 32;
  const dropout = options.dropout ?? 0.05;
  const seed = options.seed ?? 0;
  const checks: [string, unknown, Parameters<typeof fitsRule>[1]][] = [
    ["r", r, { integer: true, min: 1 }],
    ["alpha", alpha, { min: 0, minOpen: true }],
    ["dropout", dropout, { min: 0, max: 1, maxOpen: true }],
    ["seed", seed, { integer: true, min: 0, max: 2 ** 32 - 1 }],
  ];
  for (const [name, value, rule] of checks) if (!fitsRule(value, rule)) throw invalid(`${call}: ${name} must be ${describeRule(rule)}, got ${showValue(value)}`, call);
  const targets = options.targetModules ?? DEFAULT_TARGETS[modelType] ?? "all-linear";
  if (targets !== "all-linear" && !(Array.isArray(targets) && targets.length > 0 && targets.every((t) => typeof t === "string" && t !== ""))) {
    throw invalid(`${call}: targetModules must be "all-linear" or a non-empty list of module names, got ${showValue(targets)}`, call);
  }
  if (options.useRslora !== undefined && typeof options.useRslora !== "boolean") throw invalid(`${call}: useRslora must be true or false, got ${showValue(options.useRslora)}`, call);
  const modules = selectModules(available, targets, call);
  return { r, alpha, dropout, targetModules: targets === "all-linear" ? targets : [...targets], useRslora: options.useRslora ?? false, modules, seed };
}

/** The scale of the adapter's update: α/r, or α/√r for rsLoRA. */
export function loraScale(config: Pick<LoraConfig, "r" | "alpha" | "useRslora">): number {
  return config.useRslora ? config.alpha / Math.sqrt(config.r) : config.alpha / config.r;
}

/** Fresh adapter tensors (of `dtype`, on `device`): A ~ U(−1/√in, 1/√in), B = 0. */
export function initialAdapterTensors(native: NativeModel, config: LoraConfig & { seed: number }, dtype: DType, device: string): Record<string, Tensor> {
  const random = mulberry32(config.seed);
  const shapes = new Map(native.linearModules().map((m) => [m.name, m]));
  const tensors: Record<string, Tensor> = {};
  for (const name of config.modules) {
    const { in: fanIn, out } = shapes.get(name)!;
    const bound = 1 / Math.sqrt(fanIn);
    const a = Float32Array.from({ length: config.r * fanIn }, () => (2 * random() - 1) * bound);
    tensors[`${name}.lora_A.weight`] = tensor(a, { shape: [config.r, fanIn], device, dtype });
    tensors[`${name}.lora_B.weight`] = tensor(new Float32Array(out * config.r), { shape: [out, config.r], device, dtype });
  }
  return tensors;
}

/** Reads a PEFT LoRA folder: its settings and its tensors (of `dtype`, on `device`), named without PEFT's prefix. */
export async function readAdapter(
  dir: string,
  modelType: string,
  available: readonly string[],
  dtype: DType,
  device: string,
): Promise<{ config: LoraConfig; tensors: Record<string, Tensor> }> {
  const call = "loadAdapter";
  const configFile = path.join(dir, ADAPTER_CONFIG);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(await readFile(configFile, "utf8")) as Record<string, unknown>;
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === "ENOENT" ? "not found" : (error as Error).message;
    throw new SpinNativeError(`${call}: cannot read ${configFile}: ${reason}`, "IO", call);
  }
  if (raw === null || typeof raw !== "object") throw invalid(`${call}: ${configFile} must hold a JSON object`, call);
  const unsupported = (key: string, why: string) => {
    throw invalid(`${call}: ${configFile}: ${key} ${why} is not supported (plain LoRA only)`, call);
  };
  if (raw.peft_type !== undefined && raw.peft_type !== "LORA") unsupported("peft_type", `'${String(raw.peft_type)}'`);
  if (raw.bias !== undefined && raw.bias !== "none") unsupported("bias", `'${String(raw.bias)}'`);
  if (raw.use_dora === true) unsupported("use_dora", "true");
  for (const key of ["rank_pattern", "alpha_pattern"]) {
    if (raw[key] && typeof raw[key] === "object" && Object.keys(raw[key]).length > 0) unsupported(key, "(per-module ranks or alphas)");
  }
  if (Array.isArray(raw.modules_to_save) && raw.modules_to_save.length > 0) unsupported("modules_to_save", JSON.stringify(raw.modules_to_save));
  const targets = raw.target_modules === "all-linear" ? "all-linear" : typeof raw.target_modules === "string" ? [raw.target_modules] : (raw.target_modules as string[] | undefined);
  const resolved = resolveLoraOptions(
    { r: raw.r as number, alpha: raw.lora_alpha as number, dropout: (raw.lora_dropout as number | undefined) ?? 0, useRslora: (raw.use_rslora as boolean | undefined) ?? false, ...(targets ? { targetModules: targets } : {}) },
    modelType,
    available,
    `${call}: ${configFile}`,
  );
  const tensors = await readAdapterTensors(dir, dtype, device);
  const modules = [...new Set(Object.keys(tensors).map((name) => name.replace(/\.lora_[AB]\.weight$/, "")))];
  const ordered = available.filter((name) => modules.includes(name));
  return { config: { ...resolved, modules: ordered.length === modules.length ? ordered : modules }, tensors };
}

/** The tensors of a PEFT folder's adapter_model.safetensors (as `dtype`, on `device`), named without PEFT's prefix. */
export async function readAdapterTensors(dir: string, dtype: DType, device: string): Promise<Record<string, Tensor>> {
  const weightsFile = path.join(dir, ADAPTER_WEIGHTS);
  const loaded = await loadSafetensors(weightsFile, { dtype, device }).catch((error: unknown) => {
    if (error instanceof SpinNativeError) throw error;
    throw new SpinNativeError(`loadAdapter: cannot read ${weightsFile}: ${(error as Error).message}`, "IO", "loadAdapter");
  });
  const tensors: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(loaded)) {
    const plain = name.startsWith(PEFT_PREFIX) ? name.slice(PEFT_PREFIX.length) : name;
    // PEFT names the adapter "default" inside a model, and drops the name in the file.
    tensors[plain.replace(/\.lora_([AB])\.default\.weight$/, ".lora_$1.weight")] = t;
  }
  return tensors;
}

/** Writes a PEFT LoRA folder atomically: adapter_config.json and adapter_model.safetensors (the adapter's dtype). */
export async function writeAdapter(dir: string, config: LoraConfig, tensors: Record<string, Tensor>, baseModel: string | null): Promise<void> {
  const peftConfig = {
    base_model_name_or_path: baseModel,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    lora_alpha: config.alpha,
    lora_dropout: config.dropout,
    modules_to_save: null,
    peft_type: "LORA",
    r: config.r,
    rank_pattern: {},
    alpha_pattern: {},
    target_modules: config.targetModules,
    task_type: "CAUSAL_LM",
    use_rslora: config.useRslora,
    use_dora: false,
  };
  await writeDirAtomic(dir, async (temp) => {
    const named: Record<string, Tensor> = {};
    const copies: Tensor[] = [];
    for (const [name, t] of Object.entries(tensors)) {
      const cpu = t.device === "cpu" ? t : t.to({ device: "cpu" });
      if (cpu !== t) copies.push(cpu);
      named[PEFT_PREFIX + name] = cpu;
    }
    try {
      await saveSafetensors(path.join(temp, ADAPTER_WEIGHTS), named);
    } finally {
      for (const t of copies) t.dispose();
    }
    await writeFileAtomic(path.join(temp, ADAPTER_CONFIG), JSON.stringify(peftConfig, null, 2) + "\n");
  });
}

/** Native handles of named tensors. */
export function handlesOf(tensors: Record<string, Tensor>): Record<string, ReturnType<typeof Tensor.handleOf>> {
  return Object.fromEntries(Object.entries(tensors).map(([name, t]) => [name, Tensor.handleOf(t)]));
}
