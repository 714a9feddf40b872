import { mkdirSync, writeFileSync } from "node:fs";
import { expect, test } from "vitest";
import { CausalLM, manualSeed, randn, saveSafetensors, tensor, ones, noGrad } from "../lib/index.js";

test("tiny llama loads and runs", async () => {
  const dir = "/tmp/tiny-llama"; mkdirSync(dir, { recursive: true });
  const cfg = { model_type: "llama", vocab_size: 50, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5 };
  writeFileSync(dir + "/config.json", JSON.stringify(cfg));
  manualSeed(0);
  const t: Record<string, any> = { "model.embed_tokens.weight": randn([50, 16]), "model.norm.weight": ones([16]), "lm_head.weight": randn([50, 16]) };
  for (let i = 0; i < 2; i++) {
    const p = `model.layers.${i}.`;
    Object.assign(t, { [p+"input_layernorm.weight"]: ones([16]), [p+"post_attention_layernorm.weight"]: ones([16]),
      [p+"self_attn.q_proj.weight"]: randn([16,16]).mul(0.3), [p+"self_attn.k_proj.weight"]: randn([8,16]).mul(0.3), [p+"self_attn.v_proj.weight"]: randn([8,16]).mul(0.3), [p+"self_attn.o_proj.weight"]: randn([16,16]).mul(0.3),
      [p+"mlp.gate_proj.weight"]: randn([32,16]).mul(0.3), [p+"mlp.up_proj.weight"]: randn([32,16]).mul(0.3), [p+"mlp.down_proj.weight"]: randn([16,32]).mul(0.3) });
  }
  await saveSafetensors(dir + "/model.safetensors", t);
  const model = await CausalLM.load(dir);
  const ids = tensor([[1, 2, 3, 4]], { dtype: "int64" });
  const mask = ones([1, 4], { dtype: "int64" });
  const logits = model.forward(ids, mask);
  expect(logits.shape).toEqual([1, 4, 50]);
  // cache equivalence
  const cache = model.newCache(1, 8);
  const a = model.forward(tensor([[1, 2]], { dtype: "int64" }), ones([1, 2], { dtype: "int64" }), { cache });
  const b = model.forward(tensor([[3]], { dtype: "int64" }), ones([1, 3], { dtype: "int64" }), { cache });
  const full = logits.select(1, 2).toList() as number[][];
  const inc = b.select(1, 0).toList() as number[][];
  expect(Math.max(...full[0]!.map((v, i) => Math.abs(v - inc[0]![i]!)))).toBeLessThan(1e-4);
  const labels = tensor([[-100, -100, 3, 4]], { dtype: "int64" });
  const lp = await model.logprobs(ids, mask, labels);
  const ls = logits.logSoftmax(-1);
  const expected = (ls.select(1, 1).select(1, 3).item() as number) + (ls.select(1, 2).select(1, 4).item() as number);
  expect(lp.sum.item() as number).toBeCloseTo(expected, 4);
  expect(lp.tokens.item()).toBe(2);
  await model.save("/tmp/tiny-llama-saved");
  const again = await CausalLM.load("/tmp/tiny-llama-saved");
  const l2 = again.forward(ids, mask);
  expect(l2.sub(logits).abs().max().item()).toBe(0);
  // checkpointed grads equal plain grads
  const params = model.parameters();
  for (const p of params.values()) p.requireGrad();
  const loss1 = model.forward(ids, mask).logSoftmax(-1).mean(); loss1.backward();
  const g1 = params.get("model.layers.0.self_attn.q_proj.weight")!.grad!.clone();
  for (const p of params.values()) p.zeroGrad();
  const loss2 = model.forward(ids, mask, { checkpoint: true }).logSoftmax(-1).mean(); loss2.backward();
  const g2 = params.get("model.layers.0.self_attn.q_proj.weight")!.grad!;
  expect(g2.sub(g1).abs().max().item() as number).toBeLessThan(1e-6);
  expect(g1.abs().sum().item() as number).toBeGreaterThan(0);
});
