// Data-parallel self-play generation: the prompts (in the generator's seed-42 order) are cut
// into one contiguous fraction per rank, each rank generates its fraction, and rank 0 merges
// them in order. Row seeds follow the shuffled order, so the result equals a one-rank run.
import path from "node:path";
import { performance } from "node:perf_hooks";

import type { Distributed } from "../distributed/distributed.js";
import { lockRunFolder, runCommand } from "../core/run-lock.js";
import { mergeFractions } from "../data/fraction-output.js";
import { SelfPlayGenerator, type SelfPlayGeneratorInit } from "./generator.js";
import type { GenerationProgress, GenerationSummary } from "./self-play-events.js";

export interface DataParallelGeneration {
  /** Rows of the split across all ranks (those of earlier runs included). */
  rows: number;
  /** The merged file (rank 0; null on the other ranks and without a group). */
  file: string | null;
  /** Share of the rows this run generated, on all ranks, that ended with EOS (0 when it generated none). */
  eosRate: number;
  /** Mean new tokens of those rows. */
  meanGeneratedTokens: number;
  seconds: number;
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
  if (alone) {
    const summary = await runGenerator(init, sftRows, outDir, onProgress);
    return { rows: summary.rows, file: null, eosRate: summary.eosRate, meanGeneratedTokens: summary.meanGeneratedTokens, seconds: summary.seconds };
  }
  const options = { ...init.options, fracLen: Math.ceil(sftRows.length / distributed.worldSize), dataFrac: distributed.rank };
  // Rank 0 holds the output folder for the whole job; every rank writes its fraction under it.
  const lock = await lockRunFolder(path.join(outDir, options.split ?? "train"), runCommand("generateDataParallel"), distributed);
  try {
    return await generateFraction({ ...init, options, folderLocked: true }, sftRows, outDir, distributed, onProgress);
  } finally {
    lock?.release();
  }
}

/** Runs one generator on `init`'s fraction, reporting progress. */
async function runGenerator(
  init: SelfPlayGeneratorInit,
  sftRows: readonly unknown[],
  outDir: string,
  onProgress?: (progress: GenerationProgress) => void,
): Promise<GenerationSummary> {
  const generator = new SelfPlayGenerator(init);
  if (onProgress) generator.on("progress", onProgress);
  return generator.run(sftRows, outDir);
}

async function generateFraction(
  init: SelfPlayGeneratorInit,
  sftRows: readonly unknown[],
  outDir: string,
  distributed: Distributed,
  onProgress?: (progress: GenerationProgress) => void,
): Promise<DataParallelGeneration> {
  const started = performance.now();
  const summary = await runGenerator(init, sftRows, outDir, onProgress);
  // The run's rows over all ranks (this sum also waits until every fraction is complete).
  const totals = await distributed.sum({
    generated: summary.generatedRows,
    eos: summary.finishReasons.eos,
    tokens: summary.meanGeneratedTokens * summary.generatedRows,
  });
  const generated = totals.generated!;
  const merged = distributed.isMain ? await mergeFractions(outDir, init.options?.split ?? "train") : null;
  await distributed.barrier();
  return {
    rows: merged?.rows ?? 0,
    file: merged?.file ?? null,
    eosRate: generated === 0 ? 0 : totals.eos! / generated,
    meanGeneratedTokens: generated === 0 ? 0 : totals.tokens! / generated,
    seconds: (performance.now() - started) / 1000,
  };
}
