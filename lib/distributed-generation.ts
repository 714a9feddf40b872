// Data-parallel self-play generation: the prompts (in the generator's seed-42 order) are cut
// into one contiguous fraction per rank, each rank generates its fraction, and rank 0 merges
// them in order. Row seeds follow the shuffled order, so the result equals a one-rank run.
import type { Distributed } from "./distributed.js";
import { type GenerationProgress, SelfPlayGenerator, type SelfPlayGeneratorInit, mergeFractions } from "./generator.js";

export interface DataParallelGeneration {
  /** Rows generated across all ranks. */
  rows: number;
  /** The merged file (rank 0; null on the other ranks and without a group). */
  file: string | null;
}

/**
 * Runs SelfPlayGenerator across the ranks of `distributed` (or alone when it is null);
 * `onProgress` hears this rank's generator.
 */
export async function generateDataParallel(
  init: SelfPlayGeneratorInit,
  sftRows: readonly unknown[],
  outDir: string,
  distributed: Distributed | null,
  onProgress?: (progress: GenerationProgress) => void,
): Promise<DataParallelGeneration> {
  const alone = !distributed || distributed.worldSize === 1;
  const options = alone ? init.options : { ...init.options, fracLen: Math.ceil(sftRows.length / distributed.worldSize), dataFrac: distributed.rank };
  const generator = new SelfPlayGenerator({ ...init, ...(options ? { options } : {}) });
  if (onProgress) generator.on("progress", onProgress);
  const summary = await generator.run(sftRows, outDir);
  if (alone) return { rows: summary.rows, file: null };
  await distributed.barrier(); // every fraction is complete before rank 0 reads them
  let result: DataParallelGeneration = { rows: 0, file: null };
  if (distributed.isMain) {
    const merged = await mergeFractions(outDir, init.options?.split ?? "train");
    result = { rows: merged.rows, file: merged.file };
  }
  await distributed.barrier();
  return result;
}
