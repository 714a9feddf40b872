// One user of a model at a time (lib/model/usage.ts): a call that would race with another on
// the same model's parameters is refused at once, naming both; reads overlap freely.
import path from "node:path";

import { describe, expect, test } from "vitest";

import { CausalLM, Optimizer, SftTrainer, SpinNativeError, SpinTrainer, type Tokenizer, tensor } from "../lib/index.js";
import { tinyLlamaRun } from "./fixtures.js";
import { rejection } from "./helpers.js";
import { pairOf, tinyTokenizer } from "./tiny-tokenizer.js";

const fixture = tinyLlamaRun("model-usage");
const tok: Tokenizer = tinyTokenizer();

const ROWS = [pairOf("hi", "ab", "cd"), pairOf("yo", "abc", "x")];
const config = (tag: string) => ({ outputDir: path.join(fixture.root, tag), learningRate: 1e-3, perDeviceTrainBatchSize: 2, maxSteps: 4, saveStrategy: "no" as const });
const ids = () => tensor([[7, 8, 9]], { dtype: "int64" });
const mask = () => tensor([[1, 1, 1]], { dtype: "int64" });

function expectBusy(error: unknown, call: string, holder: string): void {
  expect(error).toBeInstanceOf(SpinNativeError);
  const e = error as SpinNativeError;
  expect(e.code).toBe("BUSY");
  expect(e.message).toContain(call);
  expect(e.message).toContain(holder);
}

describe("a model in a training run", () => {
  test("a second train() on the same model is refused naming the first; the first finishes", async () => {
    const model = await CausalLM.load(fixture.modelDir);
    const first = new SpinTrainer({ model, tokenizer: tok, config: config("a") }).train(ROWS);
    const second = new SftTrainer({ model, tokenizer: tok, config: config("b") }).train(ROWS);
    const [one, two] = await Promise.allSettled([first, second]);
    expect(one.status).toBe("fulfilled");
    expectBusy((two as PromiseRejectedResult).reason, "SftTrainer.train", "SpinTrainer.train");
    model.dispose();
  });

  test("forward, log-probs, generation, save and dispose from outside the run are refused while it runs; all work after", async () => {
    const model = await CausalLM.load(fixture.modelDir);
    const run = new SpinTrainer({ model, tokenizer: tok, config: config("c") }).train(ROWS);
    const [i, m] = [ids(), mask()];
    expect(() => model.forward(i, m)).toThrow(SpinNativeError);
    expectBusy(await rejection(model.forwardAsync(i, m)), "model.forwardAsync", "SpinTrainer.train");
    expectBusy(await rejection(model.logprobs(i, m, tensor([[-100, 8, 9]], { dtype: "int64" }))), "model.logprobs", "SpinTrainer.train");
    expectBusy(await rejection(model.generate([[7, 8]], { maxNewTokens: 2 })), "model.generate", "SpinTrainer.train");
    expectBusy(await rejection(model.save(path.join(fixture.root, "saved"))), "model.save", "SpinTrainer.train");
    expect(() => model.dispose()).toThrow(/model.dispose: the model is in use by SpinTrainer.train/);
    await run;
    model.forward(i, m).dispose();
    await model.generate([[7, 8]], { maxNewTokens: 2 });
    for (const t of [i, m]) t.dispose();
    model.dispose();
  });
});

describe("updates and reads", () => {
  test("reads overlap; an optimizer step during a read is refused, and a read during a step", async () => {
    const model = await CausalLM.load(fixture.modelDir);
    const optimizer = new Optimizer(model, { kind: "adamw" });
    const [i, m] = [ids(), mask()];
    const backward = () => {
      const loss = model.forward(i, m).square().mean();
      loss.backward();
      loss.dispose();
    };
    backward();
    const reads = [model.forwardAsync(i, m), model.generate([[7, 8]], { maxNewTokens: 2 })];
    expectBusy(await rejection(optimizer.step(1e-3, 1)), "Optimizer.step", "model.");
    await Promise.all(reads);
    const step = optimizer.step(1e-3, 1);
    expectBusy(await rejection(model.forwardAsync(i, m)), "model.forwardAsync", "Optimizer.step");
    await step;
    (await model.forwardAsync(i, m)).dispose();
    for (const t of [i, m]) t.dispose();
    model.dispose();
  });
});
