// LoRA against the real transformers + PEFT (fixtures from scripts/make-lora-fixtures.py:
// tiny random models saved by transformers 5, adapters saved by PEFT 0.21, their logits):
// for llama, mistral, qwen2 and gpt2 the base logits, the logits with the PEFT adapter loaded,
// the merged model's logits and the response log-prob sums match PEFT's; an adapter written
// here and read back gives the same logits.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CausalLM, noGrad, setNumThreads, tensor } from "../lib/index.js";
import { removeRoot, tempRoot } from "./fixtures.js";
import { valuesOf } from "./helpers.js";

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "peft-lora");
const root = tempRoot("peft-lora");
beforeAll(() => setNumThreads(1));
afterAll(() => removeRoot(root));

interface Expected {
  ids: number[][];
  attention_mask: number[][];
  base_logits: number[][][];
  lora_logits: number[][][];
  merged_logits: number[][][];
  lora_logprob_sums: number[];
  lora_qv_logits?: number[][][];
}

const expectedOf = (type: string) => JSON.parse(readFileSync(path.join(FIXTURES, type, "expected.json"), "utf8")) as Expected;

/** Max |ours − theirs| over the positions the mask keeps (padded queries are left out, as PEFT's values there are arbitrary). */
function compare(model: CausalLM, e: Expected, theirs: number[][][]): number {
  const ids = tensor(e.ids, { dtype: "int64" });
  const mask = tensor(e.attention_mask, { dtype: "int64" });
  const logits = noGrad(() => model.forward(ids, mask));
  const ours = valuesOf(logits);
  for (const t of [ids, mask, logits]) t.dispose();
  const [, T, V] = [theirs.length, theirs[0]!.length, theirs[0]![0]!.length];
  let worst = 0;
  theirs.forEach((row, b) =>
    row.forEach((position, t) => {
      if (e.attention_mask[b]![t] === 0) return;
      position.forEach((value, v) => (worst = Math.max(worst, Math.abs(ours[(b * T + t) * V + v]! - value))));
    }),
  );
  return worst;
}

describe.each(["llama", "mistral", "qwen2", "gpt2"])("%s against transformers + PEFT", (type) => {
  const e = expectedOf(type);
  const modelDir = path.join(FIXTURES, type, "model");

  test("base, adapter and merged logits within 1e-5", async () => {
    using model = await CausalLM.load(modelDir);
    expect(compare(model, e, e.base_logits)).toBeLessThan(1e-5);
    const config = await model.loadAdapter(path.join(FIXTURES, type, "adapter"));
    expect(config.r).toBe(4);
    expect(config.alpha).toBe(8);
    expect(config.modules.length).toBe(type === "gpt2" ? 8 : 14);
    expect(compare(model, e, e.lora_logits)).toBeLessThan(1e-5);
    expect(compare(model, e, e.base_logits)).toBeGreaterThan(0.1); // the adapter changes the outputs
    model.mergeAdapter();
    expect(compare(model, e, e.merged_logits)).toBeLessThan(1e-5);
  });

  test("response log-prob sums with the adapter within 1e-5", async () => {
    using model = await CausalLM.load(modelDir);
    await model.loadAdapter(path.join(FIXTURES, type, "adapter"));
    const ids = tensor(e.ids, { dtype: "int64" });
    const mask = tensor(e.attention_mask, { dtype: "int64" });
    // Positions 3..6 are the response: labels there, −100 elsewhere.
    const labels = tensor(e.ids.map((row) => row.map((id, t) => (t >= 3 ? id : -100))), { dtype: "int64" });
    const out = await noGrad(() => model.logprobs(ids, mask, labels));
    const sums = valuesOf(out.sum);
    for (const t of [ids, mask, labels, ...Object.values(out)]) t.dispose();
    sums.forEach((s, i) => expect(Math.abs(s - e.lora_logprob_sums[i]!)).toBeLessThan(1e-5));
  });

  test("an adapter saved here and loaded again gives PEFT's logits", async () => {
    using model = await CausalLM.load(modelDir);
    await model.loadAdapter(path.join(FIXTURES, type, "adapter"));
    const saved = path.join(root, `${type}-adapter`);
    await model.saveAdapter(saved);
    using again = await CausalLM.load(modelDir);
    await again.loadAdapter(saved);
    expect(compare(again, e, e.lora_logits)).toBeLessThan(1e-5);
  });
});

test("llama: a q_proj/v_proj adapter of rank 2 and α 16 matches PEFT", async () => {
  const e = expectedOf("llama");
  using model = await CausalLM.load(path.join(FIXTURES, "llama", "model"));
  const config = await model.loadAdapter(path.join(FIXTURES, "llama", "adapter-qv"));
  expect(config.modules).toEqual(["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"]);
  expect(compare(model, e, e.lora_qv_logits!)).toBeLessThan(1e-5);
});
