// The realistic-length SPIN workload (docs/benchmarks.md, "Realistic lengths"): 64 pairs whose
// prompt and response lengths are drawn from a fixed, seeded, short-skewed distribution (prompt
// 32–512, responses 16–512 tokens), each pair's real and generated response after one shared
// prompt, collated as the collator does: micro-batches of [real; generated] right-padded to
// their longest row. bench/peer/spin_step.py draws the same pairs with the same generator.
import { type Tensor, tensor } from "../lib/index.js";

export const REALISTIC = { pairs: 64, pairsPerMicroBatch: 8, prompt: [32, 512], response: [16, 512], seed: 20261207 } as const;

/** A 32-bit linear congruential generator (Numerical Recipes' constants): uniform in [0, 1). */
export function* uniforms(seed: number): Generator<number> {
  let state = seed >>> 0;
  for (;;) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    yield state / 2 ** 32;
  }
}

export interface RealisticPair {
  prompt: number[];
  real: number[];
  generated: number[];
}

/** The workload's pairs: lengths lo + ⌊(hi − lo + 1)·u²⌋ (skewed short), token ids in [3, vocab). */
export function realisticPairs(vocab: number, count: number = REALISTIC.pairs): RealisticPair[] {
  const u = uniforms(REALISTIC.seed);
  const draw = () => u.next().value as number;
  const length = ([lo, hi]: readonly [number, number]) => lo + Math.floor((hi - lo + 1) * draw() ** 2);
  const ids = (n: number) => Array.from({ length: n }, () => 3 + Math.floor((vocab - 3) * draw()));
  const pairs: RealisticPair[] = [];
  for (let i = 0; i < count; i++) {
    const [p, r, g] = [length(REALISTIC.prompt), length(REALISTIC.response), length(REALISTIC.response)];
    pairs.push({ prompt: ids(p), real: ids(r), generated: ids(g) });
  }
  return pairs;
}

export interface RealisticBatch {
  ids: Tensor;
  attentionMask: Tensor;
  labels: Tensor;
  /** Token slots of the padded batch, and the tokens a packed forward runs (each prompt once). */
  paddedSlots: number;
  packedTokens: number;
}

/** [real; generated] rows of some pairs, right-padded to the longest, labels on the responses. */
export function realisticBatch(pairs: readonly RealisticPair[]): RealisticBatch {
  const rows = [...pairs.map((p) => [p.prompt, p.real]), ...pairs.map((p) => [p.prompt, p.generated])] as [number[], number[]][];
  const width = Math.max(...rows.map(([p, r]) => p.length + r.length));
  const ids: number[][] = [];
  const mask: number[][] = [];
  const labels: number[][] = [];
  for (const [prompt, response] of rows) {
    const fill = width - prompt.length - response.length;
    ids.push([...prompt, ...response, ...new Array<number>(fill).fill(0)]);
    mask.push([...new Array<number>(prompt.length + response.length).fill(1), ...new Array<number>(fill).fill(0)]);
    labels.push([...new Array<number>(prompt.length).fill(-100), ...response, ...new Array<number>(fill).fill(-100)]);
  }
  return {
    ids: tensor(ids, { dtype: "int64" }),
    attentionMask: tensor(mask, { dtype: "int64" }),
    labels: tensor(labels, { dtype: "int64" }),
    paddedSlots: rows.length * width,
    packedTokens: pairs.reduce((n, p) => n + p.prompt.length + p.real.length + p.generated.length, 0),
  };
}
