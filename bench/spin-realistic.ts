// One optimizer step of SPIN over the realistic-length workload (bench/realistic.ts), one
// configuration per process so peak RSS is its own: `node dist/bench/spin-realistic.js <shape>
// [--padded] [--eager] [--repeats=N]` prints one JSON row. 64 pairs in micro-batches of 8
// (gradient accumulation 8), precomputed opponent log-probs, sigmoid loss β 0.1, backward, clip
// 1.0, RMSprop step. --padded runs the collated [2B, T] batches as they are (today's path before
// packing); --eager uses explicit attention instead of the fused kernel.
import { CausalLM, Optimizer, runtimeInfo, spinStep, zeros } from "../lib/index.js";
import { SHAPES, benchCheckpoint, parameterCount } from "./checkpoints.js";
import { REALISTIC, realisticBatch, realisticPairs } from "./realistic.js";
import { peakRssBytes } from "./spin-batch.js";
import { time } from "./timing.js";

const [shapeName = "bench-60m", ...flags] = process.argv.slice(2);
const shape = SHAPES[shapeName];
if (!shape) throw new Error(`unknown shape ${shapeName}`);
const packing = !flags.includes("--padded");
const eager = flags.includes("--eager");
const repeats = Number(flags.find((f) => f.startsWith("--repeats="))?.slice(10) ?? 1);

const model = await CausalLM.load(await benchCheckpoint(shapeName), eager ? { attention: "eager" } : {});
const optimizer = new Optimizer(model, { kind: "rmsprop" });
const pairs = realisticPairs(shape.vocab);
const per = REALISTIC.pairsPerMicroBatch;
const batches = Array.from({ length: Math.ceil(pairs.length / per) }, (_, i) => realisticBatch(pairs.slice(i * per, (i + 1) * per)));
const opponent = zeros([per]).sub(300); // precomputed: any fixed values make the same work

async function step(): Promise<void> {
  for (const b of batches) {
    const batch = { ids: b.ids, attentionMask: b.attentionMask, labels: b.labels, opponentReal: opponent, opponentGenerated: opponent };
    await spinStep(model, batch, { lossType: "sigmoid", beta: 0.1 }, { scale: 1 / batches.length, packing });
  }
  await optimizer.step(1e-7, 1.0);
}

const { median } = await time(step, repeats, 0);
const packedTokens = batches.reduce((n, b) => n + b.packedTokens, 0);
const paddedSlots = batches.reduce((n, b) => n + b.paddedSlots, 0);
const params = parameterCount(shape);
console.log(
  JSON.stringify({
    name: `spin-native ${packing ? "packed" : "padded"}, ${model.attention}`,
    torch: runtimeInfo().torchVersion,
    seconds: median,
    // The work actually needed: each prompt once, both responses, 6·P FLOPs per token.
    packedTokens,
    paddedSlots,
    gflops: (6 * params * packedTokens) / median / 1e9,
    peakRssBytes: peakRssBytes(),
  }),
);
