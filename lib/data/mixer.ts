// Iteration mixing (docs/method.md, "Iteration mixing"), as the original's `mix_datasets`
// (spin/alignment/data.py): each training source is subsampled to its FIRST ⌊frac·len⌋ rows
// (`dataset.select(range(int(frac * len(dataset))))`), the subsets are concatenated in the given
// order, and the result is shuffled with a fixed seed (42). Test splits are not subsampled in
// the original ("to enable fair comparison across models"): every test row of every source is
// kept, concatenated and shuffled.
//
// The shuffle is a seeded JS PRNG, mulberry32(seed) driving a Fisher–Yates shuffle (the same
// construction as the generator's shuffledOrder), NOT the `datasets` library's
// `Dataset.shuffle(seed=42)` (numpy's PCG64 permutation): the mixed order is deterministic and
// the same on every machine, but not the original's order.
import { SpinNativeError } from "../core/errors.js";
import { seededShuffle as shuffle } from "../core/random.js";
import type { DataSplit } from "./dataset-files.js";
import { readSpinRows } from "./dataset-read.js";
import type { SpinRow } from "./rows.js";

/** One source of {@link mixDatasets}: its rows and the fraction of them to keep. */
export interface MixSource<T = SpinRow> {
  rows: readonly T[];
  /** 0 < fraction ≤ 1; the first ⌊fraction·rows.length⌋ rows are kept. */
  fraction: number;
  /** A name for error messages (e.g. the path); default `source <i>`. */
  name?: string;
}

/** A `dataset_mixer` as the original's config: path → fraction, in mixing order. An array of [path, fraction] pairs keeps its order exactly. */
export type DatasetMixer = Record<string, number> | readonly (readonly [string, number])[];

/** Options of {@link mixDatasetFiles}. */
export interface MixFilesOptions {
  /** Which split to read from every source; `"test"` keeps every row (no subsampling). Default `"train"`. */
  split?: DataSplit;
  /** Shuffle seed. Default 42. */
  seed?: number;
}

/** Shuffles a copy of `items` with a Fisher–Yates shuffle driven by mulberry32(seed). */
export function seededShuffle<T>(items: readonly T[], seed = 42): T[] {
  return shuffle(items, seed);
}

/** How many rows a fraction keeps: Python's int(frac * n) for frac > 0, i.e. ⌊frac·n⌋. */
export function fractionCount(fraction: number, n: number): number {
  return Math.floor(fraction * n);
}

function checkFraction(fraction: unknown, name: string, call: string): asserts fraction is number {
  if (typeof fraction !== "number" || !Number.isFinite(fraction) || fraction <= 0 || fraction > 1) {
    throw new SpinNativeError(
      `${call}: the fraction of ${name} must be a number with 0 < fraction ≤ 1, got ${String(fraction)}`,
      "INVALID_ARGUMENT",
      call,
    );
  }
}

function checkSeed(seed: unknown, call: string): asserts seed is number {
  if (typeof seed !== "number" || !Number.isInteger(seed)) {
    throw new SpinNativeError(`${call}: seed must be an integer, got ${String(seed)}`, "INVALID_ARGUMENT", call);
  }
}

/**
 * Mixes sources as the original's training mix: each source keeps its first
 * ⌊fraction·length⌋ rows, the kept rows are concatenated in the sources' order, and the result
 * is shuffled with `seed` ({@link seededShuffle}; not the `datasets` library's permutation).
 * The rows themselves are not copied.
 *
 * @param sources - Rows and fraction per source, in mixing order.
 * @param seed - Shuffle seed, default 42 (the original's).
 * @throws SpinNativeError `INVALID_ARGUMENT` for a fraction outside (0, 1] (naming the source),
 *   a source without a rows array, or a non-integer seed.
 */
export function mixDatasets<T = SpinRow>(sources: readonly MixSource<T>[], seed = 42): T[] {
  const call = "mixDatasets";
  checkSeed(seed, call);
  if (!Array.isArray(sources)) throw new SpinNativeError(`${call}: sources must be an array`, "INVALID_ARGUMENT", call);
  const kept: T[] = [];
  sources.forEach((source, i) => {
    const name = source?.name ?? `source ${i}`;
    if (!Array.isArray(source?.rows)) {
      throw new SpinNativeError(`${call}: ${name} must have a rows array`, "INVALID_ARGUMENT", call);
    }
    checkFraction(source.fraction, name, call);
    const n = fractionCount(source.fraction, source.rows.length);
    for (let r = 0; r < n; r++) kept.push(source.rows[r]!);
  });
  return seededShuffle(kept, seed);
}

/**
 * The original's `mix_datasets` over paths: reads one split of every source (a file, a folder
 * with `train*`/`test*` files or `<split>/` subfolders, or a glob), then mixes them with
 * {@link mixDatasets}. For the test split fractions are validated but not applied (every test
 * row is kept, as the original). Sources are mixed in the mixer's order (an object's insertion
 * order; keys that look like integers are reordered first by JavaScript, so pass an array of
 * pairs for such paths).
 *
 * @throws SpinNativeError `INVALID_ARGUMENT` for a fraction outside (0, 1] (naming the path), an
 *   empty mixer, or a bad row; `IO` for a source with no data of the split.
 */
export async function mixDatasetFiles(mixer: DatasetMixer, options: MixFilesOptions = {}): Promise<SpinRow[]> {
  const call = "mixDatasetFiles";
  const split = options.split ?? "train";
  const seed = options.seed ?? 42;
  checkSeed(seed, call);
  const entries: (readonly [string, number])[] = Array.isArray(mixer) ? [...mixer] : Object.entries(mixer as Record<string, number>);
  if (entries.length === 0) throw new SpinNativeError(`${call}: the dataset mixer is empty`, "INVALID_ARGUMENT", call);
  // validate every fraction before reading anything
  for (const [source, fraction] of entries) checkFraction(fraction, `'${source}'`, call);
  const sources: MixSource[] = [];
  for (const [source, fraction] of entries) {
    const rows = await readSpinRows(source, split);
    sources.push({ rows, fraction: split === "test" ? 1 : fraction, name: `'${source}'` });
  }
  return mixDatasets(sources, seed);
}
