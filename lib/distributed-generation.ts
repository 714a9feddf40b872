// Data-parallel self-play generation: the prompts (in the generator's seed-42 order) are cut
// into one contiguous fraction per rank, each rank generates its fraction, and rank 0 merges
// them in order. Row seeds follow the shuffled order, so the result equals a one-rank run.
import type { Distributed } from "./distributed.js";
import { SelfPlayGenerator, type SelfPlayGeneratorInit, mergeFractions } from "./generator.js";

export interface DataParallelGeneration {
  /** Rows generated across all ranks. */
  rows: number;
  /** The merged file (rank 0; null on the other ranks and without a group). */
  file: string | null;
}

/** Runs SelfPlayGenerator across the ranks of `distributed` (or alone when it is null). */
export async function generateDataParallel(
  init: SelfPlayGeneratorInit,
  sftRows: readonly unknown[],
  outDir: string,
  distributed: Distributed | null,
): Promise<DataParallelGeneration> {
  if (!distributed || distributed.worldSize === 1) {
    const summary = await new SelfPlayGenerator(init).run(sftRows, outDir);
    return { rows: summary.rows, file: null };
  }
  const fracLen = Math.ceil(sftRows.length / distributed.worldSize);
  const generator = new SelfPlayGenerator({ ...init, options: { ...init.options, fracLen, dataFrac: distributed.rank } });
  await generator.run(sftRows, outDir);
  await distributed.barrier(); // every fraction is complete before rank 0 reads them
  let result: DataParallelGeneration = { rows: 0, file: null };
  if (distributed.isMain) {
    const merged = await mergeFractions(outDir, init.options?.split ?? "train");
    result = { rows: merged.rows, file: merged.file };
  }
  await distributed.barrier();
  return result;
}
