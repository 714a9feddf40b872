// Hugging Face config.json → the normalised architecture settings the native decoder takes.
// Defaults are those of the transformers config classes (LlamaConfig, MistralConfig,
// Qwen2Config, GPT2Config), so a minimal config.json reads as transformers reads it.
import type { NativeModelConfig } from "../core/native-types.js";
import type { DType } from "../core/dtype.js";
import { SpinNativeError } from "../core/errors.js";

export type Architecture = NativeModelConfig["architecture"];

/** What the native decoder needs (NativeModelConfig), plus what the checkpoint says of dtype and tokens. */
export interface ModelConfig extends NativeModelConfig {
  modelType: "llama" | "mistral" | "qwen2" | "gpt2";
  /** The checkpoint's torch_dtype, when it names one spin-native knows. */
  torchDtype: DType | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
}

export const SUPPORTED_MODEL_TYPES = ["llama", "mistral", "qwen2", "gpt2"] as const;

type Json = Record<string, unknown>;

class Fields {
  constructor(
    private readonly json: Json,
    private readonly file: string,
  ) {}

  fail(key: string, expected: string): never {
    throw new SpinNativeError(`${this.file}: field '${key}' must be ${expected}, got ${JSON.stringify(this.json[key])}`, "INVALID_ARGUMENT", "config");
  }
  has(key: string): boolean {
    return this.json[key] !== undefined && this.json[key] !== null;
  }
  int(key: string, fallback?: number): number {
    if (!this.has(key)) return fallback ?? this.fail(key, "a positive integer");
    const value = this.json[key];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) this.fail(key, "a positive integer");
    return value;
  }
  count(key: string, fallback: number): number {
    if (!this.has(key)) return fallback;
    const value = this.json[key];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) this.fail(key, "a non-negative integer");
    return value;
  }
  number(key: string, fallback?: number): number {
    if (!this.has(key)) return fallback ?? this.fail(key, "a positive number");
    const value = this.json[key];
    if (typeof value !== "number" || !(value > 0)) this.fail(key, "a positive number");
    return value;
  }
  bool(key: string, fallback: boolean): boolean {
    if (!this.has(key)) return fallback;
    const value = this.json[key];
    if (typeof value !== "boolean") this.fail(key, "a boolean");
    return value;
  }
  string(key: string, fallback: string): string {
    if (!this.has(key)) return fallback;
    const value = this.json[key];
    if (typeof value !== "string") this.fail(key, "a string");
    return value;
  }
  tokenIds(key: string): number[] {
    if (!this.has(key)) return [];
    const value = this.json[key];
    const ids = Array.isArray(value) ? value : [value];
    if (!ids.every((id) => typeof id === "number" && Number.isSafeInteger(id) && id >= 0)) this.fail(key, "a token id or a list of them");
    return ids as number[];
  }
}

const TORCH_DTYPES: Record<string, DType> = { float32: "float32", float16: "float16", bfloat16: "bfloat16", float64: "float64" };

/** Normalises a parsed config.json; `file` names it in errors. */
export function parseModelConfig(json: unknown, file = "config.json"): ModelConfig {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new SpinNativeError(`${file}: not a JSON object`, "INVALID_ARGUMENT", "config");
  }
  const f = new Fields(json as Json, file);
  const modelType = f.string("model_type", "");
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new SpinNativeError(
      `${file}: unknown model_type '${modelType}' (supported: ${SUPPORTED_MODEL_TYPES.join(", ")})`,
      "INVALID_ARGUMENT",
      "config",
    );
  }
  const torchDtype = TORCH_DTYPES[f.string("torch_dtype", f.string("dtype", ""))] ?? null;
  const ids = { bosTokenId: f.tokenIds("bos_token_id")[0] ?? null, eosTokenIds: f.tokenIds("eos_token_id"), padTokenId: f.tokenIds("pad_token_id")[0] ?? null };
  const noRope = { ropeTheta: 10000, ropeScaling: "none" as const, ropeFactor: 1, ropeLowFreqFactor: 1, ropeHighFreqFactor: 4, ropeOriginalMaxPositions: 8192 };

  if (modelType === "gpt2") {
    const activation = f.string("activation_function", "gelu_new");
    if (activation !== "gelu_new" && activation !== "gelu_pytorch_tanh") f.fail("activation_function", "gelu_new");
    const hidden = f.int("n_embd", 768);
    const heads = f.int("n_head", 12);
    if (hidden % heads !== 0) f.fail("n_head", `a divisor of n_embd (${hidden})`);
    return {
      modelType,
      architecture: "gpt2",
      vocabSize: f.int("vocab_size", 50257),
      hiddenSize: hidden,
      intermediateSize: f.int("n_inner", 4 * hidden),
      numLayers: f.int("n_layer", 12),
      numHeads: heads,
      numKvHeads: heads,
      headDim: hidden / heads,
      maxPositions: f.int("n_positions", 1024),
      normEps: f.number("layer_norm_epsilon", 1e-5),
      tieWordEmbeddings: f.bool("tie_word_embeddings", true),
      ...noRope,
      slidingWindow: null,
      slidingWindowFromLayer: 0,
      qkvBias: true,
      oBias: true,
      mlpBias: true,
      torchDtype,
      ...ids,
    };
  }

  const activation = f.string("hidden_act", "silu");
  if (activation !== "silu") f.fail("hidden_act", "silu");
  const hidden = f.int("hidden_size", 4096);
  const heads = f.int("num_attention_heads", 32);
  const headDim = f.int("head_dim", Math.floor(hidden / heads));
  const scaling = (json as Json).rope_scaling;
  let rope: Omit<typeof noRope, "ropeScaling"> & { ropeScaling: ModelConfig["ropeScaling"] } = { ...noRope, ropeTheta: f.number("rope_theta", 10000) };
  if (scaling !== undefined && scaling !== null) {
    if (typeof scaling !== "object") f.fail("rope_scaling", "an object or null");
    const s = new Fields(scaling as Json, `${file} rope_scaling`);
    const kind = s.string("rope_type", s.string("type", "default"));
    if (kind === "linear") {
      rope = { ...rope, ropeScaling: "linear", ropeFactor: s.number("factor") };
    } else if (kind === "llama3") {
      rope = {
        ...rope,
        ropeScaling: "llama3",
        ropeFactor: s.number("factor"),
        ropeLowFreqFactor: s.number("low_freq_factor"),
        ropeHighFreqFactor: s.number("high_freq_factor"),
        ropeOriginalMaxPositions: s.int("original_max_position_embeddings"),
      };
    } else if (kind !== "default") {
      s.fail("rope_type", "default, linear or llama3");
    }
  }
  const qwen2 = modelType === "qwen2";
  const attentionBias = f.bool("attention_bias", false);
  const useSlidingWindow = modelType === "mistral" || (qwen2 && f.bool("use_sliding_window", false));
  return {
    modelType: modelType as ModelConfig["modelType"],
    architecture: "llama",
    vocabSize: f.int("vocab_size", 32000),
    hiddenSize: hidden,
    intermediateSize: f.int("intermediate_size", 11008),
    numLayers: f.int("num_hidden_layers", 32),
    numHeads: heads,
    numKvHeads: f.int("num_key_value_heads", heads),
    headDim,
    maxPositions: f.int("max_position_embeddings", 2048),
    normEps: f.number("rms_norm_eps", 1e-6),
    tieWordEmbeddings: f.bool("tie_word_embeddings", false),
    ...rope,
    // MistralConfig defaults sliding_window to 4096; an explicit null means full attention.
    slidingWindow: !useSlidingWindow
      ? null
      : f.has("sliding_window")
        ? f.int("sliding_window")
        : modelType === "mistral" && !("sliding_window" in (json as Json))
          ? 4096
          : null,
    slidingWindowFromLayer: qwen2 ? f.count("max_window_layers", 28) : 0,
    qkvBias: qwen2 || attentionBias,
    oBias: !qwen2 && attentionBias,
    mlpBias: f.bool("mlp_bias", false),
    torchDtype,
    ...ids,
  };
}
