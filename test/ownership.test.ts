// Who frees what: an optimizer holds references to its model's parameters and a state as large
// as the model (RMSprop) or twice (AdamW), reported to V8; dispose() on it or on its trainer
// frees both, and a pipeline frees each iteration's trainer before the next.
import path from "node:path";

import { describe, expect, test } from "vitest";

import { CausalLM, Optimizer, SpinNativeError, SpinTrainer, type Tokenizer, memoryStats } from "../lib/index.js";
import { runPipeline } from "../lib/run/pipeline.js";
import { sftRows, writeTinyCheckpoint } from "./cli-helpers.js";
import { tinyLlamaRun } from "./fixtures.js";
import { rejection } from "./helpers.js";
import { pairOf, tinyTokenizer } from "./tiny-tokenizer.js";

const fixture = tinyLlamaRun("ownership");
const tok: Tokenizer = tinyTokenizer();
const ROWS = [pairOf("hi", "ab", "cd"), pairOf("yo", "abc", "x"), pairOf("ok", "a", "bb"), pairOf("no", "ba", "c")];

/** float32 bytes of every parameter, from their shapes. */
function parameterBytes(model: CausalLM): number {
  let bytes = 0;
  for (const p of model.parameters().values()) {
    bytes += 4 * p.shape.reduce((a, b) => a * b, 1);
    p.dispose();
  }
  return bytes;
}

describe("Optimizer", () => {
  test("reports its state (one slot for RMSprop, two for AdamW) while alive, nothing after dispose; later calls are refused", async () => {
    const model = await CausalLM.load(fixture.modelDir);
    const bytes = parameterBytes(model);
    const before = memoryStats();
    for (const [kind, slots] of [["rmsprop", 1], ["adamw", 2]] as const) {
      const optimizer = new Optimizer(model, { kind });
      expect(memoryStats().liveOptimizers).toBe(before.liveOptimizers + 1);
      expect(memoryStats().optimizerBytes).toBe(before.optimizerBytes + slots * bytes);
      optimizer.dispose();
      optimizer.dispose(); // idempotent
      expect(optimizer.disposed).toBe(true);
      expect(memoryStats().liveOptimizers).toBe(before.liveOptimizers);
      expect(memoryStats().optimizerBytes).toBe(before.optimizerBytes);
      const error = await rejection(optimizer.step(1e-3, 1));
      expect(error).toBeInstanceOf(SpinNativeError);
      expect((error as SpinNativeError).code).toBe("DISPOSED");
      expect(() => optimizer.state()).toThrow(/optimizer.state: the optimizer was disposed/);
      expect(() => optimizer.steps).toThrow(/disposed/);
    }
    model.dispose();
  });
});

describe("trainers", () => {
  test("dispose() frees the optimizer; it is refused while train() runs and train() is refused after it", async () => {
    const model = await CausalLM.load(fixture.modelDir);
    const before = memoryStats().liveOptimizers;
    const trainer = new SpinTrainer({ model, tokenizer: tok, config: { outputDir: path.join(fixture.root, "trainer"), learningRate: 1e-3, perDeviceTrainBatchSize: 2, maxSteps: 2, saveStrategy: "no" } });
    const running = trainer.train(ROWS);
    await new Promise((resolve) => setImmediate(resolve));
    expect(() => trainer.dispose()).toThrow(/train\(\) is running/);
    await running;
    expect(memoryStats().liveOptimizers).toBe(before + 1);
    trainer.dispose();
    expect(trainer.disposed).toBe(true);
    expect(memoryStats().liveOptimizers).toBe(before);
    const error = await rejection(trainer.train(ROWS));
    expect((error as SpinNativeError).code).toBe("DISPOSED");
    model.dispose();
  });

  test("runPipeline frees every iteration's trainer: no optimizer is left after three iterations", async () => {
    const base = path.join(fixture.root, "checkpoint");
    await writeTinyCheckpoint(base); // the fixture's model with its tokenizer files
    const before = memoryStats();
    const result = await runPipeline({
      runDir: path.join(fixture.root, "pipeline"),
      baseModel: base,
      sftRows: sftRows(4),
      iterations: 3,
      training: { learningRate: 1e-3, perDeviceTrainBatchSize: 2, numTrainEpochs: 1, saveStrategy: "no", logToConsole: false },
      generation: { batchSize: 4, maxNewTokens: 3 },
    });
    expect(result.state.iteration.map((r) => r.train?.steps)).toEqual([2, 4, 4]);
    expect(memoryStats().liveOptimizers).toBe(before.liveOptimizers);
    expect(memoryStats().optimizerBytes).toBe(before.optimizerBytes);
  });
});
