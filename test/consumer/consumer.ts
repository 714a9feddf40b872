// A consumer of the packed package (scripts/consumer-test.sh): type-checked under strict with
// skipLibCheck false against the installed declarations, then run: self-play on two demo
// prompts, one SPIN update on them, and runPipeline's types.
import { mkdtempSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";

import {
  CausalLM,
  ORIGINAL_SCHEDULE,
  SelfPlayGenerator,
  SpinTrainer,
  Tokenizer,
  readSpinRows,
  runPipeline,
  type Metrics,
  type PipelineOptions,
} from "spin-native";

const demo = path.join(path.dirname(createRequire(import.meta.url).resolve("spin-native/package.json")), "examples", "demo");
const sftRows: unknown[] = readFileSync(path.join(demo, "data", "train.jsonl"), "utf8")
  .split("\n")
  .filter((line) => line.trim() !== "")
  .slice(0, 2)
  .map((line) => JSON.parse(line) as unknown);

const work = mkdtempSync(path.join(os.tmpdir(), "spin-consumer-"));
const model = await CausalLM.load(path.join(demo, "model"));
const tokenizer = await Tokenizer.fromDir(path.join(demo, "model"));

const generator = new SelfPlayGenerator({ model, tokenizer, options: { batchSize: 2, maxNewTokens: 8 } });
const summary = await generator.run(sftRows, path.join(work, "data"));
const rows = await readSpinRows(path.join(work, "data"), "train");

const trainer = new SpinTrainer({
  model,
  tokenizer,
  config: { outputDir: path.join(work, "train"), beta: 0.1, learningRate: 1e-5, perDeviceTrainBatchSize: 2, maxSteps: 1 },
});
let logged: Metrics | null = null;
trainer.on("log", (metrics) => (logged = metrics));
const result = await trainer.train(rows);

// runPipeline's options type-check as the README shows them (not run here: the demo covers it).
const pipeline: PipelineOptions = { runDir: work, baseModel: demo, sftRows, iterations: 1, training: {}, perIteration: ORIGINAL_SCHEDULE };
void pipeline;
void runPipeline;

if (rows.length !== 2 || result.globalStep !== 1 || logged === null) {
  throw new Error(`consumer: expected 2 rows and 1 update, got ${rows.length} rows, ${result.globalStep} updates`);
}
console.log(`consumer: ${summary.generatedRows} generated, 1 SPIN update, loss ${String(result.metrics["loss"])}`);
model.dispose();
