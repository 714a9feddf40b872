// A SPIN training run in its own process, for trainer.test.ts's kill-and-resume test. It
// imports the COMPILED library (dist/, built by `tsc -p tsconfig.build.json`; the test
// rebuilds it when lib/ is newer). Usage: node test/trainer-runner.mjs <job.json>
//
// job.json: { modelDir, tokenizer: { json, config }, rows, config, resume, slowMs, finalDir }
// stdout: "step N", "checkpoint N" and, at the end, "done <TrainResult JSON>", one per line.
import { readFileSync } from "node:fs";

import { CausalLM, SpinTrainer, Tokenizer, setNumThreads } from "../dist/lib/index.js";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
setNumThreads(1);
const tokenizer = Tokenizer.fromJSON(job.tokenizer.json, job.tokenizer.config);
const model = await CausalLM.load(job.modelDir);
const trainer = new SpinTrainer({ model, tokenizer, config: job.config });
const pause = new Int32Array(new SharedArrayBuffer(4));
trainer.on("step", (s) => {
  process.stdout.write(`step ${s.step}\n`);
  // Slows the run down (blocking, between updates) so the parent can kill it mid-run.
  if (job.slowMs) Atomics.wait(pause, 0, 0, job.slowMs);
});
trainer.on("checkpoint", (c) => process.stdout.write(`checkpoint ${c.step}\n`));
const result = await trainer.train(job.rows, job.resume ? { resumeFrom: "latest" } : {});
await model.save(job.finalDir);
process.stdout.write(`done ${JSON.stringify(result)}\n`);
