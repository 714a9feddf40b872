// The SPIN train-step workload of docs/benchmarks.md, one configuration per process so peak RSS is
// its own: `node dist/bench/train-step.js <shape> [--checkpoint] [--live-opponent] [--lora=R]
// [--dtype=bfloat16]` prints one JSON row. B pairs → 2B sequences [real; generated], prompt +
// response tokens, labels −100 on prompts, sigmoid loss β 0.1, backward, clip 1.0, RMSprop step.
// --lora=R: a LoRA adapter of rank R (α 2R, dropout 0.05) on every linear module over a frozen
// base of --dtype (default float32); only the adapter has gradients and optimizer state.
import { performance } from "node:perf_hooks";

import { CausalLM, Optimizer, noGrad, spinStep, zeros } from "../lib/index.js";
import { SHAPES, benchCheckpoint, parameterCount } from "./checkpoints.js";
import { peakRssBytes, spinBenchBatch } from "./spin-batch.js";

const [shapeName = "bench-tiny", ...flags] = process.argv.slice(2);
const shape = SHAPES[shapeName];
if (!shape) throw new Error(`unknown shape ${shapeName}`);
const checkpoint = flags.includes("--checkpoint");
const liveOpponent = flags.includes("--live-opponent");
const loraRank = Number(flags.find((f) => f.startsWith("--lora="))?.slice(7) ?? 0);
const dtype = (flags.find((f) => f.startsWith("--dtype="))?.slice(8) ?? "float32") as "float32" | "bfloat16";
const loraDropout = Number(flags.find((f) => f.startsWith("--lora-dropout="))?.slice(15) ?? 0.05);
const repeats = Number(flags.find((f) => f.startsWith("--repeats="))?.slice(10) ?? (shapeName === "bench-1b" || shapeName === "bench-250m" ? 1 : 3));
const tiny = shapeName === "bench-tiny";
const pairs = tiny ? 8 : 2;
const prompt = tiny ? 64 : 256;
const response = tiny ? 64 : 256;
const rows = 2 * pairs;
const length = prompt + response;

const dir = await benchCheckpoint(shapeName);
const model = await CausalLM.load(dir, { dtype });
if (loraRank > 0) model.addAdapter({ r: loraRank, alpha: 2 * loraRank, dropout: loraDropout, targetModules: "all-linear" });
const opponent = liveOpponent ? await CausalLM.load(dir) : null;
const optimizer = new Optimizer(model, { kind: "rmsprop" });
const adapterParams = Object.values(model.adapterTensors() ?? {}).reduce((n, t) => {
  const count = n + t.numel;
  t.dispose();
  return count;
}, 0);

const { ids, attentionMask: mask, labels } = spinBenchBatch(shape.vocab, rows, prompt, response);
let opponentReal = zeros([pairs]);
let opponentGenerated = zeros([pairs]);

async function step(): Promise<void> {
  if (opponent) {
    const out = await noGrad(() => opponent.logprobs(ids, mask, labels));
    opponentReal.dispose();
    opponentGenerated.dispose();
    opponentReal = out.sum.slice(0, 0, pairs).contiguous();
    opponentGenerated = out.sum.slice(0, pairs).contiguous();
    for (const t of Object.values(out)) t.dispose();
  }
  await spinStep(model, { ids, attentionMask: mask, labels, opponentReal, opponentGenerated }, { lossType: "sigmoid", beta: 0.1 }, { gradientCheckpointing: checkpoint });
  await optimizer.step(1e-7, 1.0);
}

const seconds: number[] = [];
if (repeats > 1) await step(); // warm-up
for (let i = 0; i < repeats; i++) {
  const start = performance.now();
  await step();
  seconds.push((performance.now() - start) / 1000);
}
seconds.sort((a, b) => a - b);
const median = seconds[Math.floor(seconds.length / 2)]!;
const params = parameterCount(shape);
const tokens = rows * length;
// Attention adds 2·2·T² FLOPs per head dim per layer in forward (scores and values), ×3 with backward.
const attention = 3 * 4 * shape.layers * shape.hidden * length * length * rows;
const flops = (liveOpponent ? 8 : 6) * params * tokens;
console.log(
  JSON.stringify({
    name: `${shapeName}${checkpoint ? " +ckpt" : ""}${liveOpponent ? " +live opp" : ""}${loraRank ? ` LoRA r${loraRank}` : " full"}${dtype === "float32" ? "" : ` ${dtype} base`}`,
    shape: shapeName,
    params,
    tokens,
    seconds: median,
    "tokens/s": tokens / median,
    gflops: flops / median / 1e9,
    gflopsWithAttention: (flops + attention) / median / 1e9,
    peakRssBytes: peakRssBytes(),
    // Weights, gradients and optimizer state: all float32, or the base's weights plus the adapter's three copies.
    minimumBytes: loraRank ? (dtype === "float32" ? 4 : 2) * params + 3 * 4 * adapterParams : 3 * 4 * params,
  }),
);
