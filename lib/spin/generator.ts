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
// {@link mergeFractions} concatenates fractions 0..k into `<outDir>/<split>.jsonl|parquet`.
//
// Batching: with lengthSortedBatching (default), rows are taken in windows of
// batchSize × sortWindowBatches rows; inside a window, prompts are sorted by token length
// (longest first) and cut into batches, so a batch holds prompts of similar length (less
// padding). Results are written in the fraction's order: a window's rows reach the file when
// the window's earlier rows are done, so a crash loses at most one window of work. Batches are
// laid out from the fraction's start, independently of how far a previous run got, so a
// resumed run (with the same batchSize and window) puts every row in the same batch as an
// uninterrupted one; another batch layout may be used to resume (e.g. a smaller batch after
// running out of memory).
import { createHash } from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdir, readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";

import { writeParquet } from "../data/dataset-write.js";
import { FractionOutput, escapeRegExp, parquetParts, readParquetRows } from "../data/fraction-output.js";
import { type ChatMessage, type RowLocation, type SpinRow, locateRow, toSpinRow } from "../data/rows.js";
import { SpinNativeError } from "../core/errors.js";
import type { Generation, GenerateOptions } from "../model/generation.js";
import { writeFileAtomic } from "../core/atomic.js";
import { RunLock, runCommand } from "../core/run-lock.js";
import { permutation } from "../core/random.js";
import { scope } from "../core/memory.js";
import type { CausalLM } from "../model/causal-lm.js";
import type { SpinTextOptions, Tokenizer } from "../model/tokenizer.js";
import { type NumberRule, describeRule, fitsRule, showValue } from "../core/validate.js";

/** Options of {@link SelfPlayGenerator}. Defaults are the original generate.py's where it had the option. */
/**
 * Sampling options are model.generate's (unset ones come from the checkpoint's generation
 * config, greedy by default), as are eosTokenIds and stopSequences.
 */
export interface SelfPlayOptions
  extends Pick<GenerateOptions, "doSample" | "temperature" | "topK" | "topP" | "minP" | "repetitionPenalty" | "eosTokenIds" | "stopSequences"> {
  /** Prompts per generate call (the original's per-device batch_size). Default 16. */
  batchSize?: number;
  /** Which fraction to generate (the original's data_frac). Default 0. */
  dataFrac?: number;
  /** Rows per fraction; 0 = every row in one fraction (the original's frac_len). Default 0. */
  fracLen?: number;
  /** Output subfolder and file prefix (the original's split). Default "train". */
  split?: string;
  /** Default 256 (the original's max_new_tokens). */
  maxNewTokens?: number;
  /**
   * "chat" (default): the tokenizer's chat template over the prompt messages with the
   * generation prompt ({@link Tokenizer.promptText}) — the text SPIN trains on.
   * "spin-instruction": the original generator's `"### Instruction: {x}\n\n### Response: "`,
   * x = the content of the last user message.
   */
  promptFormat?: "chat" | "spin-instruction";
  /** Passed to {@link Tokenizer.promptText} for promptFormat "chat" (template choice, variables). */
  promptTextOptions?: SpinTextOptions;
  /** Row seed = seed + the row's index in the shuffled order (the same in every fraction and batch). Default 0. */
  seed?: number;
  /**
   * Keep the stop sequence that ended a row at the end of its text. Default false: it is
   * removed (as vLLM does), e.g. a "### Instruction" the model starts after its answer.
   */
  keepStopSequences?: boolean;
  /** Batch prompts of similar token length together (results stay in input order). Default true. */
  lengthSortedBatching?: boolean;
  /** Batches per sorting window with lengthSortedBatching. Default 8. */
  sortWindowBatches?: number;
  /**
   * Prompts with more than (the model's context − maxNewTokens) tokens: "error" (default)
   * throws naming the row; "skip" leaves them out and counts them.
   */
  skipTooLong?: "error" | "skip";
  /** Output format of {@link SelfPlayGenerator.run}. Default "jsonl". */
  format?: "jsonl" | "parquet";
  /** Seed of the prompt shuffle. Default 42 (the original's). */
  shuffleSeed?: number;
  /** Names the input in error messages (e.g. its file). */
  inputName?: string;
  /**
   * Where input row i came from (e.g. its file and line, for rows read from several files),
   * named by errors about the row. Default: `{ file: inputName, row: i }`.
   */
  rowLocation?: (row: number) => RowLocation;
}

export interface SelfPlayGeneratorInit {
  model: CausalLM;
  tokenizer: Tokenizer;
  options?: SelfPlayOptions;
  /** @internal The caller holds the output folder's lock for a whole job (data-parallel generation). */
  folderLocked?: boolean;
}

/** After every batch: where the fraction stands. */
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

/** One generate call. */
export interface GenerationBatch {
  fraction: number;
  /** Index of the batch in the fraction's layout. */
  batch: number;
  rows: number;
  /** Tokens of the longest prompt in the batch. */
  promptTokens: number;
  /** Left-padding tokens in the batch's prompt tensor. */
  paddingTokens: number;
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

/** {@link mergeFractions}' result. */
export interface MergeResult {
  file: string;
  rows: number;
  fractions: number;
  /** Whether the merged fractions hold every prompt of the input (skipped ones aside). */
  complete: boolean;
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

interface Resolved {
  batchSize: number;
  dataFrac: number;
  fracLen: number;
  split: string;
  maxNewTokens: number;
  promptFormat: "chat" | "spin-instruction";
  promptTextOptions: SpinTextOptions;
  sampling: Pick<GenerateOptions, "doSample" | "temperature" | "topK" | "topP" | "minP" | "repetitionPenalty" | "eosTokenIds" | "stopSequences">;
  seed: number;
  keepStopSequences: boolean;
  /** Token ids of the stop sequences (as model.generate encodes them). */
  stopIds: number[][];
  lengthSortedBatching: boolean;
  sortWindowBatches: number;
  skipTooLong: "error" | "skip";
  format: "jsonl" | "parquet";
  shuffleSeed: number;
  inputName: string;
  rowLocation: (row: number) => RowLocation;
}

/** Sampling options' ranges (model.generate's; native/sampling.cc refuses the same, but only once decoding starts). */
const SAMPLING_RULES: Record<"temperature" | "topK" | "topP" | "minP" | "repetitionPenalty", NumberRule> = {
  temperature: { min: 0 },
  topK: { integer: true, min: 0 },
  topP: { min: 0, max: 1, minOpen: true },
  minP: { min: 0, max: 1 },
  repetitionPenalty: { min: 0, minOpen: true },
};

/** Checks the sampling options, the token ids and the flags: every value of the wrong type or out of range, naming the option. */
function checkSampling(o: SelfPlayOptions): void {
  for (const [name, rule] of Object.entries(SAMPLING_RULES) as [keyof typeof SAMPLING_RULES, NumberRule][]) {
    const value = o[name];
    if (value !== undefined && !fitsRule(value, rule)) throw invalid(`${CALL}: ${name} must be ${describeRule(rule)}, got ${showValue(value)}`);
  }
  if (o.doSample === true && o.temperature === 0) throw invalid(`${CALL}: temperature must be > 0 when doSample is true, got 0`);
  for (const name of ["doSample", "keepStopSequences", "lengthSortedBatching"] as const) {
    if (o[name] !== undefined && typeof o[name] !== "boolean") throw invalid(`${CALL}: ${name} must be true or false, got ${showValue(o[name])}`);
  }
  const tokenIds = (value: unknown) => Array.isArray(value) && value.every((id) => Number.isSafeInteger(id) && (id as number) >= 0);
  // An empty eosTokenIds is allowed: rows then end at maxNewTokens or a stop sequence.
  if (o.eosTokenIds !== undefined && !tokenIds(o.eosTokenIds)) throw invalid(`${CALL}: eosTokenIds must be a list of token ids (integers ≥ 0), got ${showValue(o.eosTokenIds)}`);
  if (o.stopSequences !== undefined && !(Array.isArray(o.stopSequences) && o.stopSequences.every((q) => (typeof q === "string" && q !== "") || (tokenIds(q) && q.length > 0)))) {
    throw invalid(`${CALL}: stopSequences must be a list of non-empty strings or token id lists, got ${showValue(o.stopSequences)}`);
  }
  if (o.inputName !== undefined && typeof o.inputName !== "string") throw invalid(`${CALL}: inputName must be a string, got ${showValue(o.inputName)}`);
  if (o.rowLocation !== undefined && typeof o.rowLocation !== "function") throw invalid(`${CALL}: rowLocation must be a function`);
}

const SELF_PLAY_OPTION_KEYS: readonly (keyof SelfPlayOptions)[] = [
  "batchSize", "dataFrac", "fracLen", "split", "maxNewTokens", "promptFormat", "promptTextOptions", "seed",
  "keepStopSequences", "lengthSortedBatching", "sortWindowBatches", "skipTooLong", "format", "shuffleSeed",
  "inputName", "rowLocation", "doSample", "temperature", "topK", "topP", "minP", "repetitionPenalty",
  "eosTokenIds", "stopSequences",
];

function resolveOptions(o: SelfPlayOptions, tokenizer: Tokenizer): Resolved {
  const int = (name: keyof SelfPlayOptions, value: number | undefined, fallback: number, min: number): number => {
    const v = value ?? fallback;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) throw invalid(`${CALL}: ${name} must be an integer >= ${min}, got ${String(value)}`);
    return v;
  };
  const oneOf = <T extends string>(name: keyof SelfPlayOptions, value: T | undefined, allowed: readonly T[]): T => {
    const v = value ?? allowed[0]!;
    if (!allowed.includes(v)) throw invalid(`${CALL}: ${name} must be ${allowed.map((a) => `"${a}"`).join(" or ")}, got ${JSON.stringify(value)}`);
    return v;
  };
  // A misspelt option would otherwise be ignored and its default used in silence.
  for (const key of Object.keys(o)) {
    if (!SELF_PLAY_OPTION_KEYS.includes(key as keyof SelfPlayOptions)) {
      throw invalid(`${CALL}: unknown option '${key}'; known: ${SELF_PLAY_OPTION_KEYS.join(", ")}`);
    }
  }
  checkSampling(o);
  const split = o.split ?? "train";
  if (typeof split !== "string" || !/^[A-Za-z0-9_][A-Za-z0-9_.]*$/.test(split)) {
    throw invalid(`${CALL}: split must be a plain name (letters, digits, '_', '.'), got ${JSON.stringify(o.split)}`);
  }
  const fracLen = int("fracLen", o.fracLen, 0, 0);
  const dataFrac = int("dataFrac", o.dataFrac, 0, 0);
  if (fracLen === 0 && dataFrac !== 0) throw invalid(`${CALL}: dataFrac ${dataFrac} needs fracLen > 0 (fracLen 0 is one fraction holding every row)`);
  return {
    batchSize: int("batchSize", o.batchSize, 16, 1),
    dataFrac,
    fracLen,
    split,
    maxNewTokens: int("maxNewTokens", o.maxNewTokens, 256, 1),
    promptFormat: oneOf("promptFormat", o.promptFormat, ["chat", "spin-instruction"] as const),
    promptTextOptions: o.promptTextOptions ?? {},
    sampling: {
      doSample: o.doSample,
      temperature: o.temperature,
      topK: o.topK,
      topP: o.topP,
      minP: o.minP,
      repetitionPenalty: o.repetitionPenalty,
      eosTokenIds: o.eosTokenIds,
      stopSequences: o.stopSequences,
    },
    seed: int("seed", o.seed, 0, 0),
    keepStopSequences: o.keepStopSequences ?? false,
    stopIds: (o.stopSequences ?? []).map((q) => (typeof q === "string" ? tokenizer.encode(q, { addSpecialTokens: false }) : [...q])),
    lengthSortedBatching: o.lengthSortedBatching ?? true,
    sortWindowBatches: int("sortWindowBatches", o.sortWindowBatches, 8, 1),
    skipTooLong: oneOf("skipTooLong", o.skipTooLong, ["error", "skip"] as const),
    format: oneOf("format", o.format, ["jsonl", "parquet"] as const),
    shuffleSeed: int("shuffleSeed", o.shuffleSeed, 42, 0),
    inputName: o.inputName ?? "rows",
    rowLocation: o.rowLocation ?? ((row) => ({ file: o.inputName ?? "rows", row })),
  };
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
  /** Windows of batches, from the fraction's start. */
  windows: PlannedRow[][][];
  windowSize: number;
}

interface Completed {
  planned: PlannedRow;
  generated: SpinRow;
  generation: Generation;
}

interface Meta {
  kind: "spin-native self-play generation";
  version: number;
  split: string;
  fraction: number;
  fracLen: number;
  totalPrompts: number;
  rows: number;
  skippedRows: number[];
  format: "jsonl" | "parquet";
  runHash: string;
  fractionHash: string;
  complete: boolean;
}

function sha256(parts: Iterable<string>): string {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part).update("\u0000");
  return hash.digest("hex");
}

/**
 * A fingerprint of the weights: config, dtype and 64 evenly spaced values of every parameter.
 * Cheap, device independent, and different for the checkpoints of successive iterations.
 */
function modelFingerprint(model: CausalLM): string {
  const parts: string[] = [JSON.stringify(model.config), JSON.stringify(model.generationConfig), model.dtype];
  scope(() => {
    const parameters = model.parameters();
    for (const name of [...parameters.keys()].sort()) {
      const t = parameters.get(name)!;
      const numel = t.numel;
      const flat = t.reshape([-1]);
      const step = Math.max(1, Math.floor(numel / 64));
      const sample = flat.slice(0, 0, null, step).slice(0, 0, 64).to({ device: "cpu", dtype: "float32" });
      parts.push(`${name}:${t.shape.join("x")}:${Array.from(sample.toTypedArray() as Float32Array).join(",")}`);
    }
  });
  return sha256(parts);
}

/** Messages as stored: copies, and only role and content for parquet. */
function copyMessages(messages: readonly ChatMessage[]): ChatMessage[] {
  return messages.map((m) => ({ ...m }));
}

async function readJsonIfExists(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new SpinNativeError(`cannot read ${file}: ${(error as Error).message}`, "IO", CALL);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new SpinNativeError(`${file} is not valid JSON`, "IO", CALL);
  }
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
  readonly options: Readonly<Resolved>;
  readonly #events = new EventEmitter();
  readonly #folderLocked: boolean;

  constructor(init: SelfPlayGeneratorInit) {
    if (!init || typeof init !== "object" || !init.model || !init.tokenizer) throw new TypeError(`${CALL}: expected {model, tokenizer, options?}`);
    this.model = init.model;
    this.tokenizer = init.tokenizer;
    this.options = resolveOptions(init.options ?? {}, init.tokenizer);
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

    const windowSize = o.lengthSortedBatching ? o.batchSize * o.sortWindowBatches : o.batchSize;
    const windows: PlannedRow[][][] = [];
    for (let w = 0; w < rows.length; w += windowSize) {
      const window = rows.slice(w, w + windowSize);
      if (o.lengthSortedBatching) window.sort((a, b) => b.ids.length - a.ids.length || a.kept - b.kept);
      const batches: PlannedRow[][] = [];
      for (let b = 0; b < window.length; b += o.batchSize) batches.push(window.slice(b, b + o.batchSize));
      windows.push(batches);
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
    const run = sha256([JSON.stringify(settings), modelFingerprint(this.model), ...plan.converted.map((r) => JSON.stringify(r.real))]);
    const fraction = sha256([run, String(plan.fraction), ...plan.rows.map((r) => `${r.source}:${r.ids.join(",")}`), `skipped:${plan.skipped.join(",")}`]);
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
    let batchIndex = 0;
    // Stop sequences as ids (encoded as model.generate would); no tokenizer: #answerText decodes.
    const generateOptions: GenerateOptions = { ...o.sampling, stopSequences: o.stopIds, maxNewTokens: o.maxNewTokens };
    for (let w = Math.floor(startKept / plan.windowSize); w < plan.windows.length; w++) {
      const done = new Map<number, Completed>();
      batchIndex = w * Math.ceil(plan.windowSize / o.batchSize);
      for (const batch of plan.windows[w]!) {
        const index = batchIndex++;
        if (batch.every((r) => r.kept < startKept)) continue;
        const result = await this.model.generate(
          batch.map((r) => r.ids),
          { ...generateOptions, seeds: batch.map((r) => o.seed + r.global) },
        );
        const longest = Math.max(...batch.map((r) => r.ids.length));
        stats.newTokens += result.newTokens;
        this.#emit("batch", {
          fraction: plan.fraction,
          batch: index,
          rows: batch.length,
          promptTokens: longest,
          paddingTokens: batch.reduce((sum, r) => sum + longest - r.ids.length, 0),
          newTokens: result.newTokens,
          prefillSeconds: result.prefillSeconds,
          decodeSeconds: result.decodeSeconds,
          tokensPerSecond: result.tokensPerSecond,
        });
        batch.forEach((planned, i) => {
          const generation = result.generations[i]!;
          const generated: SpinRow = {
            real: copyMessages(planned.row.real),
            generated: [...copyMessages(planned.prompt), { role: "assistant", content: this.#answerText(generation) }],
          };
          done.set(planned.kept, { planned, generated, generation });
          if (planned.kept >= startKept) generatedSinceStart++;
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
    const summary = stats.summary(plan, 0, (performance.now() - t0) / 1000, []);
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
    const meta: Meta = {
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
    const existing = (await readJsonIfExists(output.meta)) as Meta | null;
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
    const summary = stats.summary(plan, resumed, (performance.now() - t0) / 1000, await output.files());
    this.#emit("done", summary);
    return summary;
  }
}

class RunStats {
  newTokens = 0;
  rows = 0;
  tokens = 0;
  finish = { eos: 0, stop: 0, length: 0 };

  add(generation: Generation): void {
    this.rows++;
    this.tokens += generation.tokens.length;
    this.finish[generation.finishReason]++;
  }

  summary(plan: Plan, resumed: number, seconds: number, files: string[]): GenerationSummary {
    return {
      fraction: plan.fraction,
      rows: resumed + this.rows,
      resumedRows: resumed,
      generatedRows: this.rows,
      skipped: plan.skipped.length,
      skippedRows: [...plan.skipped],
      newTokens: this.newTokens,
      seconds,
      eosRate: this.rows === 0 ? 0 : this.finish.eos / this.rows,
      meanGeneratedTokens: this.rows === 0 ? 0 : this.tokens / this.rows,
      finishReasons: { ...this.finish },
      files,
    };
  }
}

/**
 * Concatenates fractions 0..k of a split, in order, into one file (written atomically):
 * `<outDir>/<split>.jsonl` or `.parquet` (the fractions' format) unless `options.output` names
 * another. Every fraction from 0 to the highest present must be complete and come from the
 * same inputs, settings and weights.
 *
 * @throws SpinNativeError `INVALID_ARGUMENT` for a missing or incomplete fraction or fractions
 *   of different runs; `IO` for unreadable files.
 */
export async function mergeFractions(outDir: string, split = "train", options: { output?: string } = {}): Promise<MergeResult> {
  const call = "mergeFractions";
  const dir = path.join(outDir, split);
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (error) {
    throw new SpinNativeError(`${call}: cannot read ${dir}: ${(error as Error).message}`, "IO", call);
  }
  const pattern = new RegExp(`^${escapeRegExp(split)}-(\\d+)\\.meta\\.json$`);
  const fractions = entries
    .map((name) => pattern.exec(name))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  if (fractions.length === 0) throw invalid(`${call}: ${dir} holds no generated fractions of split '${split}'`, call);
  const metas: Meta[] = [];
  for (let k = 0; k <= fractions[fractions.length - 1]!; k++) {
    if (fractions[k] !== k) throw invalid(`${call}: fraction ${k} of split '${split}' is missing in ${dir}`, call);
    const meta = (await readJsonIfExists(path.join(dir, `${split}-${k}.meta.json`))) as Meta;
    if (!meta.complete) throw invalid(`${call}: fraction ${k} of split '${split}' is incomplete; run it again to finish it`, call);
    if (metas.length > 0 && (meta.runHash !== metas[0]!.runHash || meta.format !== metas[0]!.format)) {
      throw invalid(`${call}: fraction ${k} was generated from other inputs, settings, weights or format than fraction 0`, call);
    }
    metas.push(meta);
  }
  const format = metas[0]!.format;
  const file = options.output ?? path.join(outDir, `${split}.${format}`);
  let rows = 0;
  if (format === "jsonl") {
    const chunks: Buffer[] = [];
    for (const [k, meta] of metas.entries()) {
      const part = path.join(dir, `${split}-${k}.jsonl`);
      const bytes = await readFile(part).catch((error: Error) => {
        if ((error as NodeJS.ErrnoException).code === "ENOENT" && meta.rows === 0) return Buffer.alloc(0);
        throw new SpinNativeError(`${call}: cannot read ${part}: ${error.message}`, "IO", call);
      });
      const lines = bytes.length === 0 ? 0 : bytes.toString("utf8").split("\n").length - 1;
      if (lines !== meta.rows || (bytes.length > 0 && bytes[bytes.length - 1] !== 0x0a)) {
        throw invalid(`${call}: ${part} holds ${lines} rows, its meta says ${meta.rows}; run the fraction again to repair it`, call);
      }
      rows += lines;
      chunks.push(bytes);
    }
    await writeFileAtomic(file, Buffer.concat(chunks));
  } else {
    const all: SpinRow[] = [];
    for (const [k, meta] of metas.entries()) {
      const before = all.length;
      for (const part of await parquetParts(dir, split, k)) all.push(...(await readParquetRows(part)));
      if (all.length - before !== meta.rows) throw invalid(`${call}: fraction ${k} holds ${all.length - before} rows, its meta says ${meta.rows}`, call);
    }
    rows = all.length;
    await writeParquet(file, all);
  }
  const covered = metas[0]!.fracLen === 0 ? metas[0]!.totalPrompts : Math.min(metas[0]!.totalPrompts, metas.length * metas[0]!.fracLen);
  return { file, rows, fractions: metas.length, complete: covered === metas[0]!.totalPrompts };
}
