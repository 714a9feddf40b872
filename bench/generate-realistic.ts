// Self-play generation on realistic prompt lengths (docs/benchmarks.md, "Realistic lengths"),
// one configuration per process: `node dist/bench/generate-realistic.js <shape> [--static]
// [--prompts=N]` prints one JSON row. The prompts of bench/realistic.ts's pairs (32–512
// tokens, skewed short), sampled at temperature 1 (no top-k or top-p; seed 0), at most 256 new
// tokens; 2% of the vocabulary (ids 3..) counts as EOS, so on the benchmark's near-flat random
// model answers end after a roughly geometric number of tokens (mean about 50), as real
// answers vary in length. Continuous batching keeps 16 rows decoding; --static generates
// batches of 16 prompts one after another (each runs until its longest row ends), as a
// transformers `generate` loop over batches does (bench/peer/generate.py).
import { performance } from "node:perf_hooks";

import { CausalLM, runtimeInfo } from "../lib/index.js";
import { SHAPES, benchCheckpoint } from "./checkpoints.js";
import { realisticPairs } from "./realistic.js";
import { peakRssBytes } from "./spin-batch.js";

export const GENERATION = { batch: 16, maxNewTokens: 256, eosShare: 0.02 } as const;

const [shapeName = "bench-60m", ...flags] = process.argv.slice(2);
const shape = SHAPES[shapeName];
if (!shape) throw new Error(`unknown shape ${shapeName}`);
const staticBatches = flags.includes("--static");
const count = Number(flags.find((f) => f.startsWith("--prompts="))?.slice(10) ?? 512);

const model = await CausalLM.load(await benchCheckpoint(shapeName));
const prompts = realisticPairs(shape.vocab, count).map((p) => p.prompt);
const eosTokenIds = Array.from({ length: Math.round(shape.vocab * GENERATION.eosShare) }, (_, i) => 3 + i);
const options = { maxNewTokens: GENERATION.maxNewTokens, eosTokenIds, doSample: true, temperature: 1, topK: 0, topP: 1 };

const start = performance.now();
let newTokens = 0;
if (staticBatches) {
  for (let b = 0; b < prompts.length; b += GENERATION.batch) {
    newTokens += (await model.generate(prompts.slice(b, b + GENERATION.batch), { ...options, seed: b })).newTokens;
  }
} else {
  newTokens = (await model.generate(prompts, { ...options, maxBatchSequences: GENERATION.batch })).newTokens;
}
const seconds = (performance.now() - start) / 1000;
console.log(
  JSON.stringify({
    name: `spin-native ${staticBatches ? "static batches" : "continuous batching"}`,
    torch: runtimeInfo().torchVersion,
    prompts: count,
    seconds,
    newTokens,
    peakRssBytes: peakRssBytes(),
  }),
);
