// A tiny random checkpoint whose vocabulary is the tiny char tokenizer's (tiny-tokenizer.ts,
// 35 ids), so generated ids decode to text: the fixtures.ts weights with the embedding and
// head rows cut to 35, EOS = "</s>" (1), pad = "<pad>" (2).
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";

import { type Tensor, saveSafetensors } from "../lib/index.js";
import { buildTensors, hfConfig } from "./fixtures.js";
import { TINY_IDS, TINY_VOCAB_SIZE } from "./tiny-tokenizer.js";

/** Writes a llama (or gpt2) checkpoint with the tiny tokenizer's vocabulary into `dir`. */
export async function writeCharModel(dir: string, variant: "llama" | "gpt2" = "llama", seed = 1234): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const config: Record<string, unknown> = {
    ...hfConfig(variant),
    vocab_size: TINY_VOCAB_SIZE,
    bos_token_id: TINY_IDS.eos,
    eos_token_id: TINY_IDS.eos,
    pad_token_id: TINY_IDS.pad,
  };
  writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");
  const tensors = buildTensors(variant, seed);
  const cut: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(tensors)) {
    cut[name] = /(embed_tokens|lm_head|wte)\.weight$/.test(name) ? t.slice(0, 0, TINY_VOCAB_SIZE).contiguous() : t;
  }
  try {
    await saveSafetensors(path.join(dir, "model.safetensors"), cut);
  } finally {
    for (const t of new Set([...Object.values(tensors), ...Object.values(cut)])) t.dispose();
  }
}
