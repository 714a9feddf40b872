// Batch-1 decoding on two threads (native/model/spin_pool.cc runs the matrix-vector products of
// matvec.cc on the caller and a spinning helper): on a model whose projections are split
// between the threads (gate/up: 400 rows, the grain is 64), a one-row forward equals the
// one-thread forward bit for bit (each row's dot product is the same computation whichever
// thread runs it) and the matrix-product path within float32 rounding; and generations
// running at once give the tokens each gives alone (the pool serves one caller at a time, a
// product that finds it busy runs on libtorch's threads; which products do depends on timing).
import path from "node:path";

import { afterAll, afterEach, expect, test } from "vitest";

import { CausalLM, type GenerateResult, getNumThreads, noGrad, ones, setNumThreads, tensor } from "../lib/index.js";
import { removeRoot, tempRoot, writeFixture } from "./fixtures.js";
import { valuesOf } from "./helpers.js";

const root = tempRoot("decode-threads");
const threads = getNumThreads();
afterEach(() => setNumThreads(threads));
afterAll(() => removeRoot(root));

async function wideModel(name: string): Promise<CausalLM> {
  const dir = path.join(root, name);
  await writeFixture(dir, "llama", { sizes: { intermediate_size: 200 } });
  return CausalLM.load(dir);
}

function oneTokenLogits(model: CausalLM, ids: number[][]): number[][] {
  const input = tensor(ids, { dtype: "int64" });
  const mask = ones([ids.length, 1], { dtype: "int64" });
  const logits = noGrad(() => model.forward(input, mask));
  const rows = ids.map((_, r) => {
    const row = logits.select(0, r);
    const values = valuesOf(row);
    row.dispose();
    return values;
  });
  for (const t of [input, mask, logits]) t.dispose();
  return rows;
}

test("a one-row forward on two threads equals one thread's bit for bit, and the batched product's within rounding", async () => {
  using model = await wideModel("forward");
  setNumThreads(1);
  const single = oneTokenLogits(model, [[7]])[0]!;
  setNumThreads(2);
  const split = oneTokenLogits(model, [[7]])[0]!;
  expect(split).toEqual(single);
  const batched = oneTokenLogits(model, [[7], [9]])[0]!;
  const scale = Math.max(...batched.map(Math.abs));
  expect(split.reduce((m, v, i) => Math.max(m, Math.abs(v - batched[i]!)), 0)).toBeLessThan(1e-5 * scale);
});

test("generations at once give the tokens each gives alone", async () => {
  setNumThreads(2);
  const models = await Promise.all([0, 1, 2, 3].map((i) => wideModel(`model-${i}`)));
  const prompts = [[[3, 9, 14, 22]], [[5, 1, 30]], [[8]], [[12, 4, 4, 19, 2]]];
  const options = { maxNewTokens: 48, eosTokenIds: [] as number[] };
  const tokensOf = (result: GenerateResult) => result.generations.map((g) => g.tokens);
  const alone: number[][][] = [];
  for (const [i, model] of models.entries()) alone.push(tokensOf(await model.generate(prompts[i]!, options)));
  expect(alone.flat(2).length).toBe(4 * 48);
  for (let round = 0; round < 3; round++) {
    const together = await Promise.all(models.map((model, i) => model.generate(prompts[i]!, options)));
    expect(together.map(tokensOf)).toEqual(alone);
  }
  for (const model of models) model.dispose();
});
