// Tiny random checkpoints in exact Hugging Face layout (config.json as transformers writes it,
// state_dict names, Conv1D [in, out] weights for GPT-2), written to temp folders. Nothing is
// committed: every test file makes its own root with tempRoot() and removes it afterwards.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { afterAll, beforeAll } from "vitest";

import { type Tensor, manualSeed, randn, saveCheckpointTensors, saveSafetensors, scope, setNumThreads, tensor } from "../lib/index.js";

export type Variant =
  | "llama"
  | "llama-tied"
  | "llama-gqa"
  | "llama-rope-linear"
  | "llama-rope-llama3"
  | "llama-attn-bias"
  | "mistral"
  | "qwen2"
  | "gpt2";

export const VARIANTS: readonly Variant[] = [
  "llama",
  "llama-tied",
  "llama-gqa",
  "llama-rope-linear",
  "llama-rope-llama3",
  "llama-attn-bias",
  "mistral",
  "qwen2",
  "gpt2",
];

/** Vocabulary of every fixture: ids 0..VOCAB-1. */
export const VOCAB = 64;
/** Layers of every fixture. */
export const LAYERS = 2;

/** A fresh temp folder for one test file (remove it with removeRoot in afterAll). */
export function tempRoot(tag: string): string {
  return mkdtempSync(path.join(os.tmpdir(), `spin-test-${tag}-`));
}

export function removeRoot(root: string): void {
  rmSync(root, { recursive: true, force: true });
}

type Json = Record<string, unknown>;

/** config.json for a variant, with the keys transformers' to_json_string writes (sorted, as it does). */
export function hfConfig(variant: Variant): Json {
  if (variant === "gpt2") {
    return sortKeys({
      activation_function: "gelu_new",
      architectures: ["GPT2LMHeadModel"],
      attn_pdrop: 0.1,
      bos_token_id: VOCAB - 1,
      embd_pdrop: 0.1,
      eos_token_id: VOCAB - 1,
      initializer_range: 0.02,
      layer_norm_epsilon: 1e-5,
      model_type: "gpt2",
      n_ctx: 32,
      n_embd: 16,
      n_head: 2,
      n_inner: null,
      n_layer: LAYERS,
      n_positions: 32,
      reorder_and_upcast_attn: false,
      resid_pdrop: 0.1,
      scale_attn_by_inverse_layer_idx: false,
      scale_attn_weights: true,
      summary_activation: null,
      summary_first_dropout: 0.1,
      summary_proj_to_labels: true,
      summary_type: "cls_index",
      summary_use_proj: true,
      tie_word_embeddings: true,
      torch_dtype: "float32",
      transformers_version: "4.46.3",
      use_cache: true,
      vocab_size: VOCAB,
    });
  }
  const gqa = variant === "llama-gqa";
  const base: Json = {
    attention_dropout: 0.0,
    bos_token_id: 1,
    eos_token_id: 2,
    hidden_act: "silu",
    hidden_size: gqa ? 32 : 16,
    initializer_range: 0.02,
    intermediate_size: 40,
    max_position_embeddings: 64,
    num_attention_heads: gqa ? 4 : 2,
    num_hidden_layers: LAYERS,
    num_key_value_heads: gqa ? 2 : 2,
    rms_norm_eps: 1e-6,
    rope_theta: 10000.0,
    tie_word_embeddings: false,
    torch_dtype: "float32",
    transformers_version: "4.46.3",
    use_cache: true,
    vocab_size: VOCAB,
  };
  if (variant === "mistral") {
    return sortKeys({ ...base, architectures: ["MistralForCausalLM"], head_dim: 8, model_type: "mistral", rms_norm_eps: 1e-5, sliding_window: 3 });
  }
  if (variant === "qwen2") {
    // use_sliding_window false: the sliding_window value must be ignored (as transformers does).
    return sortKeys({
      ...base,
      architectures: ["Qwen2ForCausalLM"],
      bos_token_id: 60,
      eos_token_id: 61,
      max_window_layers: 1,
      model_type: "qwen2",
      rope_theta: 1000000.0,
      sliding_window: 2,
      use_sliding_window: false,
    });
  }
  const llama: Json = {
    ...base,
    architectures: ["LlamaForCausalLM"],
    attention_bias: variant === "llama-attn-bias",
    head_dim: gqa ? 8 : 8,
    mlp_bias: false,
    model_type: "llama",
    pretraining_tp: 1,
    rope_scaling: null,
  };
  if (variant === "llama-tied") llama.tie_word_embeddings = true;
  if (variant === "llama-rope-linear") llama.rope_scaling = { factor: 2.0, type: "linear" };
  if (variant === "llama-rope-llama3") {
    // head_dim 8, theta 1e4: wavelengths 2π·{1, 10, 100, 1000} ≈ 6.3, 63, 628, 6283 against
    // high/low thresholds 64/4 = 16 and 64/1 = 64: one high, one medium, two low frequencies.
    llama.rope_scaling = { factor: 8.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 64, rope_type: "llama3" };
  }
  return sortKeys(llama);
}

function sortKeys(json: Json): Json {
  return Object.fromEntries(Object.keys(json).sort().map((k) => [k, json[k]]));
}

/** A random tensor ~ N(mean, std²) (float32) from libtorch's seeded generator. */
function normal(shape: number[], std = 0.2, mean = 0): Tensor {
  return scope(() => randn(shape).mul(std).add(mean));
}

/** The checkpoint's tensors by their on-disk (Hugging Face) names, float32; the caller disposes them. */
export function buildTensors(variant: Variant, seed = 1234, c: Json = hfConfig(variant)): Record<string, Tensor> {
  manualSeed(seed);
  const t: Record<string, Tensor> = {};
  if (variant === "gpt2") {
    const h = c.n_embd as number;
    const inner = 4 * h;
    t["transformer.wte.weight"] = normal([VOCAB, h]);
    t["transformer.wpe.weight"] = normal([c.n_positions as number, h]);
    for (let i = 0; i < LAYERS; i++) {
      const p = `transformer.h.${i}.`;
      t[p + "ln_1.weight"] = normal([h], 0.2, 1);
      t[p + "ln_1.bias"] = normal([h]);
      t[p + "attn.c_attn.weight"] = normal([h, 3 * h]); // Conv1D: [in, out]
      t[p + "attn.c_attn.bias"] = normal([3 * h]);
      t[p + "attn.c_proj.weight"] = normal([h, h]);
      t[p + "attn.c_proj.bias"] = normal([h]);
      t[p + "ln_2.weight"] = normal([h], 0.2, 1);
      t[p + "ln_2.bias"] = normal([h]);
      t[p + "mlp.c_fc.weight"] = normal([h, inner]);
      t[p + "mlp.c_fc.bias"] = normal([inner]);
      t[p + "mlp.c_proj.weight"] = normal([inner, h]);
      t[p + "mlp.c_proj.bias"] = normal([h]);
    }
    t["transformer.ln_f.weight"] = normal([h], 0.2, 1);
    t["transformer.ln_f.bias"] = normal([h]);
    return t; // tied: no lm_head.weight on disk, as save_pretrained writes it
  }
  const h = c.hidden_size as number;
  const headDim = (c.head_dim as number | undefined) ?? h / (c.num_attention_heads as number);
  const qOut = (c.num_attention_heads as number) * headDim;
  const kvOut = (c.num_key_value_heads as number) * headDim;
  const inter = c.intermediate_size as number;
  const qkvBias = variant === "qwen2" || variant === "llama-attn-bias";
  const oBias = variant === "llama-attn-bias";
  t["model.embed_tokens.weight"] = normal([VOCAB, h]);
  for (let i = 0; i < LAYERS; i++) {
    const p = `model.layers.${i}.`;
    t[p + "self_attn.q_proj.weight"] = normal([qOut, h]);
    t[p + "self_attn.k_proj.weight"] = normal([kvOut, h]);
    t[p + "self_attn.v_proj.weight"] = normal([kvOut, h]);
    t[p + "self_attn.o_proj.weight"] = normal([h, qOut]);
    if (qkvBias) {
      t[p + "self_attn.q_proj.bias"] = normal([qOut]);
      t[p + "self_attn.k_proj.bias"] = normal([kvOut]);
      t[p + "self_attn.v_proj.bias"] = normal([kvOut]);
    }
    if (oBias) t[p + "self_attn.o_proj.bias"] = normal([h]);
    t[p + "mlp.gate_proj.weight"] = normal([inter, h]);
    t[p + "mlp.up_proj.weight"] = normal([inter, h]);
    t[p + "mlp.down_proj.weight"] = normal([h, inter]);
    t[p + "input_layernorm.weight"] = normal([h], 0.2, 1);
    t[p + "post_attention_layernorm.weight"] = normal([h], 0.2, 1);
  }
  t["model.norm.weight"] = normal([h], 0.2, 1);
  if (c.tie_word_embeddings !== true) t["lm_head.weight"] = normal([VOCAB, h]);
  return t;
}

export interface FixtureOptions {
  seed?: number;
  /** Stored dtype (torch_dtype follows). */
  dtype?: "float32" | "float16" | "bfloat16";
  /** Write model-0000k-of-0000n shards + index instead of one file. */
  maxShardBytes?: number;
  /** GPT-2 as on the hub: names without "transformer.", with attn.bias / attn.masked_bias buffers. */
  gpt2HubNames?: boolean;
  /** Extra files to write into the folder (name → content). */
  files?: Record<string, string>;
  /** Overrides merged into config.json. */
  config?: Json;
  /** Size overrides (e.g. intermediate_size) that config.json and the weights both follow. */
  sizes?: Json;
}

/** Writes a complete checkpoint folder; returns its config.json object. */
export async function writeFixture(dir: string, variant: Variant, options: FixtureOptions = {}): Promise<Json> {
  mkdirSync(dir, { recursive: true });
  const sized = { ...hfConfig(variant), ...(options.sizes ?? {}) };
  const config = { ...sized, ...(options.config ?? {}) };
  if (options.dtype) config.torch_dtype = options.dtype;
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(sortKeys(config), null, 2) + "\n");
  for (const [name, content] of Object.entries(options.files ?? {})) writeFileSync(path.join(dir, name), content);
  let tensors = buildTensors(variant, options.seed ?? 1234, sized);
  if (options.dtype && options.dtype !== "float32") {
    const converted = Object.fromEntries(Object.entries(tensors).map(([n, t]) => [n, t.to(options.dtype!)]));
    for (const t of Object.values(tensors)) t.dispose();
    tensors = converted;
  }
  if (options.gpt2HubNames) {
    if (variant !== "gpt2") throw new Error("gpt2HubNames is for gpt2");
    const n = config.n_positions as number;
    const renamed: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(tensors)) renamed[name.replace(/^transformer\./, "")] = t;
    const tril = new Float32Array(n * n);
    for (let q = 0; q < n; q++) for (let k = 0; k <= q; k++) tril[q * n + k] = 1;
    for (let i = 0; i < LAYERS; i++) {
      renamed[`h.${i}.attn.bias`] = tensor(tril, { shape: [1, 1, n, n] });
      renamed[`h.${i}.attn.masked_bias`] = tensor(-1e4);
    }
    tensors = renamed;
  }
  try {
    if (options.maxShardBytes !== undefined) {
      await saveCheckpointTensors(dir, tensors, { maxShardBytes: options.maxShardBytes });
    } else {
      await saveSafetensors(path.join(dir, "model.safetensors"), tensors);
    }
  } finally {
    for (const t of Object.values(tensors)) t.dispose();
  }
  return config;
}

/**
 * For a test file that trains the tiny llama fixture with the character tokenizer: a temp
 * root, the fixture written to <root>/llama before the tests (one thread, for deterministic
 * and fast runs) and the root removed after them. Read the fields inside tests.
 */
export function tinyLlamaRun(tag: string): { root: string; modelDir: string } {
  const run = { root: tempRoot(tag), modelDir: "" };
  beforeAll(async () => {
    setNumThreads(1);
    run.modelDir = path.join(run.root, "llama");
    await writeFixture(run.modelDir, "llama");
  });
  afterAll(() => removeRoot(run.root));
  return run;
}
