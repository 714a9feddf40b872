// Self-play generation (docs/method.md, "Generation"): the current model answers every SFT
// prompt, and each answer is paired with the ground truth as a SPIN row {real, generated}.
//
// What the original generate.py did, and what this does:
// - Prompts are shuffled with seed 42 and cut into fractions: fraction k = shuffled rows
//   [k·fracLen, (k+1)·fracLen) (fracLen 0 = all), so fractions can run on different machines
//   and be merged back in order ({@link mergeFractions}). The shuffle is a seeded JS PRNG
//   (mulberry32 + Fisher–Yates, {@link shuffledOrder}), NOT numpy's RandomState: the fractions
//   are not the original's, but they are the same on every machine that runs spin-native.
// - Decoding through model.generate (left padding, no BOS, the prompt sliced off, special
//   tokens removed from the text, leading whitespace stripped); maxNewTokens 256 and the
//   checkpoint's generation config (greedy by default) as the original. Beyond it: stop
//   sequences (removed from the answer unless keepStopSequences).
// - Prompt: the tokenizer's chat template with the generation prompt (promptFormat "chat", the
//   default, the same text training uses) or the original's `"### Instruction: {x}\n\n### Response: "`
//   (promptFormat "spin-instruction", x = the last user message).
// - Sampling is seeded per row: row seed = seed + the row's index in the shuffled order, so a
//   row's output does not depend on the fraction or on which rows share its batch.
// - Output is resumable instead of appended blindly: a re-run skips rows already written, and a
//   torn last line (a crash in the middle of a write) is detected and redone.
//
// Output layout under `<outDir>/<split>/`, for fraction k:
// - `<split>-<k>.meta.json`: what produced the fraction (settings, a hash of the inputs and one
//   of the model's weights, the row count, whether it is complete). A re-run with other inputs,
//   settings or weights is refused instead of mixing outputs.
// - jsonl: `<split>-<k>.jsonl`, one `{"real": [...], "generated": [...]}` per line, in the
//   fraction's (shuffled) order, appended and fsynced as soon as a prefix of rows is complete.
// - parquet: parquet files cannot be appended, so every flush writes a new file
//   `<split>-<k>-<n>.parquet` (n = 00000, 00001, … in order; each written atomically) holding the
//   next rows; the fraction is the concatenation of its files. Both formats are
//   lib/data/dataset-write.ts's (the parquet schema of the original's released datasets);
//   lib/data/fraction-output.ts writes and recovers a fraction's files.
// mergeFractions (data/fraction-output.ts) concatenates fractions 0..k into
// `<outDir>/<split>.jsonl|parquet`. The options and their checks are self-play-options.ts's,
// the progress events and summary self-play-events.ts's. What stays here (about 440 lines) is
// one state machine — plan, batch, decode, write in order, resume — that reads best whole.
//
// Batching: rows are taken in windows of batchSize × sortWindowBatches rows, one generate call
// per window with continuous batching: batchSize rows decode together, and when one finishes the
// window's next prompt takes its place (with lengthSortedBatching, the default, longest prompts
// first). Nothing is padded, and a row's output does not depend on the rows beside it. Results
// are written in the fraction's order: a window's rows reach the file when the window is done,
// so a crash loses at most one window of work. Windows are laid out from the fraction's start,
// independently of how far a previous run got; any batchSize may be used to resume (e.g. a
// smaller one after running out of memory).
import { EventEmitter } from "node:events";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";

import { writeFileAtomic } from "../core/atomic.js";
import { SpinNativeError } from "../core/errors.js";
import { permutation } from "../core/random.js";
import { RunLock, runCommand } from "../core/run-lock.js";
import { type FractionMeta, FractionOutput, readJsonIfExists } from "../data/fraction-output.js";
import { type ChatMessage, type SpinRow, locateRow, toSpinRow } from "../data/rows.js";
import type { CausalLM } from "../model/causal-lm.js";
import { hashParts, modelFingerprint } from "../model/fingerprint.js";
import type { GenerateOptions, Generation } from "../model/generation.js";
import type { Tokenizer } from "../model/tokenizer.js";
import { type GenerationSummary, type GeneratorEvents, RunStats } from "./self-play-events.js";
import { type ResolvedSelfPlayOptions, type SelfPlayOptions, resolveSelfPlayOptions } from "./self-play-options.js";


export interface SelfPlayGeneratorInit {
  model: CausalLM;
  tokenizer: Tokenizer;
  options?: SelfPlayOptions;
  /** @internal The caller holds the output folder's lock for a whole job (data-parallel generation). */
  folderLocked?: boolean;
}

const META_VERSION = 1;
const CALL = "SelfPlayGenerator";

function invalid(message: string, call = CALL): SpinNativeError {
  return new SpinNativeError(message, "INVALID_ARGUMENT", call);
}

/** The original generator's prompt: `"### Instruction: {x}\n\n### Response: "`. */
export function spinInstructionPrompt(x: string): string {
  return `### Instruction: ${x}\n\n### Response: `;
}

/**
 * The shuffled order of n prompts: a permutation of 0..n-1 from mulberry32(seed) and a
 * Fisher–Yates shuffle. Not numpy's RandomState (the original's `dataset.shuffle(seed=42)`);
 * it is the same on every machine, which is all fractions need.
 */
export function shuffledOrder(n: number, seed = 42): number[] {
  return permutation(n, seed);
}

/** A prompt of the fraction that will be generated. */
interface PlannedRow {
  /** Index among the fraction's generated rows (= its line in the output). */
  kept: number;
  /** Index in the shuffled order (the row's seed offset). */
  global: number;
  /** Index in the input. */
  source: number;
  row: SpinRow;
  prompt: ChatMessage[];
  ids: number[];
}

interface Plan {
  fraction: number;
  totalPrompts: number;
  rows: PlannedRow[];
  skipped: number[];
  /** Every input row, converted (in input order). */
  converted: SpinRow[];
  /** Windows of rows (one generate call each), from the fraction's start. */
  windows: PlannedRow[][];
  windowSize: number;
}

interface Completed {
  planned: PlannedRow;
  generated: SpinRow;
  generation: Generation;
}

/** Messages as stored: copies, and only role and content for parquet. */
function copyMessages(messages: readonly ChatMessage[]): ChatMessage[] {
  return messages.map((m) => ({ ...m }));
}

/**
 * Self-play generation: the model answers the SFT prompts and each answer becomes a SPIN row
 * `{real: [...prompt, ground truth], generated: [...prompt, the model's answer]}`.
 *
 * @example
 * const generator = new SelfPlayGenerator({ model, tokenizer, options: { fracLen: 800, dataFrac: 2 } });
 * generator.on("progress", (p) => console.log(`${p.rows}/${p.total}, eta ${p.etaSeconds.toFixed(0)} s`));
 * await generator.run(sftRows, "data/iter0");        // data/iter0/train/train-2.jsonl (resumable)
 * await mergeFractions("data/iter0", "train");       // data/iter0/train.jsonl
 */
export class SelfPlayGenerator {
  readonly model: CausalLM;
  readonly tokenizer: Tokenizer;
  readonly options: Readonly<ResolvedSelfPlayOptions>;
  readonly #events = new EventEmitter();
  readonly #folderLocked: boolean;

  constructor(init: SelfPlayGeneratorInit) {
    if (!init || typeof init !== "object" || !init.model || !init.tokenizer) throw new TypeError(`${CALL}: expected {model, tokenizer, options?}`);
    this.model = init.model;
    this.tokenizer = init.tokenizer;
    this.options = resolveSelfPlayOptions(init.options ?? {}, init.tokenizer);
    this.#folderLocked = init.folderLocked ?? false;
  }

  on<K extends keyof GeneratorEvents>(event: K, listener: (payload: GeneratorEvents[K]) => void): this {
    this.#events.on(event, listener);
    return this;
  }

  off<K extends keyof GeneratorEvents>(event: K, listener: (payload: GeneratorEvents[K]) => void): this {
    this.#events.off(event, listener);
    return this;
  }

  #emit<K extends keyof GeneratorEvents>(event: K, payload: GeneratorEvents[K]): void {
    this.#events.emit(event, payload);
  }

  /** The prompt text of a row's prompt messages, as this generator renders it. */
  promptText(prompt: readonly ChatMessage[]): string {
    if (this.options.promptFormat === "spin-instruction") {
      const lastUser = [...prompt].reverse().find((m) => m.role === "user");
      if (lastUser === undefined) throw invalid(`${CALL}: the prompt has no user turn`);
      return spinInstructionPrompt(lastUser.content);
    }
    return this.tokenizer.promptText(prompt, this.options.promptTextOptions);
  }

  /**
   * The answer's text as model.generate writes it (special tokens removed, leading whitespace
   * stripped), less the stop sequence that ended it. Decoded here rather than by
   * model.generate, skipping ids the tokenizer does not have (a model's vocabulary can be
   * padded beyond the tokenizer's, e.g. Qwen2's; transformers' decode skips them too).
   */
  #answerText(generation: Generation): string {
    let t = generation.tokens;
    if (generation.finishReason === "stop" && !this.options.keepStopSequences) {
      const stop = this.options.stopIds
        .filter((q) => q.length > 0 && q.length <= t.length && q.every((id, i) => t[t.length - q.length + i] === id))
        .sort((a, b) => b.length - a.length)[0];
      if (stop !== undefined) t = t.slice(0, t.length - stop.length);
    }
    const known = t.filter((id) => this.tokenizer.idToToken(id) !== null);
    return this.tokenizer.decode(known, { skipSpecialTokens: true }).trimStart();
  }

  /** Converts and checks the input, shuffles it, cuts the fraction, tokenizes its prompts. */
  #plan(sftRows: readonly unknown[]): Plan {
    const o = this.options;
    if (!Array.isArray(sftRows)) throw new TypeError(`${CALL}: rows must be an array`);
    if (sftRows.length === 0) throw invalid(`${CALL}: no prompts: the input (${o.inputName}) is empty`);
    const converted = sftRows.map((raw, i) => {
      const row = toSpinRow(raw, o.rowLocation(i));
      const prompt = row.real.slice(0, -1);
      if (!prompt.some((m) => m.role === "user")) throw invalid(`${locateRow(o.rowLocation(i))}: the prompt has no user turn`);
      return row;
    });
    const n = converted.length;
    const order = shuffledOrder(n, o.shuffleSeed);
    const start = o.fracLen === 0 ? 0 : o.dataFrac * o.fracLen;
    const end = o.fracLen === 0 ? n : Math.min(n, start + o.fracLen);
    if (start >= n) throw invalid(`${CALL}: fraction ${o.dataFrac} is empty: ${n} prompts hold ${Math.ceil(n / o.fracLen)} fractions of ${o.fracLen}`);

    const context = this.model.config.maxPositions;
    const limit = context - o.maxNewTokens;
    if (limit < 1) throw invalid(`${CALL}: maxNewTokens ${o.maxNewTokens} leaves no room for a prompt in the model's context of ${context} positions`);
    const vocab = this.model.config.vocabSize;
    const rows: PlannedRow[] = [];
    const skipped: number[] = [];
    for (let global = start; global < end; global++) {
      const source = order[global]!;
      const row = converted[source]!;
      const prompt = row.real.slice(0, -1);
      const where = locateRow(o.rowLocation(source));
      let text: string;
      try {
        text = this.promptText(prompt);
      } catch (error) {
        if (error instanceof SpinNativeError) throw invalid(`${where}: ${error.message}`);
        throw error;
      }
      const ids = this.tokenizer.encode(text, { addSpecialTokens: false });
      if (ids.length === 0) throw invalid(`${where}: the prompt renders to no tokens`);
      const outside = ids.find((id) => id >= vocab);
      if (outside !== undefined) throw invalid(`${where}: the prompt holds token id ${outside}, outside the model's vocabulary of ${vocab} (tokenizer and model do not match)`);
      if (ids.length > limit) {
        if (o.skipTooLong === "skip") {
          skipped.push(source);
          continue;
        }
        throw invalid(
          `${where}: the prompt is ${ids.length} tokens, more than the model's context of ${context} positions minus maxNewTokens ${o.maxNewTokens} ` +
            `(= ${Math.max(0, limit)}); lower maxNewTokens or pass skipTooLong: "skip"`,
        );
      }
      rows.push({ kept: rows.length, global, source, row, prompt, ids });
    }

    const windowSize = o.batchSize * o.sortWindowBatches;
    const windows: PlannedRow[][] = [];
    for (let w = 0; w < rows.length; w += windowSize) {
      const window = rows.slice(w, w + windowSize);
      if (o.lengthSortedBatching) window.sort((a, b) => b.ids.length - a.ids.length || a.kept - b.kept);
      windows.push(window);
    }

    return { fraction: o.dataFrac, totalPrompts: n, converted, rows, skipped, windows, windowSize };
  }

  /**
   * What identifies the output: `run` is equal for every fraction of one generation (settings,
   * every input row's `real`, the weights as they are now), `fraction` adds this fraction's prompts.
   */
  #hashes(plan: Plan): { run: string; fraction: string } {
    const o = this.options;
    const settings = {
      version: META_VERSION,
      shuffleSeed: o.shuffleSeed,
      fracLen: o.fracLen,
      maxNewTokens: o.maxNewTokens,
      promptFormat: o.promptFormat,
      promptTextOptions: o.promptTextOptions,
      sampling: o.sampling,
      seed: o.seed,
      skipTooLong: o.skipTooLong,
      keepStopSequences: o.keepStopSequences,
    };
    const run = hashParts([JSON.stringify(settings), modelFingerprint(this.model), ...plan.converted.map((r) => JSON.stringify(r.real))]);
    const fraction = hashParts([run, String(plan.fraction), ...plan.rows.map((r) => `${r.source}:${r.ids.join(",")}`), `skipped:${plan.skipped.join(",")}`]);
    return { run, fraction };
  }

  /**
   * Generates the planned rows from kept index `startKept` on, batch by batch; yields the rows
   * that are complete in order (every row before them done) as soon as they are.
   */
  async *#drive(plan: Plan, startKept: number, stats: RunStats): AsyncGenerator<Completed[]> {
    const o = this.options;
    const t0 = performance.now();
    let next = startKept;
    let generatedSinceStart = 0;
    // Stop sequences as ids (encoded as model.generate would); no tokenizer: #answerText decodes.
    const generateOptions: GenerateOptions = { ...o.sampling, stopSequences: o.stopIds, maxNewTokens: o.maxNewTokens };
    for (let w = Math.floor(startKept / plan.windowSize); w < plan.windows.length; w++) {
      const done = new Map<number, Completed>();
      // One generate call per window: batchSize rows decode together and a finished row's
      // slot goes to the window's next prompt (continuous batching).
      const rows = plan.windows[w]!.filter((r) => r.kept >= startKept);
      if (rows.length === 0) continue;
      const result = await this.model.generate(
        rows.map((r) => r.ids),
        { ...generateOptions, seeds: rows.map((r) => o.seed + r.global), maxBatchSequences: o.batchSize },
      );
      stats.newTokens += result.newTokens;
      this.#emit("batch", {
        fraction: plan.fraction,
        batch: w,
        rows: rows.length,
        promptTokens: rows.reduce((sum, r) => sum + r.ids.length, 0),
        newTokens: result.newTokens,
        prefillSeconds: result.prefillSeconds,
        decodeSeconds: result.decodeSeconds,
        tokensPerSecond: result.tokensPerSecond,
      });
      rows.forEach((planned, i) => {
        const generation = result.generations[i]!;
        const generated: SpinRow = {
          real: copyMessages(planned.row.real),
          generated: [...copyMessages(planned.prompt), { role: "assistant", content: this.#answerText(generation) }],
        };
        done.set(planned.kept, { planned, generated, generation });
        generatedSinceStart++;
      });
      const flush: Completed[] = [];
      for (let c = done.get(next); c !== undefined; c = done.get(next)) {
        flush.push(c);
        done.delete(next);
        next++;
      }
      if (flush.length > 0) {
        for (const c of flush) stats.add(c.generation);
        yield flush;
      }
      const elapsed = (performance.now() - t0) / 1000;
      this.#emit("progress", {
        fraction: plan.fraction,
        rows: next,
        total: plan.rows.length,
        tokensPerSecond: stats.newTokens / Math.max(elapsed, 1e-9),
        etaSeconds: generatedSinceStart === 0 ? Number.NaN : ((plan.rows.length - startKept - generatedSinceStart) * elapsed) / generatedSinceStart,
        elapsedSeconds: elapsed,
      });
    }
  }

  /**
   * The fraction's SPIN rows, in the fraction's (shuffled) order, as they are generated. Writes
   * nothing; the iterator's return value is the summary (also sent as the "done" event).
   */
  async *rows(sftRows: readonly unknown[]): AsyncGenerator<SpinRow, GenerationSummary> {
    const plan = this.#plan(sftRows);
    const stats = new RunStats();
    const t0 = performance.now();
    for await (const chunk of this.#drive(plan, 0, stats)) {
      for (const c of chunk) yield c.generated;
    }
    const summary = stats.summary(plan.fraction, plan.skipped, 0, (performance.now() - t0) / 1000, []);
    this.#emit("done", summary);
    return summary;
  }

  /**
   * Generates the fraction into `<outDir>/<split>/` (see the file header for the layout),
   * resuming where an earlier run of the same fraction stopped.
   *
   * @throws SpinNativeError `INVALID_ARGUMENT` for bad input (no rows, a row without a user
   *   turn, a prompt too long for the context, naming the row) or when the folder holds output
   *   of other inputs, settings or weights; `IO` for unreadable output.
   */
  async run(sftRows: readonly unknown[], outDir: string): Promise<GenerationSummary> {
    const dir = path.join(outDir, this.options.split);
    // One writer per fraction (another run of it is refused, naming it: lib/core/run-lock.ts);
    // fractions of one folder may run side by side, as the original runs one per GPU.
    const lockFile = `.spin-native.${this.options.split}-${this.options.dataFrac}.lock`;
    const lock = this.#folderLocked ? null : await RunLock.acquire(dir, runCommand(`${CALL}.run`), { lockFile });
    try {
      return await this.#run(sftRows, dir);
    } finally {
      lock?.release();
    }
  }

  async #run(sftRows: readonly unknown[], dir: string): Promise<GenerationSummary> {
    const o = this.options;
    const t0 = performance.now();
    const plan = this.#plan(sftRows);
    const hashes = this.#hashes(plan);
    await mkdir(dir, { recursive: true });
    const output = new FractionOutput(dir, o.split, plan.fraction, o.format);
    const meta: FractionMeta = {
      kind: "spin-native self-play generation",
      version: META_VERSION,
      split: o.split,
      fraction: plan.fraction,
      fracLen: o.fracLen,
      totalPrompts: plan.totalPrompts,
      rows: plan.rows.length,
      skippedRows: plan.skipped,
      format: o.format,
      runHash: hashes.run,
      fractionHash: hashes.fraction,
      complete: false,
    };
    const existing = (await readJsonIfExists(output.meta, CALL)) as FractionMeta | null;
    if (existing !== null) {
      const why =
        existing.format !== meta.format
          ? `it is ${existing.format}, this run writes ${meta.format}`
          : existing.fractionHash !== meta.fractionHash
            ? "it was generated from other inputs, settings or model weights"
            : null;
      if (why !== null) throw invalid(`${CALL}: ${output.meta}: cannot resume fraction ${plan.fraction}: ${why}; use another output folder or remove it`);
    } else if (await output.hasData()) {
      throw invalid(`${CALL}: ${dir} holds output of fraction ${plan.fraction} without its ${path.basename(output.meta)}; use another output folder or remove it`);
    }
    const resumed = await output.recover(plan);
    // The meta file says "complete" only while the data is: false before the first new row.
    let onDisk: boolean | null = existing?.complete ?? null;
    const writeMeta = async (complete: boolean) => {
      if (onDisk === complete) return;
      await writeFileAtomic(output.meta, JSON.stringify({ ...meta, complete }, null, 2) + "\n");
      onDisk = complete;
    };
    await writeMeta(resumed === plan.rows.length);
    const stats = new RunStats();
    let done = resumed;
    for await (const chunk of this.#drive(plan, resumed, stats)) {
      await output.append(chunk.map((c) => c.generated));
      done += chunk.length;
    }
    if (done !== plan.rows.length) throw new SpinNativeError(`${CALL}: internal error: ${done} of ${plan.rows.length} rows written`, "TORCH", CALL);
    await writeMeta(true);
    const summary = stats.summary(plan.fraction, plan.skipped, resumed, (performance.now() - t0) / 1000, await output.files());
    this.#emit("done", summary);
    return summary;
  }
}

