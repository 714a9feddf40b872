// `npm run bench [workload ...]`: runs benchmarks, prints a table per workload and records
// it under bench/results/<date>-<workload>-torch<version>.json. Workloads: machine, logprobs, load,
// train, generate, allreduce (2 local ranks), scaling (one checkpointed step per shape, bench-1b included: minutes),
// threads, realistic (the SPIN step on realistic lengths, packed and padded) and generate-realistic (self-play
// generation of 512 realistic prompts; BENCH_PROMPTS=N for fewer), each with transformers beside when
// BENCH_PEER_PYTHON names a Python that has it (tens of minutes), lora (LoRA r=16 against full fine-tuning at bench-250m and bench-1b: tens of minutes; lora-250m alone),
// zero (ZeRO stages 0–3 on 2 local ranks at bench-250m; zero-1b: stage 3 at bench-1b, whose other stages do not fit 2 ranks in 24 GiB);
// default: machine logprobs load train generate. The machine's limits are measured first in the
// same run, so every ratio compares figures from one run.
import { measureMachine } from "./machine.js";
import { allReduceRows, generateRealisticRows, generateRows, loadRows, logprobsRows, loraRows, realisticRows, scalingRows, threadRows, trainRows, zeroRows } from "./model-bench.js";
import { type Row, machine, printTable, record } from "./report.js";

const requested = process.argv.slice(2);
const names = requested.length > 0 ? requested : ["machine", "logprobs", "load", "train", "generate"];
const known = ["machine", "logprobs", "load", "train", "generate", "allreduce", "scaling", "threads", "realistic", "generate-realistic", "lora", "lora-250m", "zero", "zero-1b"];
for (const name of names) {
  if (!known.includes(name)) {
    console.error(`unknown workload '${name}'; known: ${known.join(", ")}`);
    process.exit(2);
  }
}
console.log("machine:", JSON.stringify(machine()));
const limits = await measureMachine();
const workloads: Record<string, () => Promise<Row[]>> = {
  machine: async () => limits.rows,
  logprobs: () => logprobsRows(limits.matmulGflops),
  load: loadRows,
  threads: threadRows,
  train: () => trainRows(limits.matmulGflops),
  scaling: scalingRows,
  generate: () => generateRows(limits),
  realistic: () => realisticRows(limits.matmulGflops),
  "generate-realistic": () => generateRealisticRows(),
  allreduce: allReduceRows,
  lora: () => loraRows(),
  "lora-250m": () => loraRows(["bench-250m"]),
  zero: () => zeroRows([["bench-250m", [0, 1, 2, 3], 2]]),
  "zero-1b": () => zeroRows([["bench-1b", [3], 1]]),
};
for (const name of names) {
  const rows = await workloads[name]!();
  printTable(name, rows);
  if (!process.env.BENCH_NO_RECORD) console.log(`recorded ${record(name, rows, { limits: { matmulGflops: limits.matmulGflops, bandwidthGBs: limits.bandwidthGBs } })}`);
}
