// The benchmark checkpoints of docs/benchmarks.md ("Shapes"): random-initialised Llama-architecture models in
// Hugging Face layout (float32, untied lm_head), built with a fixed seed and cached in the
// system temp folder so every benchmark run compares on the same weights.
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { type Tensor, manualSeed, ones, randn, saveCheckpointTensors, scope } from "../lib/index.js";

export interface BenchShape {
  name: string;
  vocab: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  maxPositions: number;
}

export const SHAPES: Record<string, BenchShape> = {
  "bench-tiny": { name: "bench-tiny", vocab: 320, hidden: 64, intermediate: 128, layers: 2, heads: 4, kvHeads: 2, maxPositions: 256 },
  "bench-60m": { name: "bench-60m", vocab: 32000, hidden: 512, intermediate: 1536, layers: 8, heads: 8, kvHeads: 8, maxPositions: 1024 },
  "bench-250m": { name: "bench-250m", vocab: 32000, hidden: 1024, intermediate: 2816, layers: 16, heads: 16, kvHeads: 16, maxPositions: 1024 },
  "bench-1b": { name: "bench-1b", vocab: 32000, hidden: 2048, intermediate: 5632, layers: 22, heads: 32, kvHeads: 4, maxPositions: 2048 },
};

/** Parameter count of a shape (embeddings, layers, final norm, untied head). */
export function parameterCount(s: BenchShape): number {
  const headDim = s.hidden / s.heads;
  const attention = s.hidden * s.heads * headDim * 2 + s.hidden * s.kvHeads * headDim * 2;
  const mlp = 3 * s.hidden * s.intermediate;
  return 2 * s.vocab * s.hidden + s.layers * (attention + mlp + 2 * s.hidden) + s.hidden;
}

function layerTensors(s: BenchShape, i: number): Record<string, Tensor> {
  const p = `model.layers.${i}.`;
  const headDim = s.hidden / s.heads;
  const w = (rows: number, cols: number) => randn([rows, cols]).mul(0.02);
  return {
    [`${p}input_layernorm.weight`]: ones([s.hidden]),
    [`${p}post_attention_layernorm.weight`]: ones([s.hidden]),
    [`${p}self_attn.q_proj.weight`]: w(s.heads * headDim, s.hidden),
    [`${p}self_attn.k_proj.weight`]: w(s.kvHeads * headDim, s.hidden),
    [`${p}self_attn.v_proj.weight`]: w(s.kvHeads * headDim, s.hidden),
    [`${p}self_attn.o_proj.weight`]: w(s.hidden, s.heads * headDim),
    [`${p}mlp.gate_proj.weight`]: w(s.intermediate, s.hidden),
    [`${p}mlp.up_proj.weight`]: w(s.intermediate, s.hidden),
    [`${p}mlp.down_proj.weight`]: w(s.hidden, s.intermediate),
  };
}

/** The folder of a benchmark checkpoint, created on first use. */
export async function benchCheckpoint(name: keyof typeof SHAPES | string): Promise<string> {
  const s = SHAPES[name];
  if (!s) throw new Error(`unknown benchmark shape ${name}`);
  const dir = path.join(os.tmpdir(), "spin-native-bench", s.name);
  if (existsSync(path.join(dir, "config.json"))) return dir;
  mkdirSync(dir, { recursive: true });
  manualSeed(1234);
  const tensors = scope(() => {
    const all: Record<string, Tensor> = {
      "model.embed_tokens.weight": randn([s.vocab, s.hidden]).mul(0.02),
      "model.norm.weight": ones([s.hidden]),
      "lm_head.weight": randn([s.vocab, s.hidden]).mul(0.02),
    };
    for (let i = 0; i < s.layers; i++) Object.assign(all, layerTensors(s, i));
    return all;
  });
  await saveCheckpointTensors(dir, tensors, { maxShardBytes: 2_000_000_000 });
  for (const t of Object.values(tensors)) t.dispose();
  const config = {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    vocab_size: s.vocab,
    hidden_size: s.hidden,
    intermediate_size: s.intermediate,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    max_position_embeddings: s.maxPositions,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    tie_word_embeddings: false,
    torch_dtype: "float32",
    bos_token_id: 1,
    eos_token_id: 2,
  };
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  return dir;
}
