// 16-bit models on the CPU (native/model/upcast.h): products of 16 or more rows run in float32
// and are rounded back (bfloat16 ones stay 16-bit on a CPU with bfloat16 matrix instructions),
// fewer rows use libtorch's 16-bit kernels. Both give the float64
// reference's logits (test/reference-model.ts, on the same bfloat16 weights) within bfloat16
// rounding, and the two paths agree with each other on the positions they share.
import path from "node:path";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CausalLM, noGrad, ones, setNumThreads, tensor } from "../lib/index.js";
import { VOCAB, removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { valuesOf } from "./helpers.js";
import { ReferenceModel } from "./reference-model.js";

const root = tempRoot("bf16-cpu");
beforeAll(() => setNumThreads(1));
afterAll(() => removeRoot(root));

const IDS = Array.from({ length: 20 }, (_, i) => (i * 7 + 3) % VOCAB);

function logits(model: CausalLM, ids: number[]): number[] {
  const input = tensor([ids], { dtype: "int64" });
  const mask = ones([1, ids.length], { dtype: "int64" });
  const out = noGrad(() => model.forward(input, mask));
  const values = valuesOf(out.to("float32"));
  for (const t of [input, mask, out]) t.dispose();
  return values;
}

describe.each(["llama", "gpt2"] as const)("%s in bfloat16", (variant) => {
  test("20 tokens (float32 products, or the CPU's bfloat16 ones) and 15 tokens (16-bit kernels) both match the float64 reference within bf16 rounding", async () => {
    const dir = path.join(root, variant);
    await writeFixture(dir, variant, { dtype: "bfloat16" });
    using model = await CausalLM.load(dir, { dtype: "bfloat16" });
    using ref = await ReferenceModel.load(dir);
    const expected = ref.logits(IDS).flat();
    const scale = Math.max(...expected.map(Math.abs));
    const long = logits(model, IDS);
    const short = logits(model, IDS.slice(0, 15));
    const worst = (ours: number[]) => ours.reduce((m, v, i) => Math.max(m, Math.abs(v - expected[i]!)), 0);
    // bfloat16 keeps 8 bits of mantissa: a few units of 2^-8 of the logits' size after two layers.
    expect(worst(long)).toBeLessThan(0.05 * scale);
    expect(worst(short)).toBeLessThan(0.05 * scale);
    // Measured: about 2% (llama) and 1% (gpt2) of the largest logit on both paths.
    expect(worst(long)).toBeLessThan(1.5 * worst(short) + 1e-3 * scale);
    const shared = short.reduce((m, v, i) => Math.max(m, Math.abs(v - long[i]!)), 0);
    expect(shared).toBeLessThan(0.05 * scale);
  });
});
