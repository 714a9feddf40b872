import path from "node:path";
import { test } from "vitest";
import { CausalLM, SpinTrainer, setNumThreads } from "../lib/index.js";
import { writeFixture, tempRoot, removeRoot } from "./fixtures.js";
import { tinyTokenizer, pairOf } from "./tiny-tokenizer.js";
test("probe seeds", async () => {
  setNumThreads(1);
  const root = tempRoot("probe1");
  const dir = path.join(root, "m");
  await writeFixture(dir, "llama");
  const SIX = [pairOf("hi", "ab", "cd"), pairOf("yo", "abc", "x"), pairOf("q", "no", "nope"), pairOf("how", "fine", "bad"), pairOf("z", "zz", "z"), pairOf("m", "mm", "nm")];
  const rows = [...SIX, pairOf("p", "pp", "pq"), pairOf("a", "bb", "cc"), pairOf("ok", "yes", "no"), pairOf("why", "because", "dunno"), pairOf("hey", "hello", "bye"), pairOf("name", "bob", "alice")];
  for (const seed of [1, 7, 123, 999]) {
    const model = await CausalLM.load(dir);
    const tr = new SpinTrainer({ model, tokenizer: tinyTokenizer(), config: { outputDir: path.join(root, `o${seed}`), seed, optim: "adamw", learningRate: 1e-2, beta: 0.5, lrSchedulerType: "constant", warmupRatio: 0, perDeviceTrainBatchSize: 4, numTrainEpochs: 50, loggingSteps: 10, saveStrategy: "no" } });
    const logs: any[] = [];
    tr.on("log", (l) => logs.push(l));
    await tr.train(rows);
    console.log("seed", seed, logs[0].loss, logs[0]["rewards/margins"], logs.at(-1).loss, logs.at(-1)["rewards/margins"], logs.at(-1)["rewards/accuracies"]);
    model.dispose();
  }
  removeRoot(root);
});
