// One rank of the ZeRO benchmark (`npm run bench zero`, through the launcher):
// `zero-worker.js <shape> <stage> [repeats]` runs checkpointed SPIN steps of the train-step
// workload (1 pair × 512 tokens per rank, RMSprop as the original SPIN) with the optimizer state
// (stage 1), the gradients (stage 2) and the layers' weights (stage 3) sharded across the ranks. Rank 0 prints one JSON line
// with every rank's peak RSS and the step time (the slowest rank's fastest step).
import { performance } from "node:perf_hooks";

import { CausalLM, Distributed, Optimizer, getNumThreads, spinStep, tensor, zeros } from "../lib/index.js";
import { SHAPES, benchCheckpoint, parameterCount } from "./checkpoints.js";
import { peakRssBytes, spinBenchBatch } from "./spin-batch.js";

const [shapeName = "bench-250m", stageArg = "0", repeatsArg = "1"] = process.argv.slice(2);
const shape = SHAPES[shapeName];
if (!shape) throw new Error(`unknown shape ${shapeName}`);
const sharding = Number(stageArg) as 0 | 1 | 2 | 3;
const dist = await Distributed.fromEnv(process.env, { timeoutMs: 1_800_000, sharding });
if (!dist) throw new Error("run through the launcher with WORLD_SIZE > 1");

const model = await CausalLM.load(await benchCheckpoint(shapeName));
const optimizer = new Optimizer(model, { kind: "rmsprop" }, dist);
using reducer = dist.gradientReducer(model, optimizer);
if (sharding === 3) optimizer.shardParameters(); // each rank keeps its shard of the layers
const pairs = 1;
const batch = spinBenchBatch(shape.vocab, 2 * pairs, 256, 256);
const opponent = zeros([pairs]);

async function step(): Promise<number> {
  await dist!.barrier();
  const start = performance.now();
  reducer.beforeBackward(true);
  await spinStep(model, { ...batch, opponentReal: opponent, opponentGenerated: opponent }, { lossType: "sigmoid", beta: 0.1 }, { gradientCheckpointing: true });
  await reducer.afterBackward(true);
  await optimizer.step(1e-7, 1.0);
  return (performance.now() - start) / 1000;
}

await step(); // warm-up: buffers allocated, first touch
const seconds: number[] = [];
for (let i = 0; i < Number(repeatsArg); i++) seconds.push(await step());
// The fastest step: single steps on this shared machine vary by ±20%.
const fastest = Math.min(...seconds);
const stateBytes = Object.values(optimizer.state()).reduce((n, t) => {
  const bytes = n + t.nbytes;
  t.dispose();
  return bytes;
}, 0);
const gathered = await dist.allGather(tensor([peakRssBytes(), fastest, stateBytes], { dtype: "float64" }));
const perRank = gathered.map((t) => Array.from(t.toTypedArray() as Float64Array));
if (dist.isMain) {
  const params = parameterCount(shape);
  const world = dist.worldSize;
  const weights = 4 * params;
  const rootBytes = 4 * (2 * shape.vocab * shape.hidden + shape.hidden); // embeddings, head, final norm
  const layerBytes = (weights - rootBytes) / shape.layers;
  console.log(
    JSON.stringify({
      shape: shapeName,
      stage: sharding,
      ranks: world,
      threads: getNumThreads(),
      seconds: Math.max(...perRank.map((r) => r[1]!)),
      peakRssBytes: perRank.map((r) => r[0]),
      stateBytes: perRank.map((r) => r[2]),
      // Weights + gradients + RMSprop state (float32), each divided by the ranks from its stage on;
      // stage 3 keeps the embeddings and head whole and gathers one layer at a time (two in flight).
      analyticBytes:
        (sharding >= 3 ? rootBytes + (weights - rootBytes) / world + 2 * layerBytes : weights) +
        (sharding >= 2 ? weights / world : weights) +
        (sharding >= 1 ? weights / world : weights),
    }),
  );
}
optimizer.dispose();
dist.destroy();
