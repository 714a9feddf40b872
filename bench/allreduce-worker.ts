// One rank of the gradient all-reduce benchmark (started by `npm run bench allreduce` through
// the launcher): a SPIN train step on bench-60m makes the gradients, then the bucketed
// all-reduce of all of them is timed. Rank 0 prints one JSON line.
import { performance } from "node:perf_hooks";

import { CausalLM, Distributed, arange, ones, randn, scope, zeros } from "../lib/index.js";
import { native } from "../lib/native.js";
import { Tensor } from "../lib/tensor.js";
import { benchCheckpoint } from "./checkpoints.js";

const dist = await Distributed.fromEnv(process.env, { timeoutMs: 600_000 });
if (!dist) throw new Error("run through the launcher with WORLD_SIZE > 1");
const model = await CausalLM.load(await benchCheckpoint("bench-60m"));
const rows = 4;
const length = 512;
const ids = scope(() => randn([rows, length]).abs().mul(8000).floor().clamp(0, 31999).to("int64"));
const mask = ones([rows, length], { dtype: "int64" });
const labels = scope(() => {
  const isResponse = arange(0, length).ge(256).unsqueeze(0).expand([rows, length]);
  return isResponse.to("int64").mul(ids).add(isResponse.logicalNot().to("int64").mul(-100));
});
const opponent = zeros([2]);
for (const p of model.parameters().values()) p.requireGrad().dispose();

const step = async () => {
  const start = performance.now();
  await native.spinTrainStep(model.nativeHandle, Tensor.handleOf(ids), Tensor.handleOf(mask), Tensor.handleOf(labels), Tensor.handleOf(opponent), Tensor.handleOf(opponent), null, { beta: 0.1 });
  const compute = (performance.now() - start) / 1000;
  await dist.barrier();
  const reduceStart = performance.now();
  await dist.averageGradients(model);
  return { compute, reduce: (performance.now() - reduceStart) / 1000 };
};
await step(); // warm-up (first touch of the gradient buffers)
const timings = [await step(), await step()];
const compute = Math.min(...timings.map((t) => t.compute));
const reduce = Math.min(...timings.map((t) => t.reduce));
if (dist.isMain) {
  const bytes = [...model.parameters().values()].reduce((sum, p) => {
    const n = p.nbytes;
    p.dispose();
    return sum + n;
  }, 0);
  console.log(JSON.stringify({ ranks: dist.worldSize, gradientBytes: bytes, computeSeconds: compute, allReduceSeconds: reduce }));
}
dist.destroy();
