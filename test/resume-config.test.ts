// A resume keeps the settings it was started with (lib/spin/checkpoint.ts
// trainingFingerprint): a checkpoint resumed with another learning rate, β, batch, data, … is
// refused with the list of changes; allowConfigChange resumes and records them.
import { readFileSync } from "node:fs";
import path from "node:path";

import { describe, expect, test } from "vitest";

import { CausalLM, SpinNativeError, type SpinRow, SpinTrainer, type Tokenizer } from "../lib/index.js";
import { tinyLlamaRun } from "./fixtures.js";
import { rejection } from "./helpers.js";
import { pairOf, tinyTokenizer } from "./tiny-tokenizer.js";

const fixture = tinyLlamaRun("resume-config");
const tok: Tokenizer = tinyTokenizer();

const ROWS: SpinRow[] = [pairOf("hi", "ab", "cd"), pairOf("yo", "abc", "x"), pairOf("q", "no", "nope"), pairOf("z", "zz", "z")];
const BASE = { learningRate: 1e-3, beta: 0.1, perDeviceTrainBatchSize: 2, maxSteps: 4, saveStrategy: "steps" as const, saveSteps: 1, loggingSteps: 1 };

/** Trains with `config` until update 2 (a checkpoint per update), then stops as Ctrl-C would. */
async function interruptedRun(outputDir: string): Promise<void> {
  const model = await CausalLM.load(fixture.modelDir);
  const abort = new AbortController();
  const trainer = new SpinTrainer({ model, tokenizer: tok, config: { ...BASE, outputDir } });
  trainer.on("step", (s) => s.step === 2 && abort.abort());
  const result = await trainer.train(ROWS, { signal: abort.signal });
  expect(result.aborted).toBe(true);
  model.dispose();
}

async function resume(outputDir: string, change: Partial<typeof BASE> & { lossType?: "hinge" }, rows = ROWS, allowConfigChange = false) {
  const model = await CausalLM.load(fixture.modelDir);
  try {
    const trainer = new SpinTrainer({ model, tokenizer: tok, config: { ...BASE, ...change, outputDir } });
    return await trainer.train(rows, { resumeFrom: "latest", allowConfigChange });
  } finally {
    model.dispose();
  }
}

describe("resuming with other settings", () => {
  test("the same settings resume", async () => {
    const out = path.join(fixture.root, "same");
    await interruptedRun(out);
    expect((await resume(out, {})).globalStep).toBe(4);
  });

  test.each([
    ["learningRate", { learningRate: 0.27 }, "learningRate: 0.001 → 0.27"],
    ["beta", { beta: 5 }, "beta: 0.1 → 5"],
    ["lossType", { lossType: "hinge" as const }, 'lossType: "sigmoid" → "hinge"'],
    ["the batch", { perDeviceTrainBatchSize: 1 }, "perDeviceTrainBatchSize: 2 → 1"],
  ])("a changed %s is refused with a diff naming it; nothing is trained", async (_, change, line) => {
    const out = path.join(fixture.root, `changed-${Object.keys(change)[0]}`);
    await interruptedRun(out);
    const before = readFileSync(path.join(out, "metrics.jsonl"), "utf8");
    const error = await rejection<SpinNativeError>(resume(out, change));
    expect(error).toBeInstanceOf(SpinNativeError);
    expect(error.message).toContain(line);
    expect(error.message).toContain("allowConfigChange");
    expect(readFileSync(path.join(out, "metrics.jsonl"), "utf8")).toBe(before);
  });

  test("other rows (same count) are a change of the data", async () => {
    const out = path.join(fixture.root, "changed-data");
    await interruptedRun(out);
    const other = [...ROWS.slice(0, 3), pairOf("w", "ww", "w")];
    const error = await rejection<SpinNativeError>(resume(out, {}, other));
    expect(error.message).toMatch(/data: "[0-9a-f]{16}" → "[0-9a-f]{16}"/);
  });

  test("allowConfigChange resumes with the new settings and records the change in events.jsonl", async () => {
    const out = path.join(fixture.root, "allowed");
    await interruptedRun(out);
    const result = await resume(out, { learningRate: 2e-3 }, ROWS, true);
    expect(result.globalStep).toBe(4);
    const events = readFileSync(path.join(out, "events.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number; changes: string[] });
    expect(events).toHaveLength(1);
    expect(events[0]!.step).toBe(2);
    expect(events[0]!.changes).toEqual(["learningRate: 0.001 → 0.002"]);
    // The learning rate after the resume follows the new peak: linear decay after one warmup
    // update (ceil(0.1 × 4)), so update index 2 (logged as step 3) gets 2e-3 × (4 − 2)/(4 − 1).
    const logged = readFileSync(path.join(out, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { step: number; learning_rate: number });
    expect(logged.find((l) => l.step === 3)!.learning_rate).toBeCloseTo((2e-3 * (4 - 2)) / (4 - 1), 12);
  });
});
