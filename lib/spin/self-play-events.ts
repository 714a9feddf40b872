// What self-play generation reports: progress after every window, each generate call, and a
// run's summary (lib/spin/generator.ts emits them).
import type { Generation } from "../model/generation.js";

/** After every window: where the fraction stands. */
export interface GenerationProgress {
  fraction: number;
  /** Rows of the fraction done (written or yielded), those of earlier runs included. */
  rows: number;
  /** Rows of the fraction to generate (skipped ones excluded). */
  total: number;
  /** New tokens per second of wall time in this run. */
  tokensPerSecond: number;
  /** Seconds left at this run's pace (NaN before the first batch ends). */
  etaSeconds: number;
  elapsedSeconds: number;
}

/** One generate call: a window of rows, batchSize of them decoding at a time. */
export interface GenerationBatch {
  fraction: number;
  /** Index of the window in the fraction's layout. */
  batch: number;
  rows: number;
  /** Prompt tokens of the call's rows (prefilled without padding). */
  promptTokens: number;
  newTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
  tokensPerSecond: number;
}

/** What a run did. Row statistics are over the rows produced by this run (not earlier runs). */
export interface GenerationSummary {
  fraction: number;
  /** Rows of the fraction done after this run (earlier runs' rows included). */
  rows: number;
  /** Rows already written by earlier runs. */
  resumedRows: number;
  /** Rows produced by this run. */
  generatedRows: number;
  /** Prompts of the fraction left out (too long, with skipTooLong "skip"). */
  skipped: number;
  /** Their indices in the input. */
  skippedRows: number[];
  /** New tokens decoded by this run (rows regenerated to redo a window included). */
  newTokens: number;
  seconds: number;
  /** Share of this run's rows that ended with an EOS token. */
  eosRate: number;
  /** Mean new tokens of this run's rows (the EOS or stop tokens included). */
  meanGeneratedTokens: number;
  finishReasons: { eos: number; stop: number; length: number };
  /** Output files of the fraction (run() only). */
  files: string[];
}

/** Payloads of the generator's events. */
export interface GeneratorEvents {
  progress: GenerationProgress;
  batch: GenerationBatch;
  done: GenerationSummary;
}

/** Counts a run's rows, tokens and finish reasons for its {@link GenerationSummary}. */
export class RunStats {
  newTokens = 0;
  rows = 0;
  tokens = 0;
  finish = { eos: 0, stop: 0, length: 0 };

  add(generation: Generation): void {
    this.rows++;
    this.tokens += generation.tokens.length;
    this.finish[generation.finishReason]++;
  }

  summary(fraction: number, skipped: readonly number[], resumed: number, seconds: number, files: string[]): GenerationSummary {
    return {
      fraction,
      rows: resumed + this.rows,
      resumedRows: resumed,
      generatedRows: this.rows,
      skipped: skipped.length,
      skippedRows: [...skipped],
      newTokens: this.newTokens,
      seconds,
      eosRate: this.rows === 0 ? 0 : this.finish.eos / this.rows,
      meanGeneratedTokens: this.rows === 0 ? 0 : this.tokens / this.rows,
      finishReasons: { ...this.finish },
      files,
    };
  }
}
