// Seeded randomness in JavaScript (data orders, shuffles, fractions): mulberry32 and a
// Fisher–Yates shuffle. The same on every machine and Node version; not numpy's or the
// `datasets` library's permutation (documented where an order is compared to the original).

/** mulberry32: a small, fast 32-bit seeded PRNG with values in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A shuffled copy of `items` (Fisher–Yates driven by mulberry32(seed)). */
export function seededShuffle<T>(items: readonly T[], seed: number): T[] {
  const random = mulberry32(seed);
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** A seeded permutation of 0..n-1. */
export function permutation(n: number, seed: number): number[] {
  return seededShuffle(Array.from({ length: n }, (_, i) => i), seed);
}

/** A 32-bit seed for micro-batch `micro` of update `update` on `rank`, from the run's seed (distinct per tuple). */
export function microBatchSeed(seed: number, update: number, micro: number, rank: number): number {
  let h = seed >>> 0;
  for (const part of [update, micro, rank]) h = Math.imul(h ^ (part >>> 0), 0x9e3779b1) + 0x7f4a7c15;
  return mulberry32(h)() * 2 ** 32 >>> 0;
}
