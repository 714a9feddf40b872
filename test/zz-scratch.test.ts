import path from "node:path";
import { test, expect } from "vitest";
import { CausalLM, SpinTrainer, SpinCollator, noGrad, scope, tensor, Tensor } from "../lib/index.js";
import { native } from "../lib/native.js";
import { writeFixture, tempRoot } from "./fixtures.js";
import { tinyTokenizer, pairOf } from "./tiny-tokenizer.js";
import { valuesOf } from "./helpers.js";

const root = tempRoot("scratch");
const rows = [pairOf("hi", "ab", "cd"), pairOf("yo", "abc", "x"), pairOf("hey", "ok", "ok"), pairOf("q", "no", "nope"), pairOf("z", "zz", "z"), pairOf("m", "mm", "nm"), pairOf("p", "pp", "pq"), pairOf("a", "bb", "cc")];
test("step0", async () => {
  const dir = path.join(root, "m");
  await writeFixture(dir, "llama");
  const model = await CausalLM.load(dir);
  const tok = tinyTokenizer();
  const tr = new SpinTrainer({ model, tokenizer: tok, config: { outputDir: path.join(root, "o"), maxSteps: 1, perDeviceTrainBatchSize: 3 } });
  const steps: any[] = [];
  tr.on("step", (s) => steps.push(s));
  const t0 = performance.now();
  await tr.train(rows);
  console.log(performance.now() - t0, JSON.stringify(steps));
  console.log(await tr.evaluate(rows));
  // identical grads
  const params = model.parameters();
  for (const p of params.values()) p.zeroGrad();
  const col = new SpinCollator({ tokenizer: tok });
  const b = col.collate([pairOf("hi", "abc", "abc"), pairOf("yo", "hello", "hello")]);
  const m = await native.spinTrainStep(model.nativeHandle, Tensor.handleOf(b.ids), Tensor.handleOf(b.attentionMask), Tensor.handleOf(b.labels), Tensor.handleOf(tensor([-3, -4])), Tensor.handleOf(tensor([-3, -4])), Tensor.handleOf(tensor(b.identical, {dtype: "bool"})), {beta: 0.1});
  console.log(m);
  for (const [n, p] of params) { const g = p.grad; console.log(n, g ? Math.max(...valuesOf(g).map(Math.abs)) : null); }
  // time many steps
  const tr2 = new SpinTrainer({ model, tokenizer: tok, config: { outputDir: path.join(root, "o2"), maxSteps: 200, perDeviceTrainBatchSize: 8, optim: "adamw", learningRate: 1e-2, beta: 1, warmupRatio: 0, loggingSteps: 20, saveStrategy: "no" } });
  tr2.on("log", (l) => console.log(l.step, l.loss, l["rewards/accuracies"], l["rewards/margins"]));
  const t1 = performance.now();
  await tr2.train(rows);
  console.log("200 steps", performance.now() - t1);
});
