// One rank of the gradient all-reduce benchmark (started by `npm run bench allreduce` through
// the launcher): SPIN train steps on bench-60m, timed three ways in one process group —
// backward alone, backward then the bucketed all-reduce, and the all-reduce overlapped with
// backward (buckets started by the gradient hooks). Rank 0 prints one JSON line.
import { performance } from "node:perf_hooks";

import { CausalLM, Distributed, getNumThreads, spinStep, tensor, zeros } from "../lib/index.js";
import { benchCheckpoint } from "./checkpoints.js";
import { spinBenchBatch } from "./spin-batch.js";

const dist = await Distributed.fromEnv(process.env, { timeoutMs: 600_000 });
if (!dist) throw new Error("run through the launcher with WORLD_SIZE > 1");
const model = await CausalLM.load(await benchCheckpoint("bench-60m"));
const { ids, attentionMask: mask, labels } = spinBenchBatch(32000, 4, 256, 256);
const opponent = zeros([2]);
for (const p of model.parameters().values()) p.requireGrad().dispose();
using reducer = dist.gradientReducer(model);

type Mode = "backward only" | "after backward" | "overlapped";
// The ranks' backward passes end at different times (±1 s here): the all-reduce's cost is
// what a step takes beyond the slowest rank's backward.
const slowest = async (seconds: number) => {
  const t = tensor([seconds], { dtype: "float64" });
  await dist.allReduce(t, "max");
  const value = Number(t.item());
  t.dispose();
  return value;
};
const step = async (mode: Mode) => {
  await dist.barrier();
  const start = performance.now();
  if (mode === "overlapped") reducer.beforeBackward(true);
  await spinStep(model, { ids, attentionMask: mask, labels, opponentReal: opponent, opponentGenerated: opponent }, { beta: 0.1 });
  const backward = (performance.now() - start) / 1000;
  const stats = mode === "backward only" ? null : await reducer.finish();
  const stepSeconds = (performance.now() - start) / 1000;
  const backwardSeconds = await slowest(backward);
  return { mode, backwardSeconds, waitSeconds: Math.max(0, stepSeconds - backwardSeconds), overlapped: stats?.overlapped ?? 0, buckets: stats?.buckets ?? 0 };
};
await step("after backward"); // warm-up: first touch of the gradient buffers
const modes: Mode[] = ["backward only", "after backward", "overlapped"];
const timings: Awaited<ReturnType<typeof step>>[] = [];
for (let round = 0; round < 3; round++) for (const mode of modes) timings.push(await step(mode));
// Medians: single steps on this shared machine vary by ±20%.
const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const summary = (mode: Mode) => {
  const runs = timings.filter((t) => t.mode === mode);
  return { ...runs[0]!, backwardSeconds: median(runs.map((t) => t.backwardSeconds)), waitSeconds: median(runs.map((t) => t.waitSeconds)) };
};
if (dist.isMain) {
  const bytes = [...model.parameters().values()].reduce((sum, p) => {
    const n = p.nbytes;
    p.dispose();
    return sum + n;
  }, 0);
  console.log(JSON.stringify({ ranks: dist.worldSize, threads: getNumThreads(), gradientBytes: bytes, results: modes.map(summary) }));
}
dist.destroy();
